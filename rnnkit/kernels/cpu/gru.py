"""GRU layer, PyTorch's formulation, gate order (r, z, n); equations in docs/cells.md.

    r = sigmoid(x W_xr + h W_hr + b_r)      z = sigmoid(x W_xz + h W_hz + b_z)
    a = h W_hn + b_hn                       n = tanh(x W_xn + b_n + r * a)
    h' = (1 - z) * n + z * h

Shapes: x (T, N, D), w_x (D, 3H), w_h (H, 3H), b (3H,) (input and hidden biases of r and z
summed; b_n is the input one), b_hn (H,). hs (T + 1, N, H) with the initial state at index 0.
gates (T, N, 3H) keeps r, z, n and a (T, N, H) keeps h W_hn + b_hn for backward.

The input projection of all steps is one BLAS product before the recurrence; each step then
adds h_{t-1} W_h in kernels/cpu/tiles.py, time-major: the r and z blocks into their
pre-activations in gates, the n block into a. Threads own blocks of
hidden units with their three gates and meet once per step, or blocks of streams
(kernels/cpu/blocks.py, split); W_h is packed once per call in the order the tiles read it
(wp). BPTT mirrors it against W_h.T, packed likewise (wt);
the reset gate makes the two products' gradients differ in the n block, so it keeps one for
the input side (dgx) and one for the hidden side (dgh); then dW and dx over all steps.
Memory kept for backward: T*N*(3H + 2H) floats.
"""
from numba import njit, prange

from rnnkit.kernels.cpu import leaf, table
from rnnkit.kernels.cpu.compile import JIT, Twin
from rnnkit.kernels.cpu.blocks import (block, hidden_grad, pack_w_h, pack_w_h_t, project,
                                       rows_for, split, step_product, units,
                                       weight_grads)
from rnnkit.kernels.cpu.activations import sigmoid, tanh
from rnnkit.kernels.checks import check, spec
from rnnkit.kernels.cpu.buffers import GRU


# Short loops from 0 over few 1-D views each: LLVM vectorises them (see lstm.py).
@njit(**JIT)
def cell_forward(r, z, n, a, h_prev, h):
    """r, z: pre-activations in, gates out; n: x W_xn + b_n in, the gate out; a: h W_hn + b_hn."""
    one = h.dtype.type(1.0)
    for j in range(r.size):
        r[j] = sigmoid(r[j])
    for j in range(r.size):
        z[j] = sigmoid(z[j])
    for j in range(r.size):
        n[j] = tanh(n[j] + r[j] * a[j])
    for j in range(r.size):
        h[j] = (one - z[j]) * n[j] + z[j] * h_prev[j]


@njit(**JIT)
def forward_step(gates, a, hs, wp, b_hn, t, j0, j1, n0, n1):
    """Units j0:j1 of streams n0:n1 at step t: gates[t]'s r and z blocks += h_{t-1} W_h there,
    a[t] = b_hn + h_{t-1} W_hn there, then the gates and h_t. wp: W_h packed
    (blocks.pack_w_h)."""
    H = hs.shape[2]
    g, at = gates[t], a[t]
    for k in range(2):
        step_product(hs[t], wp, k, j0, j1, n0, n1, g, k * H + j0)
    for n in range(n0, n1):
        row, bias = at[n, j0:j1], b_hn[j0:j1]
        for j in range(row.size):
            row[j] = bias[j]
    step_product(hs[t], wp, 2, j0, j1, n0, n1, at, j0)
    for n in range(n0, n1):
        cell_forward(g[n, j0:j1], g[n, H + j0:H + j1], g[n, 2 * H + j0:2 * H + j1],
                     at[n, j0:j1], hs[t, n, j0:j1], hs[t + 1, n, j0:j1])


