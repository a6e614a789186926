"""The four cells behind one interface, so the model never branches on the cell type.

Each cell knows its gate count G, which extra per-step caches it keeps, and how to call its
forward and backward kernels on one layer's buffers (a dict of arrays, see model.Workspace).
"""
from rnnkit import kernels as K

CELLS = ("rnn-tanh", "rnn-relu", "lstm", "gru")
GATES = {"rnn-tanh": 1, "rnn-relu": 1, "lstm": 4, "gru": 3}


def forward(cell, x, p, buf):
    if cell == "lstm":
        K.lstm_forward(x, p["w_x"], p["w_h"], p["b"], buf["gates"], buf["hs"], buf["cs"],
                       buf["work"])
    elif cell == "gru":
        K.gru_forward(x, p["w_x"], p["w_h"], p["b"], p["b_hn"], buf["gates"], buf["a"],
                      buf["hs"], buf["work"])
    else:
        K.rnn_forward(x, p["w_x"], p["w_h"], p["b"], buf["hs"], buf["gates"], buf["work"],
                      relu=cell == "rnn-relu")


def backward(cell, x, p, g, buf, dhs, dh, dc, dx, scratch):
    """Gradients accumulate into g; dh (and dc) go from final-state to initial-state grads."""
    if cell == "lstm":
        K.lstm_backward(x, p["w_x"], p["w_h"], buf["gates"], buf["hs"], buf["cs"], dhs, dh, dc,
                        dx, g["w_x"], g["w_h"], g["b"], scratch["dg"])
    elif cell == "gru":
        K.gru_backward(x, p["w_x"], p["w_h"], buf["gates"], buf["a"], buf["hs"], dhs, dh, dx,
                       g["w_x"], g["w_h"], g["b"], g["b_hn"], scratch["dg"], scratch["dgh"],
                       scratch["work_h"])
    else:
        K.rnn_backward(x, p["w_x"], p["w_h"], buf["hs"], dhs, dh, dx, g["w_x"], g["w_h"],
                       g["b"], scratch["dg"], relu=cell == "rnn-relu")


def layer_buffers(cell, T, N, H, empty):
    """Per-layer forward caches: what backward reads back."""
    G = GATES[cell]
    buf = {"gates": empty((T, N, G * H)), "hs": empty((T + 1, N, H)), "work": empty((N, G * H))}
    if cell == "lstm":
        buf["cs"] = empty((T + 1, N, H))
    if cell == "gru":
        buf["a"] = empty((T, N, H))
    return buf


def scratch_buffers(cell, T, N, H, empty):
    """Backward scratch, shared by all layers."""
    G = GATES[cell]
    s = {"dg": empty((T, N, G * H))}
    if cell == "gru":
        s["dgh"] = empty((T, N, G * H))
        s["work_h"] = empty((N, H))
    return s
