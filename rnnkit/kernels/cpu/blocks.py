"""Row-block helpers for the parallel drivers: each thread takes one contiguous block.

They run inside a prange body, so every call here is serial and BLAS is single-threaded: the
parallelism is ours, one block per thread, with nothing spinning in between.
"""
from llvmlite import ir
from numba import carray, njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic
import numpy as np

from rnnkit.kernels.cpu.compile import JIT, Twin
from rnnkit.kernels.cpu.leaf import DTYPES, Leaf
from rnnkit.kernels.cpu.tiles import (CHUNK, VECTOR_BYTES, pack_columns, product_packed,
                                      transpose_block)


@njit(**JIT)
def span(total, parts, i):
    """Bounds of block i when `total` rows are cut into `parts` near-equal blocks."""
    return i * total // parts, (i + 1) * total // parts


# Element loops written out: numba compiles an array expression (`a += b` on arrays) through
# its ufunc machinery, once per combination of array types, which cost seconds of the first
# run's compiling; these loops compile in a fraction of that and run as fast.
@njit(**JIT)
def add_rows(dst, src):
    """dst += src, 2-D of one shape."""
    for i in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            dst[i, j] += src[i, j]


@njit(**JIT)
def add_row(dst, src):
    """dst += src, 1-D of one length."""
    for j in range(dst.shape[0]):
        dst[j] += src[j]


@njit(**JIT)
def add_bias(dst, b):
    """dst[i] += b for every row i of dst."""
    for i in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            dst[i, j] += b[j]


@njit(**JIT)
def fill_rows(dst, value):
    for i in range(dst.shape[0]):
        for j in range(dst.shape[1]):
            dst[i, j] = value


@njit(**JIT)
def project_rows(x, w, b, out, lo, hi):
    """out[lo:hi] = x[lo:hi] @ w + b."""
    if hi > lo:
        o = out[lo:hi]
        np.dot(x[lo:hi], w, o)
        add_bias(o, b)


@njit(**JIT)
def layer_grads_rows(x, hprev, dgx, dgh, w_x, dx, pw_x, pw_h, pb, lo, hi):
    """One row block's share of a layer's weight gradients, into per-block partials:
    pw_x = x.T @ dgx, pw_h = hprev.T @ dgh, pb = sum(dgx); and dx = dgx @ w_x.T."""
    for j in range(pb.shape[0]):
        pb[j] = 0.0
    if hi <= lo:
        fill_rows(pw_x, 0.0)
        fill_rows(pw_h, 0.0)
        return
    np.dot(hprev[lo:hi].T, dgh[lo:hi], pw_h)
    for r in range(lo, hi):
        add_row(pb, dgx[r])
    if x.shape[1]:                  # none with a table (kernels/cpu/table.py)
        np.dot(x[lo:hi].T, dgx[lo:hi], pw_x)
        np.dot(dgx[lo:hi], w_x.T, dx[lo:hi])


def _transposer(add):
    """An intrinsic (src, dst): dst = src.T, or dst += src.T when `add`; 2-D views of one float
    dtype, rows or columns strided. It calls the transpose leaf (kernels/cpu/leaf.py; call
    leaf.ready(dtype) before the first call)."""
    @intrinsic
    def transpose(typingctx, src, dst):
        if not (isinstance(src, types.Array) and isinstance(dst, types.Array) and
                src.ndim == dst.ndim == 2 and src.dtype == dst.dtype and
                src.dtype in DTYPES.values()):
            return None

        def codegen(context, builder, sig, args):
            intp = context.get_value_type(types.intp)
            const = lambda v: ir.Constant(intp, v)  # noqa: E731
            item = const(context.get_abi_sizeof(context.get_value_type(src.dtype)))
            s, d = (context.make_array(t)(context, builder, v) for t, v in zip(sig.args, args))
            P, Q = cgutils.unpack_tuple(builder, s.shape, 2)
            sld, scol = (builder.sdiv(x, item) for x in cgutils.unpack_tuple(builder, s.strides))
            dld, dcol = (builder.sdiv(x, item) for x in cgutils.unpack_tuple(builder, d.strides))

            def extent(rows, ld, cols, col):    # (rows - 1)*ld + (cols - 1)*col + 1
                return builder.add(builder.add(builder.mul(builder.sub(rows, const(1)), ld),
                                               builder.mul(builder.sub(cols, const(1)), col)),
                                   const(1))
            TRANSPOSE.emit(context, builder, src.dtype,
                           [s.data, extent(P, sld, Q, scol), d.data, extent(Q, dld, P, dcol),
                            sld, scol, dld, dcol, P, Q, const(int(add))])
            return context.get_dummy_value()
        return types.void(src, dst), codegen
    return transpose


