"""The four cells behind one interface, so the model never branches on the cell type.

Each cell knows its gate count G, which extra per-step caches it keeps, and how to call its
forward and backward kernels on one layer's buffers (a dict of arrays, see model.Workspace).
"""
import numpy as np

from rnnkit import kernels as K

CELLS = ("rnn-tanh", "rnn-relu", "lstm", "gru")
GATES = {"rnn-tanh": 1, "rnn-relu": 1, "lstm": 4, "gru": 3}


def forward(cell, x, p, buf):
    if cell == "lstm":
        K.lstm_forward(x, p["w_x"], p["w_h"], p["b"], buf["hs"], buf["c"], buf["gates"],
                       buf["cs"], buf["z"], buf["wt"])
    elif cell == "gru":
        K.gru_forward(x, p["w_x"], p["w_h"], p["b"], p["b_hn"], buf["gates"], buf["a"],
                      buf["hs"], buf["work"], buf["work_t"], buf["wt"])
    else:
        K.rnn_forward(x, p["w_x"], p["w_h"], p["b"], buf["hs"], buf["gates"], buf["work"],
                      buf["work_t"], buf["wt"], relu=cell == "rnn-relu")


def backward(cell, x, p, g, buf, dhs, dh, dc, dx, scratch):
    """Gradients accumulate into g; dh (and dc) go from final-state to initial-state grads."""
    if cell == "lstm":
        (N, H), D = dh.shape, x.shape[2]
        dwt = scratch["dwt"][:4 * H * (D + H)].reshape(4 * H, D + H)  # this layer's D
        dxt = scratch["dxt"][:D * N].reshape(D, N)
        K.lstm_backward(x, p["w_x"], p["w_h"], buf["hs"], buf["gates"], buf["cs"], dhs, dh, dc,
                        dx, g["w_x"], g["w_h"], g["b"], scratch["dg"], scratch["dht"],
                        scratch["dct"], dwt, dxt)
    elif cell == "gru":
        K.gru_backward(x, p["w_x"], p["w_h"], buf["gates"], buf["a"], buf["hs"], dhs, dh, dx,
                       g["w_x"], g["w_h"], g["b"], g["b_hn"], scratch["dg"], scratch["dgh"],
                       scratch["work_h"])
    else:
        K.rnn_backward(x, p["w_x"], p["w_h"], buf["hs"], dhs, dh, dx, g["w_x"], g["w_h"],
                       g["b"], scratch["dg"], scratch["work_h"], relu=cell == "rnn-relu")


def zeros(shape, dtype):
    """Zeros whose first byte starts a cache line. numpy puts large arrays 16 bytes past one,
    so where two threads split a row at a multiple of 16 floats (the LSTM's hs rows by units,
    the GRU's and RNN's feature-major scratch by streams) they would share the line at the
    cut. Measured on the LSTM training step: 1-3% faster in the machine's fast phase, 3-9% in
    its slow one (bench/RESULTS.md), where moving a line between cores costs more."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    raw = np.zeros(size + 64, np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start:start + size].view(dtype).reshape(shape)


def _zeros(dtype):
    return lambda shape: zeros(shape, dtype)


def layer_buffers(cell, T, N, D, H, dtype):
    """Per-layer forward caches (what backward reads back) and state, for inputs of size D.
    hs[0] holds the initial h, and for LSTM c the initial cell state; after forward, hs[-1]
    and c the final ones. The LSTM keeps its caches feature-major (kernels/lstm.py says why)."""
    G, empty = GATES[cell], _zeros(dtype)
    if cell == "lstm":
        return {"gates": empty((T, 4 * H, N)), "hs": empty((T + 1, N, H)), "c": empty((N, H)),
                "cs": empty((T + 1, H, N)), "z": empty((T + 1, D + H, N)),
                "wt": empty((4 * H, D + H))}
    buf = {"gates": empty((T, N, G * H)), "hs": empty((T + 1, N, H)), "work": empty((N, G * H)),
           "work_t": empty((G * H, N)), "wt": empty((G * H, H))}
    if cell == "gru":
        buf["a"] = empty((T, N, H))
    return buf


def scratch_buffers(cell, T, N, D, H, dtype):
    """Backward scratch, shared by all layers; D: the largest input size."""
    G, empty = GATES[cell], _zeros(dtype)
    if cell == "lstm":
        return {"dg": empty((T, 4 * H, N)), "dht": empty((H, N)), "dct": empty((H, N)),
                "dwt": empty((4 * H * (D + H),)), "dxt": empty((D * N,))}
    s = {"dg": empty((T, N, G * H)), "work_h": empty((H, N))}
    if cell == "gru":
        s["dgh"] = empty((T, N, G * H))
    return s
