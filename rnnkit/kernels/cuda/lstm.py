"""LSTM layer on the device: forward and BPTT. Gate order (i, f, g, o); docs/cells.md.

Same interface and buffers as rnnkit/kernels/cpu/lstm.py: x (T, N, D), w_x (D, 4H), w_h
(H, 4H), b (4H,); hs (T + 1, N, H), c (N, H); caches gates (T, 4H, N), cs (T + 1, H, N) and
z (T + 1, D + H, N), feature-major (streams last). Here z's state rows z[t][D:] = h_{t-1}^T
are what each step reads (a step's loads run along the streams) and what dW_h reads; its
input rows and the CPU's packed weights (wt, dwt, dxt) are not needed: the products read x
and W in place (kernels/cuda/gemm.py).

Forward: the input projection of all T steps is one product, gates[t] = W_x^T x_t^T + b;
then the recurrence (kernels/cuda/recurrent.py) adds W_h^T h_{t-1} and activates, per block
for its units. BPTT: the recurrence carries dh (from the next step's gate gradients through
W_h) and dc per unit, in the caller's dh and dc (each entry touched by one block only); then
dW, db and dx over all steps are products and sums.
"""
import math

from numba import cuda

from rnnkit.kernels.checks import check, spec
from rnnkit.kernels.cuda.buffers import LSTM
from rnnkit.kernels.cuda import launch as L
from rnnkit.kernels.cuda.gemm import View, product, row_sums
from rnnkit.kernels.cuda.launch import jit
from rnnkit.kernels.cuda.recurrent import (CMAX, accumulate, grid_sync, load_w, reduce_parts,
                                           roles)



@jit
def forward_steps(w_h, gates, cs, z, hs, c_out, T, N, H, D, t0, t1, U, KC, NS, KS, bar, base,
                  blocks):
    """Steps t0 <= t < t1 for units j0 = blockIdx.x U ... j0 + U - 1 (a grid barrier between
    steps). gates[t] holds the input projection and becomes the activated gates; step 0 reads
    the initial state from hs[0] and c_out and copies it into z[0] and cs[0]."""
    sm = cuda.shared.array(0, gates.dtype)
    acc = cuda.local.array(CMAX, gates.dtype)
    zero, half = gates.dtype.type(0.0), gates.dtype.type(0.5)
    G, C, tid = 4, 4 * U, cuda.threadIdx.x
    j0 = cuda.blockIdx.x * U
    ws, part = sm[:C * KC], sm[C * KC:]
    DH = D + H
    nl, ks = roles(NS, KS, True)
    whole = KC >= H
    if whole:
        load_w(ws, w_h, C, U, j0, H, H, 1, 0, KC, H, G * H)
    cuda.syncthreads()
    for t in range(t0, t1):
        for n0 in range(0, N, NS):
            n = n0 + nl
            live = ks < KS and nl < NS and n < N
            for c in range(CMAX):
                acc[c] = zero
            for k0 in range(0, H, KC):
                if not whole:
                    load_w(ws, w_h, C, U, j0, H, H, 1, k0, KC, H, G * H)
                    cuda.syncthreads()
                if live and t == 0:         # h_0 from hs: z[0] is written below
                    accumulate(acc, ws, C, KC, min(KC, H - k0), hs, n * H + k0, 1, ks, KS)
                elif live:
                    accumulate(acc, ws, C, KC, min(KC, H - k0), z, (t * DH + D + k0) * N + n, N,
                               ks, KS)
                if not whole:
                    cuda.syncthreads()
            reduce_parts(part, acc, C, NS, KS, nl, ks, live)
            for q in range(tid, U * NS, cuda.blockDim.x):
                u, m = q // NS, q % NS
                j, n = j0 + u, n0 + m
                if j < H and n < N:
                    a = t * 4 * H * N + j * N + n
                    gi = gates[a] + part[((0 * U + u) * KS) * NS + m]
                    gf = gates[a + H * N] + part[((1 * U + u) * KS) * NS + m]
                    gg = gates[a + 2 * H * N] + part[((2 * U + u) * KS) * NS + m]
                    go = gates[a + 3 * H * N] + part[((3 * U + u) * KS) * NS + m]
                    i = half * math.tanh(half * gi) + half
                    f = half * math.tanh(half * gf) + half
                    g = math.tanh(gg)
                    o = half * math.tanh(half * go) + half
                    if t == 0:              # the initial state into the caches
                        c0 = c_out[n * H + j]
                        cs[j * N + n] = c0
                        z[(D + j) * N + n] = hs[n * H + j]
                    c = f * cs[(t * H + j) * N + n] + i * g
                    h = o * math.tanh(c)
                    gates[a], gates[a + H * N] = i, f
                    gates[a + 2 * H * N], gates[a + 3 * H * N] = g, o
                    cs[((t + 1) * H + j) * N + n] = c
                    z[((t + 1) * DH + D + j) * N + n] = h
                    hs[((t + 1) * N + n) * H + j] = h
                    if t == T - 1:
                        c_out[n * H + j] = c
            cuda.syncthreads()
        if t < t1 - 1:
            grid_sync(bar, base, blocks, t - t0 + 1)