def _forward(gates, a, hs, wp, w_h, b_hn, su, ss):
    """su, ss: the recurrence's unit and stream blocks (split)."""
    T, N, H = gates.shape[0], hs.shape[1], hs.shape[2]
    parts = su * ss
    for i in prange(parts):
        j0, j1 = units(H, parts, i)
        pack_w_h(w_h, wp, j0, j1)
    if su > 1:
        for t in range(T):
            for i in prange(parts):
                j0, j1, n0, n1 = block(H, N, su, ss, i)
                forward_step(gates, a, hs, wp, b_hn, t, j0, j1, n0, n1)
    else:
        for i in prange(parts):     # each thread all steps of its streams
            j0, j1, n0, n1 = block(H, N, su, ss, i)   # su = 1: units 0:H
            for t in range(T):
                forward_step(gates, a, hs, wp, b_hn, t, j0, j1, n0, n1)


_forward = Twin(_forward)


@njit(**JIT)
def cell_backward(r, z, n, a, h_prev, d, dxr, dxz, dxn, dhr, dhz, dhn):
    """d: the gradient on h_t in; on return its direct part z * d, for h_{t-1}. dx*: the
    pre-activations' gradients on the input side, dh*: on the hidden side (r * dn in the n
    block)."""
    one = d.dtype.type(1.0)
    for j in range(d.size):
        dxn[j] = d[j] * (one - z[j]) * (one - n[j] * n[j])
        dxz[j] = d[j] * (h_prev[j] - n[j]) * z[j] * (one - z[j])
    for j in range(d.size):
        dr = dxn[j] * a[j] * r[j] * (one - r[j])
        dxr[j] = dr
        dhr[j] = dr
        dhz[j] = dxz[j]
        dhn[j] = dxn[j] * r[j]
    for j in range(d.size):
        d[j] *= z[j]


@njit(**JIT)
def backward_step(wt, gates, a, hs, dhs, dh, dgx, dgh, t, j0, j1, n0, n1):
    """Units j0:j1 of streams n0:n1 at BPTT step t. dh there: on entry the final state's
    gradient (t = T - 1) or the direct part z_{t+1} * dh_{t+1}; it gets dgh_{t+1} W_h.T (below
    the last step; wt: W_h.T packed, blocks.pack_w_h_t) and dhs[t], then the gates'
    gradients, and leaves with z_t * dh_t."""
    T, H = dhs.shape[0], hs.shape[2]
    if t < T - 1:
        hidden_grad(wt, dgh[t + 1], dh, j0, j1, n0, n1)
    g, dx, dhh = gates[t], dgx[t], dgh[t]
    for n in range(n0, n1):
        d, s = dh[n, j0:j1], dhs[t, n, j0:j1]
        for j in range(d.size):
            d[j] += s[j]
        cell_backward(g[n, j0:j1], g[n, H + j0:H + j1], g[n, 2 * H + j0:2 * H + j1],
                      a[t, n, j0:j1], hs[t, n, j0:j1], d,
                      dx[n, j0:j1], dx[n, H + j0:H + j1], dx[n, 2 * H + j0:2 * H + j1],
                      dhh[n, j0:j1], dhh[n, H + j0:H + j1], dhh[n, 2 * H + j0:2 * H + j1])


@njit(**JIT)
def _add_rows(dgh, db_hn):
    """db_hn += the n block of every row of dgh. Its own serial function: in the parallel
    driver, each `+=` on a slice would become a parallel region of its own (T*N of them)."""
    H = db_hn.shape[0]
    for t in range(dgh.shape[0]):
        for n in range(dgh.shape[1]):
            row = dgh[t, n]
            for j in range(H):
                db_hn[j] += row[2 * H + j]


