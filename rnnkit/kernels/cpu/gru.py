"""GRU layer, PyTorch's formulation, gate order (r, z, n); equations in docs/cells.md.

    r = sigmoid(x W_xr + h W_hr + b_r)      z = sigmoid(x W_xz + h W_hz + b_z)
    a = h W_hn + b_hn                       n = tanh(x W_xn + b_n + r * a)
    h' = (1 - z) * n + z * h

Shapes: x (T, N, D), w_x (D, 3H), w_h (H, 3H), b (3H,) (input and hidden biases of r and z
summed; b_n is the input one), b_hn (H,). hs (T + 1, N, H) with the initial state at index 0.
gates (T, N, 3H) keeps r, z, n and a (T, N, H) keeps h W_hn + b_hn for backward.
Threads own blocks of streams and run all steps on their own; each step's product runs in
kernels/cpu/blas.py's fast layout from H = FAST_FROM (kernels/cpu/blocks.py), FAST_BACKWARD_FROM in backward.
The reset gate makes the two products' gradients differ in the n block, so BPTT keeps one
gradient for the input side (dgx) and one for the hidden side (dgh).
Memory kept for backward: T*N*(3H + 2H) floats.
"""
from numba import njit, prange

from rnnkit.kernels.cpu import leaf
from rnnkit.kernels.cpu.jit import JIT, Twin
from rnnkit.kernels.cpu.blocks import (FAST_FROM, TRANSPOSE, add_rows, plan, project, span,
                                       step_grad, step_product, transpose_into, weight_grads)
from rnnkit.kernels.cpu.activations import sigmoid, tanh
from rnnkit.kernels.checks import check, spec
from rnnkit.kernels.cpu.buffers import GRU


# The backward's per-step product gains from the fast layout from H=128 on; the Elman cell's, a
# third as wide, does not (rnn.py; bench/RESULTS.md, "Design figures").
FAST_BACKWARD_FROM = 128


@njit(**JIT)
def _forward_step(g, hp, b_hn, h_prev, a, h):
    """Short loops over few arrays each, so LLVM can vectorise them (see lstm.py)."""
    N, H = h.shape
    one = h.dtype.type(1.0)
    for n in range(N):
        gn, hpn, an = g[n], hp[n], a[n]
        for k in range(2 * H):
            gn[k] = sigmoid(gn[k] + hpn[k])
        for j in range(H):
            an[j] = hpn[2 * H + j] + b_hn[j]
        for j in range(H):
            gn[2 * H + j] = tanh(gn[2 * H + j] + gn[j] * an[j])
        hn, hpr = h[n], h_prev[n]
        for j in range(H):
            z = gn[H + j]
            hn[j] = (one - z) * gn[2 * H + j] + z * hpr[j]


@njit(**JIT)
def _forward_rows(gates, a, hs, w_h, wt, b_hn, hp, hp_t, fast, lo, hi):
    for t in range(gates.shape[0]):
        step_product(hs[t][lo:hi], w_h, wt, hp[lo:hi], hp_t[:, lo:hi], fast)
        _forward_step(gates[t][lo:hi], hp[lo:hi], b_hn, hs[t][lo:hi], a[t][lo:hi],
                      hs[t + 1][lo:hi])


def _forward(gates, a, hs, w_h, wt, b_hn, hp, hp_t, fast, streams):
    """hp (N, 3H), hp_t (3H, N): scratch. fast: copy W_h.T into wt first, multiply by that."""
    N, G = hs.shape[1], w_h.shape[1]
    if fast:
        for i in prange(streams):
            lo, hi = span(G, streams, i)
            transpose_into(w_h[:, lo:hi], wt[lo:hi])
    for i in prange(streams):
        lo, hi = span(N, streams, i)
        if hi > lo:
            _forward_rows(gates, a, hs, w_h, wt, b_hn, hp, hp_t, fast, lo, hi)


_forward = Twin(_forward)


