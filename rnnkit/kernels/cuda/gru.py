"""GRU layer on the device, PyTorch's formulation, gate order (r, z, n); docs/cells.md.

    r = sigmoid(x W_xr + h W_hr + b_r)      z = sigmoid(x W_xz + h W_hz + b_z)
    a = h W_hn + b_hn                       n = tanh(x W_xn + b_n + r * a)
    h' = (1 - z) * n + z * h

Same interface and buffers as rnnkit/kernels/cpu/gru.py, time-major: gates (T, N, 3H) holds
the input projection and becomes (r, z, n); a (T, N, H) keeps h W_hn + b_hn; hs (T + 1, N, H).
The recurrence is kernels/cuda/recurrent.py's. BPTT keeps the input side's gate gradients
(dgx) apart from the hidden side's (dgh, whose n block carries the reset gate), carries dh per
unit, and sums db and db_hn.
"""
import math

from numba import float64

from rnnkit.kernels import pointwise
from rnnkit.kernels.checks import check, spec
from rnnkit.kernels.cuda.buffers import GRU
from rnnkit.kernels.cuda import launch as L
from rnnkit.kernels.cuda.launch import device
from rnnkit.kernels.cuda.recurrent import steps_kernel, layer_grads, project

_P = pointwise.build(device, math.tanh)
_cell, _cell_grad = _P.gru_cell, _P.gru_cell_grad


@device
def forward_cell(t, T, n, j, N, H, red, r, RS, live, b, b_hn, gates, a, hs, a3, a4, a5, a6,
                 acc, flag):
    row = (t * N + n) * 3 * H
    at = (t * N + n) * H + j
    an = red[r + 2 * RS] + b_hn[j]
    rr, z, nv, h = _cell(gates[row + j] + b[j], gates[row + H + j] + b[H + j],
                         gates[row + 2 * H + j] + b[2 * H + j], red[r], red[r + RS], an,
                         hs[at], gates.dtype.type(0.5), gates.dtype.type(1.0))
    gates[row + j], gates[row + H + j], gates[row + 2 * H + j] = rr, z, nv
    a[at] = an
    hs[at + N * H] = h


@device
def backward_cell(t, T, n, j, N, H, red, r, RS, live, db, db_hn, gates, a, hs, dhs, dgx, dgh,
                  dh, acc, flag):
    """Between steps dh holds z * (gradient on h) of step t + 1, the direct part of the
    gradient on h_t; t = -1 adds dgh_0 W_h^T to it."""
    carry = dh[n * H + j]
    if live:
        carry += red[r]
    if t < 0:
        dh[n * H + j] = carry
        return
    at = (t * N + n) * H + j
    row = (t * N + n) * 3 * H
    rr = gates[row + j]
    dr, dz, dn, direct = _cell_grad(rr, gates[row + H + j], gates[row + 2 * H + j], a[at],
                                    hs[at], carry + dhs[at], gates.dtype.type(1.0))
    dgx[row + j], dgx[row + H + j], dgx[row + 2 * H + j] = dr, dz, dn
    dgh[row + j], dgh[row + H + j], dgh[row + 2 * H + j] = dr, dz, dn * rr
    dh[n * H + j] = direct
    k = n * 4 * H + j
    if t == T - 1:
        acc[k], acc[k + H] = float64(dr), float64(dz)
        acc[k + 2 * H], acc[k + 3 * H] = float64(dn), float64(dn * rr)
    else:
        acc[k] += float64(dr)
        acc[k + H] += float64(dz)
        acc[k + 2 * H] += float64(dn)
        acc[k + 3 * H] += float64(dn * rr)


forward_steps = steps_kernel("gru_forward_steps", forward_cell, 3, 3, False)
backward_steps = steps_kernel("gru_backward_steps", backward_cell, 3, 4, True)


def gru_forward(x, w_x, w_h, b, b_hn, gates, a, hs, rec):
    """Run the layer over x; hs[0] holds the initial state. Writes gates, a and hs."""
    T, N, D = x.shape
    H = w_h.shape[0]
    arrays = dict(w_x=w_x, w_h=w_h, b=b, b_hn=b_hn, gates=gates, a=a, hs=hs)
    check(dict(arrays, x=x), x.dtype)
    spec({**GRU.params(D, H), **GRU.buffers(T, N, D, H)}, arrays)
    project(rec.blas, x, w_x, gates)
    rec.run(forward_steps, 3, False, T, N, H, (w_h, b, b_hn, hs, gates, a, hs, hs, hs, hs, hs),
            rec.acc(1), 0)


def gru_backward(x, w_x, w_h, gates, a, hs, dhs, dh, dx, dw_x, dw_h, db, db_hn, dgx, dgh, rec):
    """BPTT through the layer. Weight gradients accumulate (+=); dx is overwritten; dh goes
    from the final state's gradient to the initial state's. dgx, dgh (T, N, 3H): scratch."""
    T, N, D = x.shape
    H = w_h.shape[0]
    arrays = dict(w_x=w_x, w_h=w_h, gates=gates, a=a, hs=hs, dg=dgx, dgh=dgh, dhs=dhs, dh=dh,
                  dx=dx)
    check(dict(arrays, x=x, dw_x=dw_x, dw_h=dw_h, db=db, db_hn=db_hn), x.dtype)
    spec({**GRU.params(D, H), **GRU.buffers(T, N, D, H), **GRU.scratch(T, N, D, H),
          "dhs": (T, N, H), "dh": (N, H), "dx": (T, N, D)}, arrays)
    spec(GRU.params(D, H), dict(w_x=dw_x, w_h=dw_h, b=db, b_hn=db_hn))
    rec.run(backward_steps, 3, True, T, N, H,
            (w_h, db, db_hn, dgh, gates, a, hs, dhs, dgx, dgh, dh), rec.acc(N * 4 * H), 0)
    layer_grads(rec.blas, x, hs, dgx, dgh, w_x, dx, dw_x, dw_h)


SIGNATURES = [(forward_steps, L.STEPS, L.FLOATS), (backward_steps, L.STEPS, L.FLOATS)]