transpose_into, transpose_add = _transposer(False), _transposer(True)


def _transpose_entry(src, ns, dst, nd, sld, scol, dld, dcol, P, Q, add):
    """The leaf: dst[q*dld + p*dcol] = (+=) src[p*sld + q*scol] for p < P, q < Q; src, dst:
    pointers and lengths. Square blocks of the CPU's vector width go through registers
    (tiles.transpose_block) where rows are contiguous, the edges one number at a time in
    16 x 16 tiles so both sides stay in cache lines already loaded. One function, so that it
    compiles once (a helper it called would compile on its own and again inside it)."""
    if P == 0 or Q == 0:
        return
    src, dst = carray(src, (ns,)), carray(dst, (nd,))
    W = VECTOR_BYTES // src.itemsize
    P0, Q0 = 0, 0
    if P >= W and Q >= W and scol == 1 and dcol == 1:
        P0, Q0 = P - P % W, Q - Q % W
        for p in range(0, P0, W):
            for q in range(0, Q0, W):
                transpose_block(src, p * sld + q, sld, dst, q * dld + p, dld, add != 0)
    # The edges: rows P0: of src, then columns Q0: of the rows above.
    for edge in range(2):
        pa, pb, qa = (P0, P, 0) if edge == 0 else (0, P0, Q0)
        for p0 in range(pa, pb, 16):
            for q0 in range(qa, Q, 16):
                for q in range(q0, min(q0 + 16, Q)):
                    for p in range(p0, min(p0 + 16, pb)):
                        if add:
                            dst[q * dld + p * dcol] += src[p * sld + q * scol]
                        else:
                            dst[q * dld + p * dcol] = src[p * sld + q * scol]


TRANSPOSE = Leaf("rnnkit_transpose", _transpose_entry, arrays=2, scalars=7)


@njit(**JIT)
def add_parts(parts, out):
    """out += parts[i] for each i; C-contiguous arrays, one shape (parts: one more axis)."""
    flat = out.reshape(out.size)
    for i in range(parts.shape[0]):
        add_row(flat, parts[i].reshape(flat.size))


# The partition: how many blocks the kernels cut their work into, which fixes the order of
# every sum. rnnkit/backends/threads.py chooses it and sets it here (set_partition); 1 until then.
PARTITION = 1


def set_partition(n):
    global PARTITION
    PARTITION = max(1, int(n))


def parts_for(n):
    """Blocks to cut n independent rows (streams) into: one per block of the partition, at
    most n."""
    return max(1, min(PARTITION, n))


# Per thread, at least this many streams in the recurrence and rows in the big products.
# (Two blocks of 10 streams beat one of 20 at H=200: bench/RESULTS.md, "Design figures".)
MIN_STREAMS, MIN_ROWS = 8, 256


# The recurrences split across threads by blocks of hidden units, with all their gates: each
# thread then reads only its share of W_h per step, which stays in its cache from step to step
# (faster than blocks of streams for the LSTM from H=128 on: bench/RESULTS.md), and the threads
# meet once per step; or, when the layer is too narrow to share (below MIN_GATE_ROWS of W_h's
# columns a thread), by blocks of streams, each thread running all steps on its own.
MIN_GATE_ROWS = 128

