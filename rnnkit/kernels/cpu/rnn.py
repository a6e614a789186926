"""Elman RNN layer: h_t = act(x_t W_x + h_{t-1} W_h + b), act = tanh or relu.

Shapes: x (T, N, D), w_x (D, H), w_h (H, H), b (H,); hs (T + 1, N, H) with the initial state
at index 0. Backward reads only hs: both derivatives are functions of the output
(tanh' = 1 - h^2, relu' = [h > 0]). Memory kept for backward: T*N*H floats.

The input projection of all steps is one BLAS product before the recurrence, into pre
(T, N, H); each step then adds h_{t-1} W_h there in kernels/cpu/tiles.py, time-major: panels
of streams by blocks of W_h's columns. Threads own blocks of hidden units and meet once per
step, or blocks of streams (kernels/cpu/blocks.py, split); W_h is packed once per call in the
order the tiles read it (wp). BPTT mirrors it against W_h.T, packed likewise (wt); then dW
and dx over all steps.
"""
from numba import njit, prange

from rnnkit.kernels.cpu import leaf, table
from rnnkit.kernels.cpu.compile import JIT, Twin
from rnnkit.kernels.cpu.blocks import (block, hidden_grad, pack_w_h, pack_w_h_t, project,
                                       rows_for, split, step_product, units,
                                       weight_grads)
from rnnkit.kernels.cpu.activations import tanh
from rnnkit.kernels.checks import check, spec
from rnnkit.kernels.cpu.buffers import RNN


@njit(**JIT)
def _activate(p, h, relu):
    """h = act(p), 1-D of one length: loops from 0 over views, which LLVM vectorises."""
    if relu:
        zero = h.dtype.type(0.0)
        for j in range(h.size):
            h[j] = max(p[j], zero)
    else:
        for j in range(h.size):
            h[j] = tanh(p[j])


@njit(**JIT)
def forward_step(pre, hs, wp, relu, t, j0, j1, n0, n1):
    """Units j0:j1 of streams n0:n1 at step t: pre[t] += h_{t-1} W_h there (W_h packed in wp:
    blocks.pack_w_h), then h_t."""
    step_product(hs[t], wp, 0, j0, j1, n0, n1, pre[t], j0)
    for n in range(n0, n1):
        _activate(pre[t, n, j0:j1], hs[t + 1, n, j0:j1], relu)


def _forward(pre, hs, wp, w_h, relu, su, ss):
    """su, ss: the recurrence's unit and stream blocks (split)."""
    T, N, H = pre.shape[0], hs.shape[1], hs.shape[2]
    parts = su * ss
    for i in prange(parts):
        j0, j1 = units(H, parts, i)
        pack_w_h(w_h, wp, j0, j1)
    if su > 1:
        for t in range(T):
            for i in prange(parts):
                j0, j1, n0, n1 = block(H, N, su, ss, i)
                forward_step(pre, hs, wp, relu, t, j0, j1, n0, n1)
    else:
        for i in prange(parts):     # each thread all steps of its streams
            j0, j1, n0, n1 = block(H, N, su, ss, i)   # su = 1: units 0:H
            for t in range(T):
                forward_step(pre, hs, wp, relu, t, j0, j1, n0, n1)


_forward = Twin(_forward)


@njit(**JIT)
def _derivative(d, h, g, relu):
    """g = d * act'(h), 1-D of one length."""
    if relu:
        zero = h.dtype.type(0.0)
        for j in range(h.size):
            g[j] = d[j] if h[j] > zero else zero
    else:
        one = h.dtype.type(1.0)
        for j in range(h.size):
            g[j] = d[j] * (one - h[j] * h[j])


@njit(**JIT)
def backward_step(wt, hs, dhs, dh, dg, relu, t, j0, j1, n0, n1):
    """Units j0:j1 of streams n0:n1 at BPTT step t. dh there: the gradient on h_t, which is the
    final state's (given) plus dhs[t] at the last step, dhs[t] + dg_{t+1} W_h.T below it (wt:
    W_h.T packed, blocks.pack_w_h_t); then dg_t = dh * act'(h_t)."""
    T = dhs.shape[0]
    for n in range(n0, n1):
        d, s = dh[n, j0:j1], dhs[t, n, j0:j1]
        if t == T - 1:
            for j in range(d.size):
                d[j] += s[j]
        else:
            for j in range(d.size):
                d[j] = s[j]
    if t < T - 1:
        hidden_grad(wt, dg[t + 1], dh, j0, j1, n0, n1)
    for n in range(n0, n1):
        _derivative(dh[n, j0:j1], hs[t + 1, n, j0:j1], dg[t, n, j0:j1], relu)


