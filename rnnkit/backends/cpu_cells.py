"""Each cell's kernels as the CPU backend runs them (rnnkit/kernels/cpu): forward and backward
over a layer's buffers and scratch, the buffers' layout, and the compiled driver whose cached
build says whether a first step compiles."""
from rnnkit.backends.interface import CellKernels
from rnnkit.kernels.cpu import buffers, gru, lstm, rnn


def _lstm_forward(b, cell, x, p, buf, table=None):
    tt, tid = table or (None, None)
    lstm.lstm_forward(x, p["w_x"], p["w_h"], p["b"], buf["hs"], buf["c"], buf["gates"],
                      buf["cs"], buf["z"], buf["wt"], buf["hp"], tt, tid)


def _lstm_backward(b, cell, x, p, g, buf, dhs, dh, dc, dx, s, table=None):
    tid, gt = table or (None, None)
    lstm.lstm_backward(x, p["w_x"], p["w_h"], buf["hs"], buf["gates"], buf["cs"], dhs, dh, dc,
                       dx, g["w_x"], g["w_h"], g["b"], s["dg"], s["dht"], s["dct"], s["dwt"],
                       s["dxt"], s["bp"], s["dgp"], tid, gt)


def _gru_forward(b, cell, x, p, buf, table=None):
    tt, tid = table or (None, None)
    gru.gru_forward(x, p["w_x"], p["w_h"], p["b"], p["b_hn"], buf["gates"], buf["a"],
                    buf["hs"], buf["wp"], tt, tid)


def _gru_backward(b, cell, x, p, g, buf, dhs, dh, dc, dx, s, table=None):
    tid, gt = table or (None, None)
    gru.gru_backward(x, p["w_x"], p["w_h"], buf["gates"], buf["a"], buf["hs"], dhs, dh, dx,
                     g["w_x"], g["w_h"], g["b"], g["b_hn"], s["dg"], s["dgh"], s["wt"], tid, gt)


def _rnn_forward(b, cell, x, p, buf, table=None):
    tt, tid = table or (None, None)
    rnn.rnn_forward(x, p["w_x"], p["w_h"], p["b"], buf["hs"], buf["gates"], buf["wp"],
                    cell.relu, tt, tid)


def _rnn_backward(b, cell, x, p, g, buf, dhs, dh, dc, dx, s, table=None):
    tid, gt = table or (None, None)
    rnn.rnn_backward(x, p["w_x"], p["w_h"], buf["hs"], dhs, dh, dx, g["w_x"], g["w_h"], g["b"],
                     s["dg"], s["wt"], cell.relu, tid, gt)


# Each cell's kernels; `cached`: its forward driver (the threaded build adds "_parallel").
KERNELS = {
    "lstm": CellKernels(_lstm_forward, _lstm_backward, buffers.LSTM, ("lstm._forward",)),
    "gru": CellKernels(_gru_forward, _gru_backward, buffers.GRU, ("gru._forward",)),
    "rnn-tanh": CellKernels(_rnn_forward, _rnn_backward, buffers.RNN, ("rnn._forward",)),
    "rnn-relu": CellKernels(_rnn_forward, _rnn_backward, buffers.RNN, ("rnn._forward",)),
}