@njit(**JIT)
def _backward_step(g, a, h_prev, dh, dgx, dgh):
    """dh: (N, H) total gradient on h_t in; on return, its direct part z * dh for h_{t-1}."""
    N, H = dh.shape
    one = dh.dtype.type(1.0)
    for n in range(N):
        gn, dhn, hpr, dxn, dhh, an = g[n], dh[n], h_prev[n], dgx[n], dgh[n], a[n]
        for j in range(H):  # n and z gates
            z, nn, d = gn[H + j], gn[2 * H + j], dhn[j]
            dxn[2 * H + j] = d * (one - z) * (one - nn * nn)
            dxn[H + j] = d * (hpr[j] - nn) * z * (one - z)
        for j in range(H):  # r gate; the hidden side sees r * dn in the n block
            r = gn[j]
            dr = dxn[2 * H + j] * an[j] * r * (one - r)
            dxn[j] = dr
            dhh[j] = dr
            dhh[H + j] = dxn[H + j]
            dhh[2 * H + j] = dxn[2 * H + j] * r
        for j in range(H):
            dhn[j] *= gn[H + j]


@njit(**JIT)
def _backward_rows(w_h, gates, a, hs, dhs, dh, dgx, dgh, work, fast, lo, hi):
    for t in range(dhs.shape[0] - 1, -1, -1):
        d = dh[lo:hi]
        add_rows(d, dhs[t][lo:hi])
        _backward_step(gates[t][lo:hi], a[t][lo:hi], hs[t][lo:hi], d, dgx[t][lo:hi],
                       dgh[t][lo:hi])
        step_grad(dgh[t][lo:hi], w_h, d, work[:, lo:hi], fast, True)


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


def _backward(w_h, gates, a, hs, dhs, dh, dgx, dgh, work, db_hn, fast, streams):
    N = a.shape[1]
    for i in prange(streams):
        lo, hi = span(N, streams, i)
        if hi > lo:
            _backward_rows(w_h, gates, a, hs, dhs, dh, dgx, dgh, work, fast, lo, hi)
    _add_rows(dgh, db_hn)


_backward = Twin(_backward)


def gru_forward(x, w_x, w_h, b, b_hn, gates, a, hs, work, work_t, wt):
    """Run the layer over x; hs[0] must hold the initial state.

    Writes gates (T, N, 3H), a (T, N, H), hs (T + 1, N, H). Scratch: work (N, 3H),
    work_t (3H, N), wt (3H, H).
    """
    T, N, D = x.shape
    H = w_h.shape[0]
    arrays = dict(w_x=w_x, w_h=w_h, b=b, b_hn=b_hn, gates=gates, a=a, hs=hs, work=work,
                  work_t=work_t, wt=wt)
    check(dict(arrays, x=x), x.dtype)
    spec({**GRU.params(D, H), **GRU.buffers(T, N, D, H)}, arrays)
    rows, streams = plan(T, N)
    leaf.ready(x.dtype, [TRANSPOSE])
    project(x, w_x, b, gates, rows)
    _forward(streams, gates, a, hs, w_h, wt, b_hn, work, work_t, H >= FAST_FROM, streams)


def gru_backward(x, w_x, w_h, gates, a, hs, dhs, dh, dx, dw_x, dw_h, db, db_hn, dgx, dgh, work):
    """BPTT through the layer. Weight gradients accumulate (+=); dx is overwritten.

    dhs (T, N, H): loss gradient on each output. dh (N, H): gradient on the final state in,
    on the initial state out. dgx, dgh (T, N, 3H) and work (H, N): scratch.
    """
    T, N, D = x.shape
    H = w_h.shape[0]
    arrays = dict(w_x=w_x, w_h=w_h, gates=gates, a=a, hs=hs, dg=dgx, dgh=dgh, work_h=work,
                  dhs=dhs, dh=dh, dx=dx)
    check(dict(arrays, x=x, dw_x=dw_x, dw_h=dw_h, db=db, db_hn=db_hn), x.dtype)
    spec({**GRU.params(D, H), **GRU.buffers(T, N, D, H), **GRU.scratch(T, N, D, H),
          "dhs": (T, N, H), "dh": (N, H), "dx": (T, N, D)}, arrays)
    spec(GRU.params(D, H), dict(w_x=dw_x, w_h=dw_h, b=db, b_hn=db_hn))
    rows, streams = plan(T, N)
    leaf.ready(x.dtype, [TRANSPOSE])
    _backward(streams, w_h, gates, a, hs, dhs, dh, dgx, dgh, work, db_hn, H >= FAST_BACKWARD_FROM, streams)
    weight_grads(x, hs[:T], dgx, dgh, w_x, dx, dw_x, dw_h, db, rows)
