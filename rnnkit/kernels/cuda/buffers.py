"""The arrays each cell's CUDA kernels work in, as name -> shape for inputs of size D, H units,
N streams and T steps: `buffers` per layer (forward caches that backward reads, and the state
at both ends) and `scratch` (backward work space, shared by the layers). The CUDA backend
allocates from these specs (rnnkit/backends/cuda.py registers them per cell) and the kernels
check their arguments against them (rnnkit/kernels/checks.py). The products read x and W in
place, so none of the CPU's packed weights and per-step scratch (kernels/cpu/buffers.py) is
here; the caches have the CPU's layouts, so a model moves between the backends unchanged.
"""
from rnnkit.cells import CELLS
from rnnkit.kernels.checks import Layout


def _lstm_buffers(T, N, D, H):
    """Feature-major caches, streams last (kernels/cuda/lstm.py): activated gates, cell states,
    and z, whose state rows z[t][D:] = h_{t-1}^T each step and dW_h read."""
    return {"gates": (T, 4 * H, N), "hs": (T + 1, N, H), "c": (N, H), "cs": (T + 1, H, N),
            "z": (T + 1, D + H, N)}


def _time_major_buffers(G):
    """The GRU's and Elman RNN's caches, time-major: gates (T, N, G*H) and hs."""
    def buffers(T, N, D, H):
        out = {"gates": (T, N, G * H), "hs": (T + 1, N, H)}
        if G == 3:
            out["a"] = (T, N, H)         # h W_hn + b_hn, for the reset gate's gradient
        return out
    return buffers


def _scratch(G, layout):
    """dg, the gate gradients, in the caches' layout; the GRU's dgh, those of h W_h."""
    def scratch(T, N, D, H):
        out = {"dg": (T, G * H, N) if layout == "feature" else (T, N, G * H)}
        if G == 3:
            out["dgh"] = (T, N, G * H)
        return out
    return scratch


LSTM = Layout(CELLS["lstm"], _lstm_buffers, _scratch(4, "feature"))
GRU = Layout(CELLS["gru"], _time_major_buffers(3), _scratch(3, "time"))
RNN = Layout(CELLS["rnn-tanh"], _time_major_buffers(1), _scratch(1, "time"))   # and relu
