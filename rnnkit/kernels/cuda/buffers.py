"""The arrays each cell's CUDA kernels work in, as name -> shape for inputs of size D, H units,
N streams and T steps: `buffers` per layer (forward caches that backward reads, and the state
at both ends) and `scratch` (backward work space, shared by the layers). The CUDA backend
allocates from these specs (rnnkit/backends/cuda.py registers them per cell) and the kernels
check their arguments against them (rnnkit/kernels/checks.py). The products read x and W in
place, so none of the CPU's packed weights and per-step scratch (kernels/cpu/buffers.py) is
here. Every cell's caches are time-major (the LSTM's too, unlike the CPU's feature-major
ones): a step's state is a contiguous (N, H) row and every product a plain 2-D one
(kernels/cuda/recurrent.py). Caches live for a step; checkpoints hold none of them.
"""
from rnnkit.cells import CELLS
from rnnkit.kernels.checks import Layout


def _lstm_buffers(T, N, D, H):
    """Activated gates, cell states (cs[0] the initial one), outputs; c: the state in and out."""
    return {"gates": (T, N, 4 * H), "hs": (T + 1, N, H), "c": (N, H), "cs": (T + 1, N, H)}


def _time_major_buffers(G):
    """The GRU's and Elman RNN's caches, time-major: gates (T, N, G*H) and hs."""
    def buffers(T, N, D, H):
        out = {"gates": (T, N, G * H), "hs": (T + 1, N, H)}
        if G == 3:
            out["a"] = (T, N, H)         # h W_hn + b_hn, for the reset gate's gradient
        return out
    return buffers


def _scratch(G):
    """dg, the gate gradients; the GRU's dgh, those of h W_h."""
    def scratch(T, N, D, H):
        out = {"dg": (T, N, G * H)}
        if G == 3:
            out["dgh"] = (T, N, G * H)
        return out
    return scratch


LSTM = Layout(CELLS["lstm"], _lstm_buffers, _scratch(4))
GRU = Layout(CELLS["gru"], _time_major_buffers(3), _scratch(3))
RNN = Layout(CELLS["rnn-tanh"], _time_major_buffers(1), _scratch(1))   # and relu
