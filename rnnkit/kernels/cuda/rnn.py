"""Elman RNN layer on the device: h_t = act(x_t W_x + h_{t-1} W_h + b), act = tanh or relu.

Same interface and buffers as rnnkit/kernels/cpu/rnn.py: gates (T, N, H) holds the input
projection x_t W_x, hs (T + 1, N, H). Backward reads only hs: both derivatives are functions
of the output (tanh' = 1 - h^2, relu' = [h > 0]). The recurrence is
kernels/cuda/recurrent.py's with one gate; `flag` says relu.
"""
import math

from numba import float64

from rnnkit.kernels import pointwise
from rnnkit.kernels.checks import check, spec
from rnnkit.kernels.cuda.buffers import RNN
from rnnkit.kernels.cuda import launch as L
from rnnkit.kernels.cuda.launch import device
from rnnkit.kernels.cuda.recurrent import steps_kernel, layer_grads, project

_P = pointwise.build(device, math.tanh)
_cell, _cell_grad = _P.rnn_cell, _P.rnn_cell_grad


@device
def forward_cell(t, T, n, j, N, H, red, r, RS, live, b, b2, pre, a1, hs, a3, a4, a5, a6, acc,
                 flag):
    at = (t * N + n) * H + j
    hs[at + N * H] = _cell(pre[at] + b[j] + red[r], flag != 0, pre.dtype.type(0.0))


@device
def backward_cell(t, T, n, j, N, H, red, r, RS, live, db, db2, hs, dhs, dg, dh, a4, a5, a6,
                  acc, flag):
    """At step t the gradient on h_t is dhs[t] plus dg_{t+1} W_h^T (dh, the final state's,
    at the last step); t = -1 leaves dg_0 W_h^T in dh."""
    if t < 0:
        dh[n * H + j] = red[r]
        return
    at = (t * N + n) * H + j
    d = (red[r] if live else dh[n * H + j]) + dhs[at]
    v = _cell_grad(hs[at + N * H], d, flag != 0, hs.dtype.type(0.0), hs.dtype.type(1.0))
    dg[at] = v
    if t == T - 1:
        acc[n * H + j] = float64(v)
    else:
        acc[n * H + j] += float64(v)


forward_steps = steps_kernel("rnn_forward_steps", forward_cell, 1, 1, False)
backward_steps = steps_kernel("rnn_backward_steps", backward_cell, 1, 1, True)


def rnn_forward(x, w_x, w_h, b, hs, pre, rec, relu=False):
    """Run the layer over x; hs[0] holds the initial state. Writes hs and pre (T, N, H)."""
    T, N, D = x.shape
    H = w_h.shape[0]
    arrays = dict(w_x=w_x, w_h=w_h, b=b, hs=hs, gates=pre)
    check(dict(arrays, x=x), x.dtype)
    spec({**RNN.params(D, H), **RNN.buffers(T, N, D, H)}, arrays)
    project(rec.blas, x, w_x, pre)
    rec.run(forward_steps, 1, False, T, N, H, (w_h, b, b, hs, pre, hs, hs, hs, hs, hs, hs),
            rec.acc(1), int(relu))


def rnn_backward(x, w_x, w_h, hs, dhs, dh, dx, dw_x, dw_h, db, dgates, rec, relu=False):
    """BPTT through the layer. Weight gradients accumulate (+=); dx is overwritten; dh goes
    from the final state's gradient to the initial state's. dgates (T, N, H): scratch."""
    T, N, D = x.shape
    H = w_h.shape[0]
    arrays = dict(w_x=w_x, w_h=w_h, hs=hs, dg=dgates, dhs=dhs, dh=dh, dx=dx)
    check(dict(arrays, x=x, dw_x=dw_x, dw_h=dw_h, db=db), x.dtype)
    spec({**RNN.params(D, H), **RNN.buffers(T, N, D, H), **RNN.scratch(T, N, D, H),
          "dhs": (T, N, H), "dh": (N, H), "dx": (T, N, D)}, arrays)
    spec(RNN.params(D, H), dict(w_x=dw_x, w_h=dw_h, b=db))
    rec.run(backward_steps, 1, True, T, N, H, (w_h, db, db, dgates, hs, dhs, dgates, dh, dh, dh,
                                               dh), rec.acc(N * H), int(relu))
    layer_grads(rec.blas, x, hs, dgates, dgates, w_x, dx, dw_x, dw_h)


SIGNATURES = [(forward_steps, L.STEPS, L.FLOATS), (backward_steps, L.STEPS, L.FLOATS)]
