"""The arrays each cell's CPU kernels work in, as name -> shape for inputs of size D, H units,
N streams and T steps: `buffers` per layer (forward caches that backward reads, and the state
at both ends) and `scratch` (backward work space, shared by the layers). The backend allocates
from these specs (rnnkit/backends/cpu.py registers them per cell) and the kernels check their
arguments against the same specs (rnnkit/kernels/checks.py), so a shape is written once.
Every backend keeps hs (T + 1, N, H), hs[0] the initial state, and c (N, H) for a cell that
carries one; the rest is this backend's own.
"""
from rnnkit.cells import CELLS
from rnnkit.kernels.checks import Layout
from rnnkit.kernels.cpu.tiles import CHUNK


def _lstm_buffers(T, N, D, H):
    """Feature-major caches, streams last, contiguous per step (kernels/cpu/lstm.py says why):
    activated gates, cell states, [x_t; h_{t-1}]; c the cell state in and out; wt: W.T, packed
    once per call; hp: two steps' h packed for the tiles (kernels/cpu/lstm.py)."""
    return {"gates": (T, 4 * H, N), "hs": (T + 1, N, H), "c": (N, H), "cs": (T + 1, H, N),
            "z": (T + 1, D + H, N), "wt": (4 * H, D + H), "hp": (2 * H * padded(N),)}


def _lstm_scratch(T, N, D, H):
    """bp: [x_t, h_{t-1}] of all steps packed for the weight gradients' tiles; dgp: two
    steps' dgates packed for the tiles (kernels/cpu/lstm.py)."""
    return {"dg": (T, 4 * H, N), "dht": (H, N), "dct": (H, N), "dwt": (4 * H, D + H),
            "dxt": (D, N), "bp": (T * N * (padded(D) + padded(H)),),
            "dgp": (2 * 4 * H * padded(N),)}


def padded(H):
    """H rounded up to whole blocks of the tiles' columns (float32: the widest)."""
    C = CHUNK // 4
    return -(-H // C) * C


def _time_major_buffers(G):
    """The GRU's and Elman RNN's caches, time-major: gates (T, N, G*H) and hs; wp: W_h packed
    for the tiles once per call, gate by gate (kernels/cpu/gru.py)."""
    def buffers(T, N, D, H):
        out = {"gates": (T, N, G * H), "hs": (T + 1, N, H), "wp": (G, padded(H), H)}
        if G == 3:
            out["a"] = (T, N, H)         # h W_hn + b_hn, for the reset gate's gradient
        return out
    return buffers


def _time_major_scratch(G):
    """BPTT's gate gradients (the GRU's apart for each product: kernels/cpu/gru.py) and W_h.T
    packed for the tiles (wt), once per call."""
    def scratch(T, N, D, H):
        out = {"dg": (T, N, G * H), "wt": (padded(H), G * H)}
        if G == 3:
            out["dgh"] = (T, N, G * H)
        return out
    return scratch


LSTM = Layout(CELLS["lstm"], _lstm_buffers, _lstm_scratch)
GRU = Layout(CELLS["gru"], _time_major_buffers(3), _time_major_scratch(3))
RNN = Layout(CELLS["rnn-tanh"], _time_major_buffers(1), _time_major_scratch(1))   # and relu