@jit
def backward_steps(w_h, gates, cs, dhs, dg, dh, dc, T, N, H, t_hi, t_lo, U, KC, NS, KS, bar,
                   base, blocks):
    """BPTT steps t = t_hi down to t_lo for the block's units; t = -1 is the last phase, the
    initial state's gradient dh = W_h dgates_0. Between steps dh (N, H) holds the gradient
    on h_t from step t + 1's gates, dc (N, H) the one on c_t; each unit's entries belong to
    its block."""
    sm = cuda.shared.array(0, gates.dtype)
    acc = cuda.local.array(CMAX, gates.dtype)
    zero, one = gates.dtype.type(0.0), gates.dtype.type(1.0)
    C, tid = U, cuda.threadIdx.x
    GH = 4 * H
    j0 = cuda.blockIdx.x * U
    ws, part = sm[:C * KC], sm[C * KC:]
    nl, ks = roles(NS, KS, True)
    whole = KC >= GH
    if whole:
        load_w(ws, w_h, C, U, j0, H, 0, GH, 0, KC, GH, 1)
    cuda.syncthreads()
    for step in range(t_hi - t_lo + 1):
        t = t_hi - step
        for n0 in range(0, N, NS):
            n = n0 + nl
            live = ks < KS and nl < NS and n < N
            for c in range(CMAX):
                acc[c] = zero
            if t < T - 1:
                for k0 in range(0, GH, KC):
                    if not whole:
                        load_w(ws, w_h, C, U, j0, H, 0, GH, k0, KC, GH, 1)
                        cuda.syncthreads()
                    if live:
                        accumulate(acc, ws, C, KC, min(KC, GH - k0), dg,
                                   ((t + 1) * GH + k0) * N + n, N, ks, KS)
                    if not whole:
                        cuda.syncthreads()
            reduce_parts(part, acc, C, NS, KS, nl, ks, live)
            for q in range(tid, U * NS, cuda.blockDim.x):
                u, m = q // NS, q % NS
                j, n = j0 + u, n0 + m
                if j < H and n < N:
                    carry = dh[n * H + j] if t == T - 1 else part[(u * KS) * NS + m]
                    if t < 0:
                        dh[n * H + j] = carry
                        continue
                    d = carry + dhs[(t * N + n) * H + j]
                    a = t * GH * N + j * N + n
                    i, f = gates[a], gates[a + H * N]
                    g, o = gates[a + 2 * H * N], gates[a + 3 * H * N]
                    c = cs[((t + 1) * H + j) * N + n]
                    tc = math.tanh(c)
                    dcv = dc[n * H + j] + d * o * (one - tc * tc)
                    dg[a] = dcv * g * i * (one - i)
                    dg[a + H * N] = dcv * cs[(t * H + j) * N + n] * f * (one - f)
                    dg[a + 2 * H * N] = dcv * i * (one - g * g)
                    dg[a + 3 * H * N] = d * tc * o * (one - o)
                    dc[n * H + j] = dcv * f
            cuda.syncthreads()
        if t > t_lo:
            grid_sync(bar, base, blocks, step + 1)


