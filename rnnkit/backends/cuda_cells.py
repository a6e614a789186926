"""Each cell's kernels as the CUDA backend runs them (rnnkit/kernels/cuda): forward and
backward over a layer's buffers and scratch, the buffers' layout, and the kernels whose cached
build says whether a first step compiles. `b` is the backend: its kernel modules (b.k) and its
recurrence plan (b.rec)."""
from rnnkit.backends.interface import CellKernels
from rnnkit.kernels.cuda import buffers


def _lstm_forward(b, cell, x, p, buf):
    b.k.lstm.lstm_forward(x, p["w_x"], p["w_h"], p["b"], buf["hs"], buf["c"], buf["gates"],
                          buf["cs"], b.rec)


def _lstm_backward(b, cell, x, p, g, buf, dhs, dh, dc, dx, s):
    b.k.lstm.lstm_backward(x, p["w_x"], p["w_h"], buf["hs"], buf["gates"], buf["cs"], dhs, dh,
                           dc, dx, g["w_x"], g["w_h"], g["b"], s["dg"], b.rec)


def _gru_forward(b, cell, x, p, buf):
    b.k.gru.gru_forward(x, p["w_x"], p["w_h"], p["b"], p["b_hn"], buf["gates"], buf["a"],
                        buf["hs"], b.rec)


def _gru_backward(b, cell, x, p, g, buf, dhs, dh, dc, dx, s):
    b.k.gru.gru_backward(x, p["w_x"], p["w_h"], buf["gates"], buf["a"], buf["hs"], dhs, dh, dx,
                         g["w_x"], g["w_h"], g["b"], g["b_hn"], s["dg"], s["dgh"], b.rec)


def _rnn_forward(b, cell, x, p, buf):
    b.k.rnn.rnn_forward(x, p["w_x"], p["w_h"], p["b"], buf["hs"], buf["gates"], b.rec,
                        relu=cell.relu)


def _rnn_backward(b, cell, x, p, g, buf, dhs, dh, dc, dx, s):
    b.k.rnn.rnn_backward(x, p["w_x"], p["w_h"], buf["hs"], dhs, dh, dx, g["w_x"], g["w_h"],
                         g["b"], s["dg"], b.rec, relu=cell.relu)


# Each cell's kernels; `cached`: what its first step would otherwise compile longest
# (the recurrence; the products are cuBLAS's on a GPU with CuPy).
KERNELS = {
    "lstm": CellKernels(_lstm_forward, _lstm_backward, buffers.LSTM,
                        ("recurrent.lstm_forward_steps",)),
    "gru": CellKernels(_gru_forward, _gru_backward, buffers.GRU,
                       ("recurrent.gru_forward_steps",)),
    "rnn-tanh": CellKernels(_rnn_forward, _rnn_backward, buffers.RNN,
                            ("recurrent.rnn_forward_steps",)),
    "rnn-relu": CellKernels(_rnn_forward, _rnn_backward, buffers.RNN,
                            ("recurrent.rnn_forward_steps",)),
}
