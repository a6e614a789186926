"""Elman RNN layer on the device: h_t = act(x_t W_x + h_{t-1} W_h + b), act = tanh or relu.

Same interface and buffers as rnnkit/kernels/cpu/rnn.py: gates (T, N, H) holds the
pre-activation input projection, hs (T + 1, N, H). Backward reads only hs: both derivatives
are functions of the output (tanh' = 1 - h^2, relu' = [h > 0]). The recurrence is
kernels/cuda/recurrent.py's with one gate.
"""
import math

from numba import cuda

from rnnkit.kernels.checks import check, spec
from rnnkit.kernels.cuda.buffers import RNN
from rnnkit.kernels.cuda import launch as L
from rnnkit.kernels.cuda.launch import jit
from rnnkit.kernels.cuda.recurrent import (CMAX, accumulate, grid_sync, load_w, project,
                                           reduce_parts, roles, weight_grads)



@jit
def forward_steps(w_h, pre, hs, T, N, H, relu, t0, t1, U, KC, NS, KS, bar, base, blocks):
    """Steps t0 <= t < t1 for units j0 = blockIdx.x U ... (a grid barrier between steps)."""
    sm = cuda.shared.array(0, hs.dtype)
    acc = cuda.local.array(CMAX, hs.dtype)
    zero = hs.dtype.type(0.0)
    C, tid = U, cuda.threadIdx.x
    j0 = cuda.blockIdx.x * U
    ws, part = sm[:C * KC], sm[C * KC:]
    nl, ks = roles(NS, KS, False)
    whole = KC >= H
    if whole:
        load_w(ws, w_h, C, U, j0, H, H, 1, 0, KC, H, H)
    cuda.syncthreads()
    for t in range(t0, t1):
        for n0 in range(0, N, NS):
            n = n0 + nl
            live = ks < KS and nl < NS and n < N
            for c in range(CMAX):
                acc[c] = zero
            for k0 in range(0, H, KC):
                if not whole:
                    load_w(ws, w_h, C, U, j0, H, H, 1, k0, KC, H, H)
                    cuda.syncthreads()
                if live:
                    accumulate(acc, ws, C, KC, min(KC, H - k0), hs, (t * N + n) * H + k0, 1,
                               ks, KS)
                if not whole:
                    cuda.syncthreads()
            reduce_parts(part, acc, C, NS, KS, nl, ks, live)
            for q in range(tid, U * NS, cuda.blockDim.x):
                u, m = q % U, q // U
                j, n = j0 + u, n0 + m
                if j < H and n < N:
                    v = pre[(t * N + n) * H + j] + part[(u * KS) * NS + m]
                    hs[((t + 1) * N + n) * H + j] = max(v, zero) if relu else math.tanh(v)
            cuda.syncthreads()
        if t < t1 - 1:
            grid_sync(bar, base, blocks, t - t0 + 1)


@jit
def backward_steps(w_h, hs, dhs, dg, dh, T, N, H, relu, t_hi, t_lo, U, KC, NS, KS, bar, base,
                   blocks):
    """BPTT steps t = t_hi down to t_lo (t = -1: the last phase, dh = dg_0 W_h^T). At step t
    the gradient on h_t is dhs[t] plus dg_{t+1} W_h^T (dh, the final state's, at t = T - 1)."""
    sm = cuda.shared.array(0, hs.dtype)
    acc = cuda.local.array(CMAX, hs.dtype)
    zero, one = hs.dtype.type(0.0), hs.dtype.type(1.0)
    C, tid = U, cuda.threadIdx.x
    j0 = cuda.blockIdx.x * U
    ws, part = sm[:C * KC], sm[C * KC:]
    nl, ks = roles(NS, KS, False)
    whole = KC >= H
    if whole:
        load_w(ws, w_h, C, U, j0, H, 0, H, 0, KC, H, 1)
    cuda.syncthreads()
    for step in range(t_hi - t_lo + 1):
        t = t_hi - step
        for n0 in range(0, N, NS):
            n = n0 + nl
            live = ks < KS and nl < NS and n < N
            for c in range(CMAX):
                acc[c] = zero
            if t < T - 1:
                for k0 in range(0, H, KC):
                    if not whole:
                        load_w(ws, w_h, C, U, j0, H, 0, H, k0, KC, H, 1)
                        cuda.syncthreads()
                    if live:
                        accumulate(acc, ws, C, KC, min(KC, H - k0), dg,
                                   ((t + 1) * N + n) * H + k0, 1, ks, KS)
                    if not whole:
                        cuda.syncthreads()
            reduce_parts(part, acc, C, NS, KS, nl, ks, live)
            for q in range(tid, U * NS, cuda.blockDim.x):
                u, m = q % U, q // U
                j, n = j0 + u, n0 + m
                if j < H and n < N:
                    carry = dh[n * H + j] if t == T - 1 else part[(u * KS) * NS + m]
                    if t < 0:
                        dh[n * H + j] = carry
                        continue
                    d = carry + dhs[(t * N + n) * H + j]
                    h = hs[((t + 1) * N + n) * H + j]
                    if relu:
                        dg[(t * N + n) * H + j] = d if h > zero else zero
                    else:
                        dg[(t * N + n) * H + j] = d * (one - h * h)
            cuda.syncthreads()
        if t > t_lo:
            grid_sync(bar, base, blocks, step + 1)


def rnn_forward(x, w_x, w_h, b, hs, pre, rec, relu=False):
    """Run the layer over x; hs[0] holds the initial state. Writes hs and pre (T, N, H)."""
    T, N, D = x.shape
    H = w_h.shape[0]
    arrays = dict(w_x=w_x, w_h=w_h, b=b, hs=hs, gates=pre)
    check(dict(arrays, x=x), x.dtype)
    spec({**RNN.params(D, H), **RNN.buffers(T, N, D, H)}, arrays)
    project(x, w_x, b, pre)
    rec.forward(forward_steps, 1, T, N, H, (w_h, pre, hs), (bool(relu),))


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
    rec.backward(backward_steps, 1, T, N, H, (w_h, hs, dhs, dgates, dh), (bool(relu),))
    weight_grads(x, hs, dgates, dgates, w_x, dx, dw_x, dw_h, db)


SIGNATURES = [(forward_steps, "aaa iiib iiiiii Iii", L.FLOATS),
              (backward_steps, "aaaaa iiib iiiiii Iii", L.FLOATS)]
