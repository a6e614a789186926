"""Each cell's kernels as the CPU backend runs them (rnnkit/kernels/cpu): forward and backward
over a layer's buffers and scratch, the buffers' layout, and the compiled driver whose cached
build says whether a first step compiles."""
from rnnkit.backends.interface import CellKernels
from rnnkit.kernels.cpu import buffers, gru, lstm, rnn


def _lstm_forward(b, cell, x, p, buf):
    lstm.lstm_forward(x, p["w_x"], p["w_h"], p["b"], buf["hs"], buf["c"], buf["gates"],
                      buf["cs"], buf["z"], buf["wt"], buf["hp"])


def _lstm_backward(b, cell, x, p, g, buf, dhs, dh, dc, dx, s):
    lstm.lstm_backward(x, p["w_x"], p["w_h"], buf["hs"], buf["gates"], buf["cs"], dhs, dh, dc,
                       dx, g["w_x"], g["w_h"], g["b"], s["dg"], s["dht"], s["dct"], s["dwt"],
                       s["dxt"], s["bp"], s["dgp"])


def _gru_forward(b, cell, x, p, buf):
    gru.gru_forward(x, p["w_x"], p["w_h"], p["b"], p["b_hn"], buf["gates"], buf["a"],
                    buf["hs"], buf["wp"])


def _gru_backward(b, cell, x, p, g, buf, dhs, dh, dc, dx, s):
    gru.gru_backward(x, p["w_x"], p["w_h"], buf["gates"], buf["a"], buf["hs"], dhs, dh, dx,
                     g["w_x"], g["w_h"], g["b"], g["b_hn"], s["dg"], s["dgh"], s["wt"])


def _rnn_forward(b, cell, x, p, buf):
    rnn.rnn_forward(x, p["w_x"], p["w_h"], p["b"], buf["hs"], buf["gates"], buf["wp"],
                    relu=cell.relu)


def _rnn_backward(b, cell, x, p, g, buf, dhs, dh, dc, dx, s):
    rnn.rnn_backward(x, p["w_x"], p["w_h"], buf["hs"], dhs, dh, dx, g["w_x"], g["w_h"], g["b"],
                     s["dg"], s["wt"], relu=cell.relu)


# Each cell's kernels; `cached`: its forward driver (the threaded build adds "_parallel").
KERNELS = {
    "lstm": CellKernels(_lstm_forward, _lstm_backward, buffers.LSTM, ("lstm._forward",)),
    "gru": CellKernels(_gru_forward, _gru_backward, buffers.GRU, ("gru._forward",)),
    "rnn-tanh": CellKernels(_rnn_forward, _rnn_backward, buffers.RNN, ("rnn._forward",)),
    "rnn-relu": CellKernels(_rnn_forward, _rnn_backward, buffers.RNN, ("rnn._forward",)),
}