def _backward(w_h, gates, a, hs, dhs, dh, dgx, dgh, wt, db_hn, su, ss):
    T, N, H = dhs.shape[0], hs.shape[1], hs.shape[2]
    parts = su * ss
    for i in prange(parts):
        j0, j1 = units(H, parts, i)
        pack_w_h_t(w_h, wt, j0, j1)
    if su > 1:
        for t in range(T - 1, -1, -1):
            for i in prange(parts):
                j0, j1, n0, n1 = block(H, N, su, ss, i)
                backward_step(wt, gates, a, hs, dhs, dh, dgx, dgh, t, j0, j1, n0, n1)
        for i in prange(parts):
            # the initial state's gradient: z_0 * dh_0 + dgh_0 W_h.T
            j0, j1, n0, n1 = block(H, N, su, ss, i)
            hidden_grad(wt, dgh[0], dh, j0, j1, n0, n1)
    else:
        for i in prange(parts):
            j0, j1, n0, n1 = block(H, N, su, ss, i)   # su = 1: units 0:H
            for t in range(T - 1, -1, -1):
                backward_step(wt, gates, a, hs, dhs, dh, dgx, dgh, t, j0, j1, n0, n1)
            hidden_grad(wt, dgh[0], dh, j0, j1, n0, n1)
    _add_rows(dgh, db_hn)


_backward = Twin(_backward)


def gru_forward(x, w_x, w_h, b, b_hn, gates, a, hs, wp, tt=None, tid=None):
    """Run the layer over x; hs[0] must hold the initial state.

    Writes gates (T, N, 3H), a (T, N, H), hs (T + 1, N, H). Scratch: wp (3, HP, H), W_h packed
    (HP: H padded, kernels/cpu/buffers.py).
    """
    T, N, D = x.shape
    H = w_h.shape[0]
    arrays = dict(w_x=w_x, w_h=w_h, b=b, b_hn=b_hn, gates=gates, a=a, hs=hs, wp=wp)
    check(dict(arrays, x=x), x.dtype)
    spec({**GRU.params(D, H), **GRU.buffers(T, N, D, H)}, arrays)
    su, ss = split(H, N, 3)
    leaf.ready(x.dtype)
    tt, tid = table.arrays(tt, tid, 3 * H, T, N, D, x.dtype)
    if tt.shape[0]:
        table.gather_time_major(tt, tid, gates, rows_for(T, N))
    else:
        project(x, w_x, b, gates, rows_for(T, N))
    _forward(su * ss, gates, a, hs, wp, w_h, b_hn, su, ss)


def gru_backward(x, w_x, w_h, gates, a, hs, dhs, dh, dx, dw_x, dw_h, db, db_hn, dgx, dgh, wt,
                 tid=None, gt=None):
    """BPTT through the layer. Weight gradients accumulate (+=); dx is overwritten.

    dhs (T, N, H): loss gradient on each output. dh (N, H): gradient on the final state in,
    on the initial state out. Scratch: dgx, dgh (T, N, 3H), wt (HP, 3H) for W_h.T packed.
    """
    T, N, D = x.shape
    H = w_h.shape[0]
    arrays = dict(w_x=w_x, w_h=w_h, gates=gates, a=a, hs=hs, dg=dgx, dgh=dgh, wt=wt,
                  dhs=dhs, dh=dh, dx=dx)
    check(dict(arrays, x=x, dw_x=dw_x, dw_h=dw_h, db=db, db_hn=db_hn), x.dtype)
    spec({**GRU.params(D, H), **GRU.buffers(T, N, D, H), **GRU.scratch(T, N, D, H),
          "dhs": (T, N, H), "dh": (N, H), "dx": (T, N, D)}, arrays)
    spec(GRU.params(D, H), dict(w_x=dw_x, w_h=dw_h, b=db, b_hn=db_hn))
    su, ss = split(H, N, 3)
    leaf.ready(x.dtype)
    _backward(su * ss, w_h, gates, a, hs, dhs, dh, dgx, dgh, wt, db_hn, su, ss)
    gt, tid = table.arrays(gt, tid, 3 * H, T, N, D, x.dtype)
    weight_grads(x, hs[:T], dgx, dgh, w_x, dx, dw_x, dw_h, db, rows_for(T, N))
    if gt.shape[0]:
        table.scatter_time_major(dgx, tid, gt, rows_for(T, N))
