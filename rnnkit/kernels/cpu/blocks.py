"""Row-block helpers for the parallel drivers: each thread takes one contiguous block.

They run inside a prange body, so every call here is serial and BLAS is single-threaded: the
parallelism is ours, one block per thread, with nothing spinning in between.
"""
from llvmlite import ir
from numba import carray, njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic
import numpy as np

from rnnkit.kernels.cpu.jit import JIT, Twin
from rnnkit.kernels.cpu.blas import gemm
from rnnkit.kernels.cpu.leaf import DTYPES, Leaf
from rnnkit.kernels.cpu.tiles import VECTOR_BYTES, transpose_block


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
    np.dot(x[lo:hi].T, dgx[lo:hi], pw_x)
    np.dot(hprev[lo:hi].T, dgh[lo:hi], pw_h)
    for r in range(lo, hi):
        add_row(pb, dgx[r])
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
# every sum. rnnkit/threads.py chooses it and sets it here (set_partition); 1 until then.
PARTITION = 1


def set_partition(n):
    global PARTITION
    PARTITION = max(1, int(n))


def parts_for(n):
    """Blocks to cut n independent rows (streams) into: one per block of the partition, at
    most n."""
    return max(1, min(PARTITION, n))


# The GRU's and RNN's per-step products run in kernels/cpu/blas.py's fast layout (output
# feature-major, weight contiguous along the summed dimension) and are transposed back to the
# streams' rows from this hidden size on; below it np.dot's layout is as fast or faster.
# (bench/gemm_layout.py; its figures in bench/RESULTS.md: the GRU's backward takes it from 128).
FAST_FROM = 256


@njit(**JIT)
def step_product(h, w, wt, out, out_t, fast):
    """out (M, G) = h (M, H) @ w (H, G). fast: as wt (G, H) = w.T times h.T into out_t (G, M),
    then transposed into out."""
    if fast:
        gemm(wt, h, out_t, False, True, 0.0)
        transpose_into(out_t, out)
    else:
        np.dot(h, w, out)


@njit(**JIT)
def step_grad(dg, w, d, d_t, fast, add):
    """d (M, H) = dg (M, G) @ w.T, or += when add. fast: as w (H, G) times dg.T into
    d_t (H, M), then transposed into d."""
    if fast:
        gemm(w, dg, d_t, False, True, 0.0)
        if add:
            transpose_add(d_t, d)
        else:
            transpose_into(d_t, d)
    else:
        gemm(dg, w, d, False, True, 1.0 if add else 0.0)


# Per thread, at least this many streams in the recurrence and rows in the big products.
# (Two blocks of 10 streams beat one of 20 at H=200: bench/RESULTS.md, "Design figures".)
MIN_STREAMS, MIN_ROWS = 8, 256


def plan(T, N):
    """(row blocks for the (T*N)-row products, stream blocks for the recurrence)."""
    return parts_for(T * N // MIN_ROWS), parts_for(N // MIN_STREAMS)


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
    _project(rows, x.reshape(T * N, D), w_x, b, gates.reshape(T * N, -1), rows)


def weight_grads(x, hprev, dgx, dgh, w_x, dx, dw_x, dw_h, db, rows):
    """A layer's products after BPTT, over all steps at once, accumulating (+=):
    dw_x = x.T @ dgx, dw_h = hprev.T @ dgh, db = sum(dgx); and dx = dgx @ w_x.T (overwritten).
    x (T, N, D), hprev (T, N, H) the previous states, dgx, dgh (T, N, G*H)."""
    T, N, D = x.shape
    M = T * N
    _weight_grads(rows, x.reshape(M, D), hprev.reshape(M, -1), dgx.reshape(M, -1), dgh.reshape(M, -1), w_x,
        dx.reshape(M, D), dw_x, dw_h, db, rows)
