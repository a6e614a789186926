"""LSTM layer: forward and BPTT. Gate order (i, f, g, o), PyTorch's; equations in docs/cells.md.

Interface, as for the other cells: x (T, N, D), w_x (D, 4H), w_h (H, 4H), b (4H,); hs
(T + 1, N, H) with the initial state at hs[0] and step t's output at hs[t + 1]; c (N, H), the
initial cell state in and the final one out.

Inside, per-step arrays are feature-major, streams last: gates (4H, L) with step t's block at
columns t*N:(t+1)*N (L >= T*N, see gates_shape), cs (H, T + 1, N).
The recurrent product of a step, W_h.T (4H x H) times h_{t-1} (H x N), runs in
kernels/tiles.py against W_h packed once per call (1.2-1.35x OpenBLAS on one core here), and
the gate math then runs over contiguous streams. Each thread owns a block of hidden units with
their four gates (a unit's gate math needs nothing else), multiplies by its share of W_h only,
and meets the others once per step. Memory kept for backward: T*N*(4H + H) floats, plus hs.
"""
from numba import njit, prange
import numpy as np

from rnnkit.config import JIT, serial_and_parallel
from rnnkit.kernels.activations import sigmoid, tanh
from rnnkit.kernels.blas import gemm
from rnnkit.kernels.blocks import MIN_STREAMS, parts_for, span, transpose_into
from rnnkit.kernels.checks import check, shape
from rnnkit.kernels.tiles import pack_columns, pack_rows, packed_product

# The recurrence splits across threads by blocks of hidden units (each thread then reads only
# its share of W_h per step; measured faster than blocks of streams from H=128 on, by 5-17%),
# or by blocks of streams when H is too small to share. Per thread at least MIN_UNITS units or
# MIN_STREAMS streams (the other cells' figure, from blocks.py).
MIN_UNITS = 32

# Packing W_h (about 1 ns a number, forward and backward) pays for itself from about this many
# T*N on. Below it, as when sampling a batch one step at a time, the product runs through BLAS
# with W_h as it is.
PACK_FROM = 256

# Threads cut the hidden units on multiples of this: a packed panel starts there (tiles.MR
# divides it), and for float32 so does a cache line of hs's rows, written by both threads.
CUT = 16

# Up to this H, the weight gradients are computed transposed, dW.T = dgates @ x (both operands
# as they lie: OpenBLAS runs that 17-24% faster than x.T @ dgates.T at H=128, D=64-128), and
# added into dW through a tiled transpose. From H=256 the two rates are within 5% and the
# transpose costs more than it saves (measured in place: backward 5% faster at H=128, equal at
# 256, 4% slower at 512).
DW_TRANSPOSED_UPTO = 128


def gates_shape(T, N, H, dtype):
    """(4H, L): rows of L >= T*N whose byte length is not near a multiple of 4 KiB. A step
    touches N numbers in each of 4H rows, and rows a multiple of 4 KiB apart compete for the
    same cache sets. Measured: 1-4% faster at H=512, N=32, T=64 (8 KiB rows), no change at
    H=128, N=64."""
    L, item = T * N, np.dtype(dtype).itemsize
    while min((L * item) % 4096, -(L * item) % 4096) < 256:
        L += 64 // item
    return 4 * H, L


