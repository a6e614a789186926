"""The four cells, each one registered object: the math that the model and every backend share.

A Cell declares its gate count G (the weights are W_x (D, G*H), W_h (H, G*H), b (G*H,)), any
extra per-layer parameters, the state it carries between batches, its activation and its
initial gate biases. The equations and layouts are in docs/cells.md. Each backend registers its
own kernels and their arrays (buffers and scratch) for every cell here (`KERNELS` in
rnnkit/backends/cpu.py and cuda.py, the array specs in rnnkit/kernels/*/buffers.py); nothing
outside these registries looks at a cell's name (tests/test_architecture.py checks
that).

This module imports nothing of rnnkit: every layer may read it, the kernels included.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class Cell:
    name: str
    gates: int                              # G
    state: tuple = ("h",)                   # carried between batches: (L, N, H) each
    extra: tuple = ()                       # per-layer parameters of shape (H,)
    relu: bool = False                      # the Elman RNN's activation: relu, else tanh
    gate_bias: tuple = ()                   # (gate block, value): a bias block's initial value

    def params(self, D, H):
        """Name -> shape of one layer's parameters, in storage order."""
        G = self.gates
        out = {"w_x": (D, G * H), "w_h": (H, G * H), "b": (G * H,)}
        out.update({name: (H,) for name in self.extra})
        return out

    def init_bias(self, b, H):
        """Set the bias blocks that start at a value of their own in one layer's b (G*H,),
        drawn like every weight before."""
        for block, value in self.gate_bias:
            b[block * H:(block + 1) * H] = value


CELLS = {c.name: c for c in (
    Cell("rnn-tanh", 1),
    Cell("rnn-relu", 1, relu=True),
    # gate order i, f, g, o; the forget gate's bias starts at 1 (torch-rnn) to keep memory early
    Cell("lstm", 4, state=("h", "c"), gate_bias=((1, 1.0),)),
    Cell("gru", 3, extra=("b_hn",)),                # gate order r, z, n
)}
NAMES = tuple(CELLS)


def get(name):
    """The registered cell called `name` (ValueError naming the known ones)."""
    if name not in CELLS:
        raise ValueError(f"cell must be one of {', '.join(NAMES)}, not {name!r}")
    return CELLS[name]


def with_gates(G):
    """The cells whose weights hold G gate blocks (exchange: a PyTorch file's cell)."""
    return [c.name for c in CELLS.values() if c.gates == G]
