"""GRU layer on the device, PyTorch's formulation, gate order (r, z, n); docs/cells.md.

    r = sigmoid(x W_xr + h W_hr + b_r)      z = sigmoid(x W_xz + h W_hz + b_z)
    a = h W_hn + b_hn                       n = tanh(x W_xn + b_n + r * a)
    h' = (1 - z) * n + z * h

Same interface and buffers as rnnkit/kernels/cpu/gru.py, time-major: gates (T, N, 3H) holds
the input projection and becomes (r, z, n); a (T, N, H) keeps h W_hn + b_hn; hs (T + 1, N, H).
The recurrence (kernels/cuda/recurrent.py) reads h_{t-1} along its units, so the threads of a
stream split the inputs. BPTT keeps the input side's gate gradients (dg) apart from the
hidden side's (dgh, whose n block carries the reset gate) and carries dh per unit.
"""
import math

from numba import cuda

from rnnkit.kernels.checks import check, spec
from rnnkit.kernels.cuda.buffers import GRU
from rnnkit.kernels.cuda import launch as L
from rnnkit.kernels.cuda.gemm import row_sums
from rnnkit.kernels.cuda.launch import jit
from rnnkit.kernels.cuda.recurrent import (CMAX, accumulate, grid_sync, load_w, project,
                                           reduce_parts, roles, weight_grads)



@jit
def forward_steps(w_h, b_hn, gates, a, hs, T, N, H, t0, t1, U, KC, NS, KS, bar, base, blocks):
    """Steps t0 <= t < t1 for units j0 = blockIdx.x U ... (a grid barrier between steps)."""
    sm = cuda.shared.array(0, gates.dtype)
    acc = cuda.local.array(CMAX, gates.dtype)
    zero, one, half = gates.dtype.type(0.0), gates.dtype.type(1.0), gates.dtype.type(0.5)
    C, tid, G = 3 * U, cuda.threadIdx.x, 3 * H
    j0 = cuda.blockIdx.x * U
    ws, part = sm[:C * KC], sm[C * KC:]
    nl, ks = roles(NS, KS, False)
    whole = KC >= H
    if whole:
        load_w(ws, w_h, C, U, j0, H, H, 1, 0, KC, H, G)
    cuda.syncthreads()
    for t in range(t0, t1):
        for n0 in range(0, N, NS):
            n = n0 + nl
            live = ks < KS and nl < NS and n < N
            for c in range(CMAX):
                acc[c] = zero
            for k0 in range(0, H, KC):
                if not whole:
                    load_w(ws, w_h, C, U, j0, H, H, 1, k0, KC, H, G)
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
                    row = (t * N + n) * G
                    hr = part[((0 * U + u) * KS) * NS + m]
                    hz = part[((1 * U + u) * KS) * NS + m]
                    av = part[((2 * U + u) * KS) * NS + m] + b_hn[j]
                    r = half * math.tanh(half * (gates[row + j] + hr)) + half
                    zg = half * math.tanh(half * (gates[row + H + j] + hz)) + half
                    nv = math.tanh(gates[row + 2 * H + j] + r * av)
                    gates[row + j], gates[row + H + j], gates[row + 2 * H + j] = r, zg, nv
                    a[(t * N + n) * H + j] = av
                    hs[((t + 1) * N + n) * H + j] = (one - zg) * nv + zg * hs[(t * N + n) * H + j]
            cuda.syncthreads()
        if t < t1 - 1:
            grid_sync(bar, base, blocks, t - t0 + 1)


