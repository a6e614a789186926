"""LSTM layer on the device: forward and BPTT. Gate order (i, f, g, o); docs/cells.md.

Same interface as rnnkit/kernels/cpu/lstm.py: x (T, N, D), w_x (D, 4H), w_h (H, 4H),
b (4H,); hs (T + 1, N, H), c (N, H). The caches are time-major, as the GRU's and RNN's
(kernels/cuda/buffers.py, recurrent.py): gates (T, N, 4H) (the input projection, then the
activated gates), cs (T + 1, N, H), dgates (T, N, 4H).

Forward: the input projection of all T steps is one product (kernels/cuda/products.py); the
recurrence adds b and W_h^T h_{t-1} and activates. BPTT: the recurrence carries dh (from the
next step's gate gradients through W_h) and dc per unit, in the caller's dh and dc (each entry
touched by one block only), and sums db; then dW_x, dW_h and dx over all steps are products.
"""
import math

from numba import float64

from rnnkit.kernels import pointwise
from rnnkit.kernels.checks import check, spec
from rnnkit.kernels.cuda.buffers import LSTM
from rnnkit.kernels.cuda import launch as L
from rnnkit.kernels.cuda.launch import device
from rnnkit.kernels.cuda.recurrent import steps_kernel, layer_grads, project

_P = pointwise.build(device, math.tanh)
_cell, _cell_grad = _P.lstm_cell, _P.lstm_cell_grad


@device
def forward_cell(t, T, n, j, N, H, red, r, RS, live, b, b2, gates, cs, hs, c_io, a4, a5, a6,
                 acc, flag):
    """Unit j of stream n at step t: gates[t, n] holds x_t W_x and becomes (i, f, g, o);
    cs[t + 1], hs[t + 1] get c_t, h_t; step 0 takes c_0 from c_io, the last leaves c there."""
    row = (t * N + n) * 4 * H
    at = (t * N + n) * H + j
    if t == 0:
        cs[at] = c_io[n * H + j]
    i, f, g, o, c, h = _cell(gates[row + j] + b[j] + red[r],
                             gates[row + H + j] + b[H + j] + red[r + RS],
                             gates[row + 2 * H + j] + b[2 * H + j] + red[r + 2 * RS],
                             gates[row + 3 * H + j] + b[3 * H + j] + red[r + 3 * RS],
                             cs[at], gates.dtype.type(0.5))
    gates[row + j], gates[row + H + j], gates[row + 2 * H + j], gates[row + 3 * H + j] = \
        i, f, g, o
    cs[at + N * H] = c
    hs[at + N * H] = h
    if t == T - 1:
        c_io[n * H + j] = c


@device
def backward_cell(t, T, n, j, N, H, red, r, RS, live, db, db2, gates, cs, dhs, dg, dh, dc, a6,
                  acc, flag):
    """BPTT at unit j of stream n, step t: the gradient on h_t is dhs[t] plus W_h dg_{t+1} (at
    the last step dh, the final state's); t = -1 leaves W_h dg_0 in dh."""
    if t < 0:
        dh[n * H + j] = red[r]
        return
    at = (t * N + n) * H + j
    row = (t * N + n) * 4 * H
    d = (red[r] if live else dh[n * H + j]) + dhs[at]
    di, df, dgg, do, dcp = _cell_grad(gates[row + j], gates[row + H + j],
                                      gates[row + 2 * H + j], gates[row + 3 * H + j], cs[at],
                                      cs[at + N * H], d, dc[n * H + j], gates.dtype.type(1.0))
    dg[row + j], dg[row + H + j], dg[row + 2 * H + j], dg[row + 3 * H + j] = di, df, dgg, do
    dc[n * H + j] = dcp
    k = n * 4 * H + j
    if t == T - 1:
        acc[k], acc[k + H] = float64(di), float64(df)
        acc[k + 2 * H], acc[k + 3 * H] = float64(dgg), float64(do)
    else:
        acc[k] += float64(di)
        acc[k + H] += float64(df)
        acc[k + 2 * H] += float64(dgg)
        acc[k + 3 * H] += float64(do)


forward_steps = steps_kernel("lstm_forward_steps", forward_cell, 4, 4, False)
backward_steps = steps_kernel("lstm_backward_steps", backward_cell, 4, 4, True)


def lstm_forward(x, w_x, w_h, b, hs, c, gates, cs, rec):
    """Run the layer over x; hs[0] and c hold the initial state. Writes hs, c (the final cell
    state), gates and cs. rec: the recurrence's launcher (backends/cuda.py)."""
    T, N, D = x.shape
    H = w_h.shape[0]
    arrays = dict(w_x=w_x, w_h=w_h, b=b, hs=hs, c=c, gates=gates, cs=cs)
    check(dict(arrays, x=x), x.dtype)
    spec({**LSTM.params(D, H), **LSTM.buffers(T, N, D, H)}, arrays)
    project(rec.blas, x, w_x, gates)
    rec.run(forward_steps, 4, False, T, N, H, (w_h, b, b, hs, gates, cs, hs, c, c, c, c),
            rec.acc(1), 0)


def lstm_backward(x, w_x, w_h, hs, gates, cs, dhs, dh, dc, dx, dw_x, dw_h, db, dgates, rec):
    """BPTT after lstm_forward with the same weights. Weight gradients accumulate (+=); dx is
    overwritten; dh and dc go from the final state's gradients to the initial state's.
    dgates (T, N, 4H): scratch."""
    T, N, D = x.shape
    H = w_h.shape[0]
    arrays = dict(w_x=w_x, w_h=w_h, hs=hs, gates=gates, cs=cs, dg=dgates, dhs=dhs, dh=dh, dc=dc,
                  dx=dx)
    check(dict(arrays, x=x, dw_x=dw_x, dw_h=dw_h, db=db), x.dtype)
    spec({**LSTM.params(D, H), **LSTM.buffers(T, N, D, H), **LSTM.scratch(T, N, D, H),
          "dhs": (T, N, H), "dh": (N, H), "dc": (N, H), "dx": (T, N, D)}, arrays)
    spec(LSTM.params(D, H), dict(w_x=dw_x, w_h=dw_h, b=db))
    rec.run(backward_steps, 4, True, T, N, H,
            (w_h, db, db, dgates, gates, cs, dhs, dgates, dh, dc, dc), rec.acc(N * 4 * H), 0)
    layer_grads(rec.blas, x, hs, dgates, dgates, w_x, dx, dw_x, dw_h)


SIGNATURES = [(forward_steps, L.STEPS, L.FLOATS), (backward_steps, L.STEPS, L.FLOATS)]