@njit(**JIT)
def initial_grad(wt, dh, dg, j0, j1, n0, n1):
    """dh there = dg_0 W_h.T: the gradient on the initial state."""
    for n in range(n0, n1):
        d = dh[n, j0:j1]
        for j in range(d.size):
            d[j] = 0.0
    hidden_grad(wt, dg[0], dh, j0, j1, n0, n1)


def _backward(w_h, hs, dhs, dh, dgates, wt, relu, su, ss):
    T, N, H = dhs.shape[0], hs.shape[1], hs.shape[2]
    parts = su * ss
    for i in prange(parts):
        j0, j1 = units(H, parts, i)
        pack_w_h_t(w_h, wt, j0, j1)
    if su > 1:
        for t in range(T - 1, -1, -1):
            for i in prange(parts):
                j0, j1, n0, n1 = block(H, N, su, ss, i)
                backward_step(wt, hs, dhs, dh, dgates, relu, t, j0, j1, n0, n1)
        for i in prange(parts):
            j0, j1, n0, n1 = block(H, N, su, ss, i)
            initial_grad(wt, dh, dgates, j0, j1, n0, n1)
    else:
        for i in prange(parts):
            j0, j1, n0, n1 = block(H, N, su, ss, i)   # su = 1: units 0:H
            for t in range(T - 1, -1, -1):
                backward_step(wt, hs, dhs, dh, dgates, relu, t, j0, j1, n0, n1)
            initial_grad(wt, dh, dgates, j0, j1, n0, n1)


_backward = Twin(_backward)


def rnn_forward(x, w_x, w_h, b, hs, pre, wp, relu=False, tt=None, tid=None):
    """Run the layer over x; hs[0] must hold the initial state.

    Writes hs (T + 1, N, H). Scratch: pre (T, N, H), the cell's buffer "gates"; wp (1, HP, H),
    W_h packed (HP: H padded, kernels/cpu/buffers.py).
    """
    T, N, D = x.shape
    H = w_h.shape[0]
    arrays = dict(w_x=w_x, w_h=w_h, b=b, hs=hs, gates=pre, wp=wp)
    check(dict(arrays, x=x), x.dtype)
    spec({**RNN.params(D, H), **RNN.buffers(T, N, D, H)}, arrays)
    su, ss = split(H, N, 1)
    leaf.ready(x.dtype)
    tt, tid = table.arrays(tt, tid, H, T, N, D, x.dtype)
    if tt.shape[0]:
        table.gather_time_major(tt, tid, pre, rows_for(T, N))
    else:
        project(x, w_x, b, pre, rows_for(T, N))
    _forward(su * ss, pre, hs, wp, w_h, bool(relu), su, ss)


def rnn_backward(x, w_x, w_h, hs, dhs, dh, dx, dw_x, dw_h, db, dgates, wt, relu=False,
                 tid=None, gt=None):
    """BPTT through the layer. Weight gradients accumulate (+=); dx is overwritten.

    dhs (T, N, H): loss gradient on each output. dh (N, H): gradient on the final state in,
    on the initial state out. Scratch: dgates (T, N, H), wt (HP, H) for W_h.T packed.
    """
    T, N, D = x.shape
    H = w_h.shape[0]
    arrays = dict(w_x=w_x, w_h=w_h, hs=hs, dg=dgates, wt=wt, dhs=dhs, dh=dh, dx=dx)
    check(dict(arrays, x=x, dw_x=dw_x, dw_h=dw_h, db=db), x.dtype)
    spec({**RNN.params(D, H), **RNN.buffers(T, N, D, H), **RNN.scratch(T, N, D, H),
          "dhs": (T, N, H), "dh": (N, H), "dx": (T, N, D)}, arrays)
    spec(RNN.params(D, H), dict(w_x=dw_x, w_h=dw_h, b=db))
    su, ss = split(H, N, 1)
    leaf.ready(x.dtype)
    _backward(su * ss, w_h, hs, dhs, dh, dgates, wt, bool(relu), su, ss)
    gt, tid = table.arrays(gt, tid, H, T, N, D, x.dtype)
    weight_grads(x, hs[:T], dgates, dgates, w_x, dx, dw_x, dw_h, db, rows_for(T, N))
    if gt.shape[0]:
        table.scatter_time_major(dgates, tid, gt, rows_for(T, N))
