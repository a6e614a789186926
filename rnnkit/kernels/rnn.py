"""Elman RNN layer: h_t = act(x_t W_x + h_{t-1} W_h + b), act = tanh or relu.

Shapes: x (T, N, D), w_x (D, H), w_h (H, H), b (H,); hs (T + 1, N, H) with the initial state
at index 0 (see lstm.py for the layout). Backward reads only hs: both derivatives are functions
of the output (tanh' = 1 - h^2, relu' = [h > 0]). Memory kept for backward: T*N*H floats.
"""
from numba import njit, prange
import numpy as np

from rnnkit.config import JIT, serial_and_parallel
from rnnkit.kernels.blocks import plan, project, span, weight_grads
from rnnkit.kernels.activations import tanh
from rnnkit.kernels.checks import check, shape


@njit(**JIT)
def _forward_step(g, hp, h, relu):
    N, H = h.shape
    zero = h.dtype.type(0.0)
    for n in range(N):
        if relu:
            for j in range(H):
                h[n, j] = max(g[n, j] + hp[n, j], zero)
        else:
            for j in range(H):
                h[n, j] = tanh(g[n, j] + hp[n, j])


@njit(**JIT)
def _forward_rows(pre, hs, w_h, hp, relu, lo, hi):
    for t in range(pre.shape[0]):
        np.dot(hs[t][lo:hi], w_h, hp[lo:hi])
        _forward_step(pre[t][lo:hi], hp[lo:hi], hs[t + 1][lo:hi], relu)


def _forward(pre, hs, w_h, hp, relu, streams):
    N = hs.shape[1]
    for i in prange(streams):
        lo, hi = span(N, streams, i)
        if hi > lo:
            _forward_rows(pre, hs, w_h, hp, relu, lo, hi)


_forward_serial, _forward_parallel = serial_and_parallel(_forward)


@njit(**JIT)
def _backward_step(h, dh, dg, relu):
    N, H = h.shape
    one = h.dtype.type(1.0)
    zero = h.dtype.type(0.0)
    for n in range(N):
        if relu:
            for j in range(H):
                dg[n, j] = dh[n, j] if h[n, j] > zero else zero
        else:
            for j in range(H):
                dg[n, j] = dh[n, j] * (one - h[n, j] * h[n, j])


@njit(**JIT)
def _backward_rows(w_h, hs, dhs, dh, dgates, relu, lo, hi):
    for t in range(dhs.shape[0] - 1, -1, -1):
        d = dh[lo:hi]
        d += dhs[t][lo:hi]
        _backward_step(hs[t + 1][lo:hi], d, dgates[t][lo:hi], relu)
        np.dot(dgates[t][lo:hi], w_h.T, d)


def _backward(w_h, hs, dhs, dh, dgates, relu, streams):
    N = hs.shape[1]
    for i in prange(streams):
        lo, hi = span(N, streams, i)
        if hi > lo:
            _backward_rows(w_h, hs, dhs, dh, dgates, relu, lo, hi)


_backward_serial, _backward_parallel = serial_and_parallel(_backward)


def rnn_forward(x, w_x, w_h, b, hs, pre, work, relu=False):
    """Run the layer over x; hs[0] must hold the initial state.

    Writes hs (T + 1, N, H). pre (T, N, H) and work (N, H): scratch.
    """
    T, N, D = x.shape
    H = w_h.shape[0]
    check(dict(x=x, w_x=w_x, w_h=w_h, b=b, hs=hs, pre=pre, work=work), x.dtype)
    for name, a, s in (("w_x", w_x, (D, H)), ("w_h", w_h, (H, H)), ("b", b, (H,)),
                       ("hs", hs, (T + 1, N, H)), ("pre", pre, (T, N, H)), ("work", work, (N, H))):
        shape(name, a, s)
    rows, streams = plan(T, N)
    project(x, w_x, b, pre, rows)
    run = _forward_parallel if streams > 1 else _forward_serial
    run(pre, hs, w_h, work, bool(relu), streams)


def rnn_backward(x, w_x, w_h, hs, dhs, dh, dx, dw_x, dw_h, db, dgates, relu=False):
    """BPTT through the layer. Weight gradients accumulate (+=); dx is overwritten.

    dhs (T, N, H): loss gradient on each output. dh (N, H): gradient on the final state in,
    on the initial state out. dgates (T, N, H): scratch.
    """
    T, N, D = x.shape
    H = w_h.shape[0]
    check(dict(x=x, w_x=w_x, w_h=w_h, hs=hs, dhs=dhs, dh=dh, dx=dx, dw_x=dw_x, dw_h=dw_h, db=db,
               dgates=dgates), x.dtype)
    for name, a, s in (("hs", hs, (T + 1, N, H)), ("dhs", dhs, (T, N, H)), ("dh", dh, (N, H)),
                       ("dx", dx, (T, N, D)), ("dw_x", dw_x, w_x.shape), ("dw_h", dw_h, (H, H)),
                       ("db", db, (H,)), ("dgates", dgates, (T, N, H))):
        shape(name, a, s)
    rows, streams = plan(T, N)
    run = _backward_parallel if streams > 1 else _backward_serial
    run(w_h, hs, dhs, dh, dgates, bool(relu), streams)
    weight_grads(x, hs[:T], dgates, dgates, w_x, dx, dw_x, dw_h, db, rows)