def split(H, N):
    """(unit blocks, stream blocks) for the recurrence, one block per thread."""
    units = parts_for(H // MIN_UNITS)
    return units, 1 if units > 1 else parts_for(N // MIN_STREAMS)


@njit(**JIT)
def units(H, parts, i):
    """Units j0:j1 of block i of parts: near-equal, cut on multiples of CUT."""
    j0, j1 = span(H, parts, i)
    if i > 0:
        j0 = min(H, (j0 + CUT // 2) // CUT * CUT)
    if i < parts - 1:
        j1 = min(H, (j1 + CUT // 2) // CUT * CUT)
    return j0, j1


@njit(**JIT)
def block(H, N, split_units, split_streams, i):
    """Units j0:j1 and streams n0:n1 of block i."""
    j0, j1 = units(H, split_units, i % split_units)
    n0, n1 = span(N, split_streams, i // split_units)
    return j0, j1, n0, n1


@njit(**JIT)
def forward_step(gates, cs, hs, ht, w_h, wp, packed, t, j0, j1, n0, n1):
    """Units j0:j1 of streams n0:n1 at step t. gates holds the input projection; ht[t % 2] is
    h_{t-1} feature-major (H, N), ht[(t + 1) % 2] gets h_t. packed: wp holds W_h.T packed
    (pack_columns, by gate block), else the product reads w_h as it is."""
    H, N = cs.shape[0], cs.shape[2]
    s0, s1 = t * N + n0, t * N + n1
    h_prev, h_next = ht[t % 2], ht[(t + 1) % 2]
    for k in range(4):
        r0, r1 = k * H + j0, k * H + j1
        if packed:
            packed_product(wp, r0, r1, H, h_prev, n0, N, n1 - n0, gates, s0, gates.shape[1])
        else:
            gemm(w_h[:, r0:r1], h_prev[:, n0:n1], gates[r0:r1, s0:s1], True, False, 1.0)
    for k in range(4):
        for r in range(k * H + j0, k * H + j1):
            a = gates[r, s0:s1]
            if k == 2:
                for n in range(n1 - n0):
                    a[n] = tanh(a[n])
            else:
                for n in range(n1 - n0):
                    a[n] = sigmoid(a[n])
    # Short loops over few arrays, each from 0: LLVM vectorises them (one loop over all seven
    # ran scalar, and so does an in-place loop from a run-time start such as range(n0, n1)).
    for j in range(j0, j1):
        i, f, g, o = (gates[j, s0:s1], gates[H + j, s0:s1], gates[2 * H + j, s0:s1],
                      gates[3 * H + j, s0:s1])
        c_prev, c, h = cs[j, t, n0:n1], cs[j, t + 1, n0:n1], h_next[j, n0:n1]
        for n in range(n1 - n0):
            c[n] = f[n] * c_prev[n] + i[n] * g[n]
        for n in range(n1 - n0):
            h[n] = o[n] * tanh(c[n])
    out = hs[t + 1]
    for n in range(n0, n1):
        for j in range(j0, j1):
            out[n, j] = h_next[j, n]


def _forward(x, w_x, b, w_h, gates, hs, c, cs, ht, wp, packed, su, ss):
    """x (T*N, D). su, ss: the recurrence's unit and stream blocks (split). packed: pack W_h.T
    into wp first and multiply by that."""
    H, T, N = cs.shape[0], cs.shape[1] - 1, cs.shape[2]
    parts = su * ss
    for i in prange(parts):
        # The input projection of all steps, by blocks of columns (wide products run faster
        # than one per gate block), then this thread's units of W_h^T and the initial state.
        # Packing cuts each gate block on its own, as forward_step's products do.
        # The bias goes in first: OpenBLAS clears the output in a pass of its own for beta = 0,
        # so this saves a pass over (4H, T*N) numbers (1-2 ms a layer at H=256-512).
        lo, hi = span(x.shape[0], parts, i)
        g = gates[:, lo:hi]
        for r in range(4 * H):
            g[r] = b[r]
        gemm(w_x, x[lo:hi], g, True, True, 1.0)
        j0, j1 = units(H, parts, i)
        if packed:
            for k in range(4):
                pack_columns(w_h, wp, k * H + j0, k * H + j1)
        transpose_into(hs[0][:, j0:j1], ht[0, j0:j1])
        transpose_into(c[:, j0:j1], cs[j0:j1, 0])
    for t in range(T):
        for i in prange(parts):
            j0, j1, n0, n1 = block(H, N, su, ss, i)
            forward_step(gates, cs, hs, ht, w_h, wp, packed, t, j0, j1, n0, n1)
    for i in prange(parts):
        j0, j1 = span(H, parts, i)
        transpose_into(cs[j0:j1, T], c[:, j0:j1])


_forward_serial, _forward_parallel = serial_and_parallel(_forward)


@njit(**JIT)
def backward_step(gates, cs, dhs, w_h, wp, packed, dgates, dht, dct, t, j0, j1, n0, n1):
    """Units j0:j1 of streams n0:n1 at BPTT step t. dht (H, N): the recurrent gradient on h_t
    (set by the caller for the last step); dct (H, N): on c_t in, on c_{t-1} out. packed: wp
    holds W_h packed (pack_rows), else the product reads w_h as it is."""
    H, T, N = cs.shape[0], cs.shape[1] - 1, cs.shape[2]
    s0, s1 = t * N + n0, t * N + n1
    above = dhs[t][n0:n1, j0:j1]
    if t == T - 1:
        transpose_into(above, dht[j0:j1, n0:n1], True)
    elif packed:
        transpose_into(above, dht[j0:j1, n0:n1])
        packed_product(wp, j0, j1, 4 * H, dgates, s0 + N, dgates.shape[1], n1 - n0, dht, n0, N)
    else:
        gemm(w_h[j0:j1], dgates[:, s0 + N:s1 + N], dht[j0:j1, n0:n1], False, False, 0.0)
        transpose_into(above, dht[j0:j1, n0:n1], True)
    one = cs.dtype.type(1.0)
    for j in range(j0, j1):
        i, f, g, o = (gates[j, s0:s1], gates[H + j, s0:s1], gates[2 * H + j, s0:s1],
                      gates[3 * H + j, s0:s1])
        di, df, dg, do = (dgates[j, s0:s1], dgates[H + j, s0:s1], dgates[2 * H + j, s0:s1],
                          dgates[3 * H + j, s0:s1])
        dh, dc, c_prev, c = dht[j, n0:n1], dct[j, n0:n1], cs[j, t, n0:n1], cs[j, t + 1, n0:n1]
        for n in range(n1 - n0):
            tc = tanh(c[n])
            do[n] = dh[n] * tc * o[n] * (one - o[n])
            dc[n] += dh[n] * o[n] * (one - tc * tc)
        for n in range(n1 - n0):
            di[n] = dc[n] * g[n] * i[n] * (one - i[n])
            dg[n] = dc[n] * i[n] * (one - g[n] * g[n])
        for n in range(n1 - n0):
            df[n] = dc[n] * c_prev[n] * f[n] * (one - f[n])
            dc[n] *= f[n]


def _backward(x, hprev, w_x, w_h, gates, cs, dhs, dh, dc, dgates, dht, dct, dx, dw_x, dw_h,
              db, dwt, wp, packed, su, ss):
    """x (T*N, D), hprev (T*N, H): each step's input and previous state; dx (T*N, D).
    dwt: (4H, D + H) scratch for the transposed weight gradients, or (0, 0) to compute them
    as they lie (see DW_TRANSPOSED_UPTO). packed: pack W_h into wp first and multiply by that.
    su, ss: the recurrence's unit and stream blocks."""
    H, T, N = cs.shape[0], cs.shape[1] - 1, cs.shape[2]
    parts = su * ss
    for i in prange(parts):
        j0, j1 = units(H, parts, i)
        if packed:
            pack_rows(w_h, wp, j0, j1)
        transpose_into(dh[:, j0:j1], dht[j0:j1])
        transpose_into(dc[:, j0:j1], dct[j0:j1])
    for t in range(T - 1, -1, -1):
        for i in prange(parts):
            j0, j1, n0, n1 = block(H, N, su, ss, i)
            backward_step(gates, cs, dhs, w_h, wp, packed, dgates, dht, dct, t, j0, j1, n0, n1)
    dg2 = dgates[:, :x.shape[0]]
    for i in prange(parts):
        j0, j1 = span(H, parts, i)
        gemm(w_h[j0:j1], dgates[:, :N], dht[j0:j1], False, False, 0.0)
        transpose_into(dht[j0:j1], dh[:, j0:j1])
        transpose_into(dct[j0:j1], dc[:, j0:j1])
        # The weight gradients by blocks of columns, and dx by blocks of rows.
        r0, r1 = span(4 * H, parts, i)
        if dwt.shape[0] > 0:
            D = x.shape[1]
            gemm(dg2[r0:r1], x, dwt[r0:r1, :D], False, False, 0.0)
            gemm(dg2[r0:r1], hprev, dwt[r0:r1, D:], False, False, 0.0)
            transpose_into(dwt[r0:r1, :D], dw_x[:, r0:r1], True)
            transpose_into(dwt[r0:r1, D:], dw_h[:, r0:r1], True)
        else:
            gemm(x, dg2[r0:r1], dw_x[:, r0:r1], True, True, 1.0)
            gemm(hprev, dg2[r0:r1], dw_h[:, r0:r1], True, True, 1.0)
        for r in range(r0, r1):
            db[r] += dg2[r].sum()
        lo, hi = span(x.shape[0], parts, i)
        gemm(dg2[:, lo:hi], w_x, dx[lo:hi], True, True, 0.0)


_backward_serial, _backward_parallel = serial_and_parallel(_backward)


def lstm_forward(x, w_x, w_h, b, hs, c, gates, cs, ht, wp):
    """Run the layer over x; hs[0] must hold the initial h, c the initial cell state.

    Writes hs (T + 1, N, H), c (the final cell state) and the caches for backward: gates
    (gates_shape) activations, cs (H, T + 1, N). Scratch: ht (2, H, N), wp (4H, H).
    """
    T, N, D = x.shape
    H = w_h.shape[0]
    check(dict(x=x, w_x=w_x, w_h=w_h, b=b, hs=hs, c=c, gates=gates, cs=cs, ht=ht, wp=wp),
          x.dtype)
    for name, a, s in (("w_x", w_x, (D, 4 * H)), ("w_h", w_h, (H, 4 * H)), ("b", b, (4 * H,)),
                       ("hs", hs, (T + 1, N, H)), ("c", c, (N, H)),
                       ("gates", gates, gates_shape(T, N, H, x.dtype)),
                       ("cs", cs, (H, T + 1, N)), ("ht", ht, (2, H, N)), ("wp", wp, (4 * H, H))):
        shape(name, a, s)
    su, ss = split(H, N)
    run = _forward_parallel if su * ss > 1 else _forward_serial
    run(x.reshape(T * N, D), w_x, b, w_h, gates, hs, c, cs, ht, wp.reshape(-1),
        T * N >= PACK_FROM, su, ss)


def lstm_backward(x, w_x, w_h, hs, gates, cs, dhs, dh, dc, dx, dw_x, dw_h, db, dgates, dht,
                  dct, wp):
    """BPTT through the layer. Gradients on weights accumulate (+=); dx is overwritten.

    dhs (T, N, H): loss gradient on each output h_t. dh, dc (N, H): gradient on the final state
    in, on the initial state out. Scratch: dgates (gates_shape), dht and dct (H, N), wp (4H, H);
    up to H = DW_TRANSPOSED_UPTO this allocates (4H, D + H) more.
    """
    T, N, D = x.shape
    H = w_h.shape[0]
    check(dict(x=x, w_x=w_x, w_h=w_h, hs=hs, gates=gates, cs=cs, dhs=dhs, dh=dh, dc=dc, dx=dx,
               dw_x=dw_x, dw_h=dw_h, db=db, dgates=dgates, dht=dht, dct=dct, wp=wp), x.dtype)
    for name, a, s in (("w_x", w_x, (D, 4 * H)), ("w_h", w_h, (H, 4 * H)),
                       ("hs", hs, (T + 1, N, H)),
                       ("gates", gates, gates_shape(T, N, H, x.dtype)),
                       ("cs", cs, (H, T + 1, N)), ("dhs", dhs, (T, N, H)), ("dh", dh, (N, H)),
                       ("dc", dc, (N, H)), ("dx", dx, (T, N, D)), ("dw_x", dw_x, w_x.shape),
                       ("dw_h", dw_h, w_h.shape), ("db", db, (4 * H,)),
                       ("dgates", dgates, gates.shape), ("dht", dht, (H, N)),
                       ("dct", dct, (H, N)), ("wp", wp, (4 * H, H))):
        shape(name, a, s)
    su, ss = split(H, N)
    run = _backward_parallel if su * ss > 1 else _backward_serial
    dwt = np.empty((4 * H, D + H) if H <= DW_TRANSPOSED_UPTO else (0, 0), x.dtype)
    run(x.reshape(T * N, D), hs[:T].reshape(T * N, H), w_x, w_h, gates, cs, dhs, dh, dc,
        dgates, dht, dct, dx.reshape(T * N, D), dw_x, dw_h, db, dwt, wp.reshape(-1),
        T * N >= PACK_FROM, su, ss)
