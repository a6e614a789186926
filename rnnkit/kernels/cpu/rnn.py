"""Elman RNN layer: h_t = act(x_t W_x + h_{t-1} W_h + b), act = tanh or relu.

Shapes: x (T, N, D), w_x (D, H), w_h (H, H), b (H,); hs (T + 1, N, H) with the initial state
at index 0. Backward reads only hs: both derivatives are functions of the output
(tanh' = 1 - h^2, relu' = [h > 0]). Memory kept for backward: T*N*H floats.
Threads own blocks of streams and run all steps on their own; each step's product runs in
kernels/cpu/blas.py's fast layout from H = FAST_FROM (kernels/cpu/blocks.py), in backward too (taken from H=128 on,
as the GRU does, it made this cell's step slower there: bench/RESULTS.md).
"""
from numba import njit, prange

from rnnkit.kernels.cpu import leaf
from rnnkit.kernels.cpu.jit import JIT, Twin
from rnnkit.kernels.cpu.blocks import (FAST_FROM, TRANSPOSE, add_rows, plan, project, span,
                                       step_grad, step_product, transpose_into, weight_grads)
from rnnkit.kernels.cpu.activations import tanh
from rnnkit.kernels.checks import check, spec
from rnnkit.kernels.cpu.buffers import RNN




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
def _forward_rows(pre, hs, w_h, wt, hp, hp_t, fast, relu, lo, hi):
    for t in range(pre.shape[0]):
        step_product(hs[t][lo:hi], w_h, wt, hp[lo:hi], hp_t[:, lo:hi], fast)
        _forward_step(pre[t][lo:hi], hp[lo:hi], hs[t + 1][lo:hi], relu)


def _forward(pre, hs, w_h, wt, hp, hp_t, fast, relu, streams):
    """hp (N, H), hp_t (H, N): scratch. fast: copy W_h.T into wt first, multiply by that."""
    N, H = hs.shape[1], w_h.shape[0]
    if fast:
        for i in prange(streams):
            lo, hi = span(H, streams, i)
            transpose_into(w_h[:, lo:hi], wt[lo:hi])
    for i in prange(streams):
        lo, hi = span(N, streams, i)
        if hi > lo:
            _forward_rows(pre, hs, w_h, wt, hp, hp_t, fast, relu, lo, hi)


_forward = Twin(_forward)


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
def _backward_rows(w_h, hs, dhs, dh, dgates, work, fast, relu, lo, hi):
    for t in range(dhs.shape[0] - 1, -1, -1):
        d = dh[lo:hi]
        add_rows(d, dhs[t][lo:hi])
        _backward_step(hs[t + 1][lo:hi], d, dgates[t][lo:hi], relu)
        step_grad(dgates[t][lo:hi], w_h, d, work[:, lo:hi], fast, False)


def _backward(w_h, hs, dhs, dh, dgates, work, fast, relu, streams):
    N = hs.shape[1]
    for i in prange(streams):
        lo, hi = span(N, streams, i)
        if hi > lo:
            _backward_rows(w_h, hs, dhs, dh, dgates, work, fast, relu, lo, hi)


_backward = Twin(_backward)


def rnn_forward(x, w_x, w_h, b, hs, pre, work, work_t, wt, relu=False):
    """Run the layer over x; hs[0] must hold the initial state.

    Writes hs (T + 1, N, H). Scratch: pre (T, N, H), work (N, H), work_t (H, N), wt (H, H).
    """
    T, N, D = x.shape
    H = w_h.shape[0]
    arrays = dict(w_x=w_x, w_h=w_h, b=b, hs=hs, gates=pre, work=work, work_t=work_t, wt=wt)
    check(dict(arrays, x=x), x.dtype)
    spec({**RNN.params(D, H), **RNN.buffers(T, N, D, H)}, arrays)
    rows, streams = plan(T, N)
    leaf.ready(x.dtype, [TRANSPOSE])
    project(x, w_x, b, pre, rows)
    _forward(streams, pre, hs, w_h, wt, work, work_t, H >= FAST_FROM, bool(relu), streams)


def rnn_backward(x, w_x, w_h, hs, dhs, dh, dx, dw_x, dw_h, db, dgates, work, relu=False):
    """BPTT through the layer. Weight gradients accumulate (+=); dx is overwritten.

    dhs (T, N, H): loss gradient on each output. dh (N, H): gradient on the final state in,
    on the initial state out. Scratch: dgates (T, N, H), work (H, N).
    """
    T, N, D = x.shape
    H = w_h.shape[0]
    arrays = dict(w_x=w_x, w_h=w_h, hs=hs, dg=dgates, work_h=work, dhs=dhs, dh=dh, dx=dx)
    check(dict(arrays, x=x, dw_x=dw_x, dw_h=dw_h, db=db), x.dtype)
    spec({**RNN.params(D, H), **RNN.buffers(T, N, D, H), **RNN.scratch(T, N, D, H),
          "dhs": (T, N, H), "dh": (N, H), "dx": (T, N, D)}, arrays)
    spec(RNN.params(D, H), dict(w_x=dw_x, w_h=dw_h, b=db))
    rows, streams = plan(T, N)
    leaf.ready(x.dtype, [TRANSPOSE])
    _backward(streams, w_h, hs, dhs, dh, dgates, work, H >= FAST_FROM, bool(relu), streams)
    weight_grads(x, hs[:T], dgates, dgates, w_x, dx, dw_x, dw_h, db, rows)
