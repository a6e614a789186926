"""Register-tiled products against a pre-packed weight, for the recurrences' per-step products.

A recurrence multiplies the same W_h by a new state at every step. OpenBLAS packs both operands
again on each call, and at these sizes (K = 128-2048, 32-64 streams) that packing and the call
are a large part of the time. Here the weight is packed once per forward or backward, into
panels of MR rows laid out k-major, and each step's product runs one small kernel per panel
and column chunk: MR x (NV vectors) accumulators stay in registers over the whole K loop, each
k loads NV vectors of the state and broadcasts MR weights. Measured here on one core (AMD Zen 5,
float32, M = 256-1024 rows, K = 128-512, N = 32-64): 256-269 GFLOP/s, where OpenBLAS gets
192-226 in its best layout for these shapes (bench/gemm_layout.py).

The kernel is written in LLVM IR (a Numba intrinsic) because Numba has no vector type: as plain
loops, LLVM keeps the accumulators in memory. Its vectors are as wide as the CPU's (AVX-512:
16 floats), so the kernels still cache to disk; Numba keys its cache on the CPU.

Packed layout (M x K weight, in an array of M*K numbers): the rows of a segment lo:hi go in
panels of MR rows from lo, the panel of rows r..r+MR-1 at offset r*K as (K, MR); the last
hi - lo mod MR rows as panels of one row, at r*K as (K,). Products over a segment use the same
cut, so a thread's rows must start a panel.
"""
import llvmlite.binding as ll
from llvmlite import ir
import numba
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from rnnkit.config import JIT


def _target():
    """(vector bytes, vector registers) of the CPU Numba compiles for."""
    name = numba.config.CPU_NAME or ll.get_host_cpu_name()
    features = numba.config.CPU_FEATURES or ll.get_host_cpu_features().flatten()
    if name == "generic":
        return 16, 16
    if "+avx512f" in features:
        return 64, 32
    if "+avx" in features:
        return 32, 16
    return 16, 32 if ll.get_process_triple().startswith("aarch64") else 16


VECTOR_BYTES, _REGISTERS = _target()
# Rows per panel: MR x NV accumulators plus NV state vectors and one broadcast fill the
# registers (8 x 2 + 3 of 32; 4 x 2 + 3 of 16).
MR = 8 if _REGISTERS >= 32 else 4
NV = 2


def _masked(builder, name, vty, args):
    """A call to llvm.masked.load or .store on vectors of vty (pointers opaque from LLVM 15)."""
    elt = "f32" if vty.element == ir.FloatType() else "f64"
    ptr = "p0" if ll.llvm_version_info[0] >= 15 else "p0" + elt
    arg_types = [a.type for a in args]
    ret = vty if name == "load" else ir.VoidType()
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ret, arg_types),
                                        f"llvm.masked.{name}.v{vty.count}{elt}.{ptr}")
    return builder.call(fn, args)