@jit
def backward_steps(w_h, gates, a, hs, dhs, dgx, dgh, dh, T, N, H, t_hi, t_lo, U, KC, NS, KS,
                   bar, base, blocks):
    """BPTT steps t = t_hi down to t_lo (t = -1: the last phase, dh = its direct part plus
    dgh_0 W_h^T). Between steps dh (N, H) holds z * (gradient on h) of step t + 1, the direct
    part of the gradient on h_t; each unit's entries belong to its block."""
    sm = cuda.shared.array(0, gates.dtype)
    acc = cuda.local.array(CMAX, gates.dtype)
    zero, one = gates.dtype.type(0.0), gates.dtype.type(1.0)
    C, tid, G = U, cuda.threadIdx.x, 3 * H
    j0 = cuda.blockIdx.x * U
    ws, part = sm[:C * KC], sm[C * KC:]
    nl, ks = roles(NS, KS, False)
    whole = KC >= G
    if whole:
        load_w(ws, w_h, C, U, j0, H, 0, G, 0, KC, G, 1)
    cuda.syncthreads()
    for step in range(t_hi - t_lo + 1):
        t = t_hi - step
        for n0 in range(0, N, NS):
            n = n0 + nl
            live = ks < KS and nl < NS and n < N
            for c in range(CMAX):
                acc[c] = zero
            if t < T - 1:
                for k0 in range(0, G, KC):
                    if not whole:
                        load_w(ws, w_h, C, U, j0, H, 0, G, k0, KC, G, 1)
                        cuda.syncthreads()
                    if live:
                        accumulate(acc, ws, C, KC, min(KC, G - k0), dgh,
                                   ((t + 1) * N + n) * G + k0, 1, ks, KS)
                    if not whole:
                        cuda.syncthreads()
            reduce_parts(part, acc, C, NS, KS, nl, ks, live)
            for q in range(tid, U * NS, cuda.blockDim.x):
                u, m = q % U, q // U
                j, n = j0 + u, n0 + m
                if j < H and n < N:
                    carry = dh[n * H + j]
                    if t < T - 1:
                        carry += part[(u * KS) * NS + m]
                    if t < 0:
                        dh[n * H + j] = carry
                        continue
                    d = carry + dhs[(t * N + n) * H + j]
                    row = (t * N + n) * G
                    r, zg, nv = gates[row + j], gates[row + H + j], gates[row + 2 * H + j]
                    dn = d * (one - zg) * (one - nv * nv)
                    dz = d * (hs[(t * N + n) * H + j] - nv) * zg * (one - zg)
                    dr = dn * a[(t * N + n) * H + j] * r * (one - r)
                    dgx[row + j], dgx[row + H + j], dgx[row + 2 * H + j] = dr, dz, dn
                    dgh[row + j], dgh[row + H + j], dgh[row + 2 * H + j] = dr, dz, dn * r
                    dh[n * H + j] = d * zg
            cuda.syncthreads()
        if t > t_lo:
            grid_sync(bar, base, blocks, step + 1)


def gru_forward(x, w_x, w_h, b, b_hn, gates, a, hs, rec):
    """Run the layer over x; hs[0] holds the initial state. Writes gates, a and hs."""
    T, N, D = x.shape
    H = w_h.shape[0]
    arrays = dict(w_x=w_x, w_h=w_h, b=b, b_hn=b_hn, gates=gates, a=a, hs=hs)
    check(dict(arrays, x=x), x.dtype)
    spec({**GRU.params(D, H), **GRU.buffers(T, N, D, H)}, arrays)
    project(x, w_x, b, gates)
    rec.forward(forward_steps, 3, T, N, H, (w_h, b_hn, gates, a, hs), ())


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
    rec.backward(backward_steps, 3, T, N, H, (w_h, gates, a, hs, dhs, dgx, dgh, dh), ())
    weight_grads(x, hs, dgx, dgh, w_x, dx, dw_x, dw_h, db)
    row_sums(dgh, db_hn, H, 1, T * N, 2 * H, 1, 0, 3 * H)


SIGNATURES = [(forward_steps, "aaaaa iiiiiiiii Iii", L.FLOATS),
              (backward_steps, "aaaaaaaa iiiiiiiii Iii", L.FLOATS)]