def lstm_forward(x, w_x, w_h, b, hs, c, gates, cs, z, rec):
    """Run the layer over x; hs[0] and c hold the initial state. Writes hs, c (the final cell
    state), gates, cs and z[:, D:]. rec: the recurrence's launcher (backends/cuda.py)."""
    T, N, D = x.shape
    H = w_h.shape[0]
    arrays = dict(w_x=w_x, w_h=w_h, b=b, hs=hs, c=c, gates=gates, cs=cs, z=z)
    check(dict(arrays, x=x), x.dtype)
    spec({**LSTM.params(D, H), **LSTM.buffers(T, N, D, H)}, arrays)
    G = 4 * H
    product(View(gates, 0, G * N, N, 1), View(w_x, 0, 0, 1, 0, G), View(x, 0, N * D, 0, 1, D),
            T, G, N, D, bias=b, bias_ij=(1, 0))
    rec.forward(forward_steps, 4, T, N, H, (w_h, gates, cs, z, hs, c), (D,))


def lstm_backward(x, w_x, w_h, hs, gates, cs, z, dhs, dh, dc, dx, dw_x, dw_h, db, dgates, rec):
    """BPTT after lstm_forward with the same weights. Weight gradients accumulate (+=); dx is
    overwritten; dh and dc go from the final state's gradients to the initial state's.
    dgates (T, 4H, N): scratch."""
    T, N, D = x.shape
    H = w_h.shape[0]
    arrays = dict(w_x=w_x, w_h=w_h, hs=hs, gates=gates, cs=cs, z=z, dg=dgates, dhs=dhs, dh=dh,
                  dc=dc, dx=dx)
    check(dict(arrays, x=x, dw_x=dw_x, dw_h=dw_h, db=db), x.dtype)
    spec({**LSTM.params(D, H), **LSTM.buffers(T, N, D, H), **LSTM.scratch(T, N, D, H),
          "dhs": (T, N, H), "dh": (N, H), "dc": (N, H), "dx": (T, N, D)}, arrays)
    spec(LSTM.params(D, H), dict(w_x=dw_x, w_h=dw_h, b=db))
    G = 4 * H
    rec.backward(backward_steps, 4, T, N, H, (w_h, gates, cs, dhs, dgates, dh, dc), ())
    # dW_x[d, r] += sum over t, n of x[t, n, d] dg[t, r, n]; dW_h likewise from z[t][D:].
    product(View(dw_x, 0, 0, G, 1), View(x, 0, 0, 1, N * D, D), View(dgates, 0, 0, G * N, 1, N),
            1, D, G, N, KB=T, accumulate=True)
    product(View(dw_h, 0, 0, G, 1), View(z, D * N, 0, N, (D + H) * N, 1),
            View(dgates, 0, 0, G * N, 1, N), 1, H, G, N, KB=T, accumulate=True)
    row_sums(dgates, db, G, T, N, 0, N, G * N, 1)
    # dx[t][n, d] = sum over r of dg[t][r, n] W_x[d, r]
    product(View(dx, 0, N * D, D, 1), View(dgates, 0, G * N, 1, N, N), View(w_x, 0, 0, 0, 1, G),
            T, N, D, G)


SIGNATURES = [(forward_steps, "aaaaaa iiiiiiiiii Iii", L.FLOATS),
              (backward_steps, "aaaaaaa iiiiiiiii Iii", L.FLOATS)]
