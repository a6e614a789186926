"""The four cells, each one registered object: what the model and every backend need to know.

A Cell declares its gate count G (the weights are W_x (D, G*H), W_h (H, G*H), b (G*H,)), any
extra per-layer parameters, the state it carries between batches, and the buffers its kernels
use: `buffers` (per layer: forward caches that backward reads, and the state at both ends) and
`scratch` (backward work space shared by the layers), each as name -> shape for inputs of size
D, H units, N streams and T steps. A backend allocates from these specs and its kernels check
their arguments against the same specs (rnnkit/kernels/checks.py), so a shape is written once.
The equations and layouts are in docs/cells.md; the model never branches on a cell's name.
"""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Cell:
    name: str
    gates: int                              # G
    state: tuple = ("h",)                   # carried between batches: (L, N, H) each
    extra: tuple = ()                       # per-layer parameters of shape (H,)
    relu: bool = False
    buffers: object = field(default=None, compare=False)   # (T, N, D, H) -> {name: shape}
    scratch: object = field(default=None, compare=False)

    def params(self, D, H):
        """Name -> shape of one layer's parameters, in storage order."""
        G = self.gates
        out = {"w_x": (D, G * H), "w_h": (H, G * H), "b": (G * H,)}
        out.update({name: (H,) for name in self.extra})
        return out


def _lstm_buffers(T, N, D, H):
    """Feature-major caches, streams last, contiguous per step (kernels/cpu/lstm.py says why):
    activated gates, cell states, [x_t; h_{t-1}]; hs (T + 1, N, H) as for every cell, with
    hs[0] the initial state; c the cell state in and out; wt: W.T, packed once per call."""
    return {"gates": (T, 4 * H, N), "hs": (T + 1, N, H), "c": (N, H), "cs": (T + 1, H, N),
            "z": (T + 1, D + H, N), "wt": (4 * H, D + H)}


def _lstm_scratch(T, N, D, H):
    return {"dg": (T, 4 * H, N), "dht": (H, N), "dct": (H, N), "dwt": (4 * H, D + H),
            "dxt": (D, N)}


def _time_major_buffers(G):
    """The GRU's and Elman RNN's caches, time-major: gates (T, N, G*H) and hs; W_h.T (wt) for
    the CPU's BPTT. work and work_t held the CPU's per-step products before they moved to its
    register tiles; the CUDA kernels still take them (and use neither)."""
    def buffers(T, N, D, H):
        out = {"gates": (T, N, G * H), "hs": (T + 1, N, H), "work": (N, G * H),
               "work_t": (G * H, N), "wt": (G * H, H)}
        if G == 3:
            out["a"] = (T, N, H)         # h W_hn + b_hn, for the reset gate's gradient
        return out
    return buffers


def _time_major_scratch(G):
    def scratch(T, N, D, H):
        out = {"dg": (T, N, G * H)}
        if G == 3:
            out["dgh"] = (T, N, G * H)
        return out
    return scratch


CELLS = {c.name: c for c in (
    Cell("rnn-tanh", 1, buffers=_time_major_buffers(1), scratch=_time_major_scratch(1)),
    Cell("rnn-relu", 1, relu=True, buffers=_time_major_buffers(1),
         scratch=_time_major_scratch(1)),
    Cell("lstm", 4, state=("h", "c"), buffers=_lstm_buffers, scratch=_lstm_scratch),
    Cell("gru", 3, extra=("b_hn",), buffers=_time_major_buffers(3),
         scratch=_time_major_scratch(3)),
)}
NAMES = tuple(CELLS)


def get(name):
    """The registered cell called `name` (ValueError naming the known ones)."""
    if name not in CELLS:
        raise ValueError(f"cell must be one of {', '.join(NAMES)}, not {name!r}")
    return CELLS[name]
