"""Elman RNN layer: h_t = act(x_t W_x + h_{t-1} W_h + b), act = tanh or relu.

Shapes: x (T, N, D), w_x (D, H), w_h (H, H), b (H,); hs (T + 1, N, H) with the initial state
at index 0 (see lstm.py for the layout). Backward reads only hs: both derivatives are functions
of the output (tanh' = 1 - h^2, relu' = [h > 0]). Memory kept for backward: T*N*H floats.
"""
from numba import njit
import numpy as np

from rnnkit.config import JIT
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
def _forward(x, w_x, w_h, b, hs, pre, hp, relu):
    T, N, D = x.shape
    np.dot(x.reshape(T * N, D), w_x, pre.reshape(T * N, pre.shape[2]))
    pre += b
    for t in range(T):
        np.dot(hs[t], w_h, hp)
        _forward_step(pre[t], hp, hs[t + 1], relu)


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
def _backward(x, w_x, w_h, hs, dhs, dh, dx, dw_x, dw_h, db, dgates, relu):
    T, N, D = x.shape
    H = w_h.shape[0]
    for t in range(T - 1, -1, -1):
        dh += dhs[t]
        _backward_step(hs[t + 1], dh, dgates[t], relu)
        np.dot(dgates[t], w_h.T, dh)
    dg2 = dgates.reshape(T * N, H)
    dw_h += np.dot(hs[:T].reshape(T * N, H).T, dg2)
    dw_x += np.dot(x.reshape(T * N, D).T, dg2)
    db += dg2.sum(axis=0)
    np.dot(dg2, w_x.T, dx.reshape(T * N, D))


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
    _forward(x, w_x, w_h, b, hs, pre, work, bool(relu))


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
    _backward(x, w_x, w_h, hs, dhs, dh, dx, dw_x, dw_h, db, dgates, bool(relu))