def _make_tile(vectors):
    """An intrinsic tile(a, a0, b, b0, ldb, c, c0, ldc, K, rows, cols): for r < rows and
    n < cols, c[c0 + r*ldc + n] += sum over k < K of A[r, k] * b[b0 + k*ldb + n], where A is
    the panel at a0: a[a0 + k*MR + r] when rows == MR, else `rows` panels of one row,
    a[a0 + r*K + k]. cols: up to `vectors` of the CPU's vectors; a last vector that is not
    full is read and written through a mask."""
    @intrinsic
    def tile(typingctx, a, a0, b, b0, ldb, c, c0, ldc, K, rows, cols):
        sig = types.void(a, a0, b, b0, ldb, c, c0, ldc, K, rows, cols)

        def codegen(context, builder, sig, args):
            a, a0, b, b0, ldb, c, c0, ldc, K, rows, cols = args
            ty = sig.args[5].dtype
            lanes = VECTOR_BYTES * 8 // ty.bitwidth
            vty = ir.VectorType(context.get_value_type(ty), lanes)
            align = ty.bitwidth // 8
            i32 = ir.IntType(32)
            intp = context.get_value_type(types.intp)
            const = lambda v: ir.Constant(intp, v)  # noqa: E731
            ap, bp, cp = (builder.gep(context.make_array(t)(context, builder, v).data, [off])
                          for t, v, off in ((sig.args[0], a, a0), (sig.args[2], b, b0),
                                            (sig.args[5], c, c0)))
            fma = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vty, [vty] * 3),
                f"llvm.fma.v{lanes}f{ty.bitwidth}")
            undef = ir.Constant(vty, ir.Undefined)
            splat = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)

            def broadcast(x):
                start = ir.Constant(ir.VectorType(x.type, lanes), ir.Undefined)
                return builder.shuffle_vector(builder.insert_element(
                    start, x, ir.Constant(i32, 0)), start, splat)

            # Lanes of the last vector that lie inside cols.
            iota = ir.Constant(ir.VectorType(intp, lanes), list(range(lanes)))
            mask = builder.icmp_signed("<", iota, broadcast(
                builder.sub(cols, const((vectors - 1) * lanes))))

            def load(ptr, masked):
                ptr = builder.bitcast(ptr, vty.as_pointer())
                if masked:
                    return _masked(builder, "load", vty, [ptr, ir.Constant(i32, align), mask,
                                                          undef])
                return builder.load(ptr, align=align)

            def store(value, ptr, masked):
                ptr = builder.bitcast(ptr, vty.as_pointer())
                if masked:
                    _masked(builder, "store", vty, [value, ptr, ir.Constant(i32, align), mask])
                else:
                    builder.store(value, ptr, align=align)

            def panel(mr, ap, cp, masked):
                acc = [[cgutils.alloca_once_value(builder, ir.Constant(vty, [0.0] * lanes))
                        for _ in range(vectors)] for _ in range(mr)]
                last = vectors - 1 if masked else vectors
                with cgutils.for_range(builder, K) as loop:
                    k = loop.index
                    brow = builder.gep(bp, [builder.mul(k, ldb)])
                    bv = [load(builder.gep(brow, [const(v * lanes)]), v == last)
                          for v in range(vectors)]
                    arow = builder.gep(ap, [builder.mul(k, const(mr))])
                    for r in range(mr):
                        w = broadcast(builder.load(builder.gep(arow, [const(r)])))
                        for v in range(vectors):
                            total = builder.call(fma, [w, bv[v], builder.load(acc[r][v])])
                            builder.store(total, acc[r][v])
                for r in range(mr):
                    crow = builder.gep(cp, [builder.mul(const(r), ldc)])
                    for v in range(vectors):
                        p = builder.gep(crow, [const(v * lanes)])
                        total = builder.fadd(load(p, v == last), builder.load(acc[r][v]))
                        store(total, p, v == last)

            def panels(masked):
                full = builder.icmp_signed("==", rows, const(MR))
                with builder.if_else(full) as (then, otherwise):
                    with then:
                        panel(MR, ap, cp, masked)
                    with otherwise:
                        with cgutils.for_range(builder, rows) as loop:
                            r = loop.index
                            panel(1, builder.gep(ap, [builder.mul(r, K)]),
                                  builder.gep(cp, [builder.mul(r, ldc)]), masked)

            whole = builder.icmp_signed("==", cols, const(vectors * lanes))
            with builder.if_else(whole) as (then, otherwise):
                with then:
                    panels(False)
                with otherwise:
                    panels(True)
            return context.get_dummy_value()
        return sig, codegen
    return tile


_wide, _one = _make_tile(NV), _make_tile(1)


@njit(**JIT)
def _panel(ap, a0, K, rows, b, b0, ldb, ncols, c, c0, ldc):
    """One panel's rows times b's first ncols columns, chunk by chunk."""
    lanes = VECTOR_BYTES // c.itemsize
    n = 0
    while ncols - n >= NV * lanes:
        _wide(ap, a0, b, b0 + n, ldb, c, c0 + n, ldc, K, rows, NV * lanes)
        n += NV * lanes
    if ncols - n > lanes:
        _wide(ap, a0, b, b0 + n, ldb, c, c0 + n, ldc, K, rows, ncols - n)
    elif ncols > n:
        _one(ap, a0, b, b0 + n, ldb, c, c0 + n, ldc, K, rows, ncols - n)


@njit(**JIT)
def packed_product(ap, lo, hi, K, b, b0, ldb, ncols, c, c0, ldc):
    """c[r, :ncols] += W[r] @ b[:, :ncols] for the weight's rows lo:hi, W packed in ap by
    pack_columns or pack_rows over a segment that starts at lo or MR-aligned before it. b's
    row k starts at b0 + k*ldb; c's row r at c0 + r*ldc (offsets into the arrays' data, in
    numbers; row 0 is the weight's first row)."""
    r = lo
    while r < hi:
        rows = MR if hi - r >= MR else hi - r
        _panel(ap, r * K, K, rows, b, b0, ldb, ncols, c, c0 + r * ldc, ldc)
        r += rows


@njit(**JIT)
def _pack(w, ap, lo, hi, by_columns):
    flat = ap.reshape(-1)
    K = w.shape[0] if by_columns else w.shape[1]
    r = lo
    while r < hi:
        rows = MR if hi - r >= MR else 1
        for k in range(K):
            for q in range(rows):
                flat[r * K + k * rows + q] = w[k, r + q] if by_columns else w[r + q, k]
        r += rows


@njit(**JIT)
def pack_columns(w, ap, lo, hi):
    """Rows lo:hi of W = w.T (w (K, M)) into ap, in panels of MR rows from lo (a remainder
    of fewer than MR as single rows). ap: any contiguous array of M*K numbers."""
    _pack(w, ap, lo, hi, True)


@njit(**JIT)
def pack_rows(w, ap, lo, hi):
    """Rows lo:hi of W = w (M, K) into ap, as pack_columns."""
    _pack(w, ap, lo, hi, False)