# Threads cut the hidden units on multiples of this: for float32 a cache line of a state's
# row, which both threads write, then never straddles the cut; and a whole block of the
# tiles' columns (the GRU's and RNN's packed W_h: gru.py), 32 floats with AVX-512. Where the
# cut falls changes no result.
CUT = max(16, CHUNK // 4)


def rows_for(T, N):
    """Row blocks for the (T*N)-row products (input projection, weight gradients)."""
    return parts_for(T * N // MIN_ROWS)


def split(H, N, G):
    """(unit blocks, stream blocks) for the recurrence of a cell of G gates, one block per
    thread."""
    units_ = parts_for(G * H // MIN_GATE_ROWS)
    return units_, 1 if units_ > 1 else parts_for(N // MIN_STREAMS)


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


def _project(x, w, b, out, rows):
    for i in prange(rows):
        lo, hi = span(x.shape[0], rows, i)
        project_rows(x, w, b, out, lo, hi)


def _weight_grads(x, hprev, dgx, dgh, w_x, dx, dw_x, dw_h, db, rows):
    D, H, G = x.shape[1], hprev.shape[1], dgx.shape[1]
    pw_x, pw_h = np.empty((rows, D, G), x.dtype), np.empty((rows, H, G), x.dtype)
    pb = np.empty((rows, G), x.dtype)
    for i in prange(rows):
        lo, hi = span(x.shape[0], rows, i)
        layer_grads_rows(x, hprev, dgx, dgh, w_x, dx, pw_x[i], pw_h[i], pb[i], lo, hi)
    add_parts(pw_x, dw_x)
    add_parts(pw_h, dw_h)
    add_parts(pb, db)


_project = Twin(_project)
_weight_grads = Twin(_weight_grads)


def project(x, w_x, b, gates, rows):
    """gates (T, N, G*H) = x (T, N, D) @ w_x + b: the input projection of all steps at once."""
    T, N, D = x.shape
    if D == 0:
        raise ValueError("no inputs: a layer without them reads a table")
    _project(rows, x.reshape(T * N, D), w_x, b, gates.reshape(T * N, -1), rows)


def weight_grads(x, hprev, dgx, dgh, w_x, dx, dw_x, dw_h, db, rows):
    """A layer's products after BPTT, over all steps at once, accumulating (+=):
    dw_x = x.T @ dgx, dw_h = hprev.T @ dgh, db = sum(dgx); and dx = dgx @ w_x.T (overwritten).
    x (T, N, D), hprev (T, N, H) the previous states, dgx, dgh (T, N, G*H)."""
    T, N, D = x.shape
    M = T * N
    _weight_grads(rows, x.reshape(M, D), hprev.reshape(M, -1), dgx.reshape(M, -1),
                  dgh.reshape(M, -1), w_x, dx.reshape(M, D), dw_x, dw_h, db, rows)


# The GRU's and RNN's per-step products (time-major: the states as A, W_h as B). W_h's columns
# lie G*H numbers apart, which as B maps the rows a tile reads onto a few cache sets (at H=512
# two: they evict each other); packed once per call, block after block of the tiles' columns
# (tiles.pack_columns), each tile reads its K x C block front to back. HP: H padded to whole
# blocks (kernels/cpu/buffers.py, padded).
@njit(**JIT)
def pack_w_h(w_h, wp, j0, j1):
    """Columns j0:j1 of each gate block of W_h (H, G*H) into wp (G, HP, H)."""
    H, GH = w_h.shape
    flat, out = w_h.reshape(w_h.size), wp.reshape(wp.size)
    C = CHUNK // wp.itemsize
    for k in range(GH // H):
        pack_columns(flat, k * H, GH, 1, H, j0, j1, out, k * wp.shape[1] * H, H * C)


@njit(**JIT)
def pack_w_h_t(w_h, wt, j0, j1):
    """Columns j0:j1 of W_h.T (G*H, H), rows of W_h, into wt (HP, G*H)."""
    GH, C = w_h.shape[1], CHUNK // wt.itemsize
    pack_columns(w_h.reshape(w_h.size), 0, 1, GH, GH, j0, j1, wt.reshape(wt.size), 0, GH * C)


@njit(**JIT)
def step_product(h, wp, gate, j0, j1, n0, n1, c, c0):
    """c[n0:n1, c0:c0 + j1 - j0] += h[n0:n1] (N, H) @ W_h[:, gate*H + j0:gate*H + j1], W_h
    packed in wp (pack_w_h); j0 a multiple of CUT."""
    H, C = h.shape[1], CHUNK // wp.itemsize
    product_packed(h, 0, H, 1, n0, n1, H, wp, (gate * wp.shape[1] + j0) * H, C * H, j1 - j0,
                   c, c0, c.shape[1])


@njit(**JIT)
def hidden_grad(wt, dg, dh, j0, j1, n0, n1):
    """dh[n0:n1, j0:j1] += dg[n0:n1] (N, G*H) @ W_h.T[:, j0:j1], W_h.T packed in wt
    (pack_w_h_t); j0 a multiple of CUT."""
    GH, C = wt.shape[1], CHUNK // wt.itemsize
    product_packed(dg, 0, GH, 1, n0, n1, GH, wt, j0 * GH, C * GH, j1 - j0, dh, j0, dh.shape[1])


# The LSTM (kernels/cpu/lstm.py) reads its B packed in the same way with AVX2: x_t and h_{t-1}
# in the forward, [x, h] of all steps for the weight gradients, dgates_t for dh and dx.
@njit(**JIT)
def pack_inputs(x, hs, bp, hoff, i, parts):
    """Block i of parts of the weight gradients' B, [x_t, h_{t-1}] of all steps as (T*N)-row
    matrices, packed for the tiles by blocks of columns (tiles.pack_columns): x's at the start
    of bp, the states' from hoff (T*N*padded(D)). In place, B's rows lie D or H numbers apart,
    and a tile's block of columns walks them in strides the caches serve slowly (with AVX2
    the products ran 20-25% slower: bench/RESULTS.md)."""
    T, N, D = x.shape
    H = hs.shape[2]
    C = CHUNK // bp.itemsize
    M, bx = T * N, (D + C - 1) // C
    q0, q1 = span(bx + (H + C - 1) // C, parts, i)
    xf, hf = x.reshape(x.size), hs.reshape(hs.size)
    if q0 < bx:
        pack_columns(xf, 0, D, 1, M, q0 * C, min(D, q1 * C), bp, 0, M * C)
    if q1 > bx:
        pack_columns(hf, 0, H, 1, M, (max(q0, bx) - bx) * C, min(H, (q1 - bx) * C), bp, hoff,
                     M * C)


@njit(**JIT)
def pack_gates(dg, dgp, b0, t, j0, j1):
    """Units j0:j1's rows of dgates_t (in each of the four gate blocks) into the packed copy
    of dgates_t at dgp[b0:], as tiles.product_packed reads it: dh and dx read dgates_t as B,
    4H rows N apart, which with AVX2 ran 10-20% slower in place (bench/RESULTS.md)."""
    H4, N = dg.shape[1], dg.shape[2]
    H, C = H4 // 4, CHUNK // dgp.itemsize
    flat = dg[t].reshape(H4 * N)
    for k in range(4):
        r0 = k * H + j0
        pack_columns(flat, r0 * N, N, 1, j1 - j0, 0, N, dgp, b0 + r0 * C, H4 * C)


@njit(**JIT)
def pack_states(z, H, hp, b0, j0, j1):
    """Units j0:j1's rows of h in z (D + H, N), [x_t; h_{t-1}] feature-major, into the packed
    copy of h at hp[b0:], as tiles.product_packed reads it (all N streams)."""
    N, C = z.shape[1], CHUNK // hp.itemsize
    pack_columns(z.reshape(z.size), (z.shape[0] - H + j0) * N, N, 1, j1 - j0, 0, N, hp,
                 b0 + j0 * C, H * C)


@njit(**JIT)
def transpose_packed(x, z):
    """z[:D] (the flat start of z) = x (N, D) transposed and packed for the tiles by blocks of
    C columns: block q, streams q*C to q*C + C, is a D x C matrix; N a multiple of C."""
    N, D = x.shape
    C = CHUNK // z.itemsize
    for q in range(N // C):
        transpose_into(x[q * C:q * C + C], z[q * D * C:(q + 1) * D * C].reshape(D, C))
