"""Register-tiled matrix products for the recurrences' per-step work.

A recurrence runs T small products a layer (32-64 streams, K = 64-2048), each through a BLAS
call that packs its operands again. The kernel below reads its operands where they lie, A by
any two strides (a row-major matrix, or one read as its transpose) and B by rows, and keeps an
MR x (NV vectors) block of C in registers over the whole summed dimension: each k loads NV
vectors of B's row and broadcasts MR numbers of A's column. At the recurrences' shapes it is
faster than OpenBLAS on one core (bench/tiles.py; figures in bench/RESULTS.md).

It is written in LLVM IR (a Numba intrinsic) because Numba has no vector type: as plain
loops, LLVM keeps the accumulators in memory. Its vectors are as wide as the target CPU's and
its shape is chosen for that CPU (kernels/cpu/target.py; SHAPES below); the cache keeps each
CPU's builds apart (kernels/cpu/compile.py), and tests/test_targets.py reads the assembly for
AVX2 and AVX-512 to check that no accumulator spills to the stack.
"""
import llvmlite.binding as ll
from llvmlite import ir
from numba import carray, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from rnnkit.kernels.cpu.target import ISA, VECTOR_BYTES
from rnnkit.kernels.cpu.compile import JIT
from rnnkit.kernels.cpu.leaf import DTYPES, Leaf


# The tile's shape for this CPU (rnnkit/kernels/cpu/target.py), chosen from bench/tiles.py
# --shapes on each kind (bench/RESULTS.md, "Tile shapes"): MR rows of A by NV vectors of B's row
# held in registers, MR x NV accumulators plus NV vectors of B and a broadcast of A; PREFETCH:
# rows of B fetched this many k ahead (0: none, the hardware's prefetchers do it).
SHAPES = {"avx512": (8, 2, 0), "avx2": (6, 2, 0), "portable": (4, 2, 0)}
MR, NV, PREFETCH = SHAPES[ISA]
assert NV in (1, 2)     # the leaf takes a last block of columns as one vector or NV
CHUNK = NV * VECTOR_BYTES   # bytes of B's row a tile takes: its block of columns


def _masked(builder, name, vty, args):
    """A call to llvm.masked.load or .store on vectors of vty (pointers opaque from LLVM 15)."""
    elt = "f32" if vty.element == ir.FloatType() else "f64"
    ptr = "p0" if ll.llvm_version_info[0] >= 15 else "p0" + elt
    arg_types = [a.type for a in args]
    ret = vty if name == "load" else ir.VoidType()
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ret, arg_types),
                                        f"llvm.masked.{name}.v{vty.count}{elt}.{ptr}")
    return builder.call(fn, args)


def make_tile(rows_max, vectors, prefetch=0, half=False):
    """An intrinsic tile(a, a0, ars, aks, aks2, b, b0, ldb, ldb2, c, c0, crs, K, K2, rows,
    cols): for r < rows and n < cols, c[c0 + r*crs + n] += the sum over k2 < K2, k < K
    of a[a0 + r*ars + k*aks + k2*aks2] * b[b0 + k*ldb + k2*ldb2 + n]: a product whose summed
    dimension comes in K2 runs of K (steps of streams). rows: up to rows_max; fewer run as
    panels of the powers of two below it (5 = 4 + 1). cols: up to `vectors` of the CPU's
    vectors, the last one half as wide when `half`; a last vector that is not full is read and
    written through a mask.

    Each c[r, n] is one chain of fused multiply-adds over k in order, from zero, added to c
    at the end: the result does not depend on the tile's shape, its loop order, or the vector
    width."""
    @intrinsic
    def tile(typingctx, a, a0, ars, aks, aks2, b, b0, ldb, ldb2, c, c0, crs, K, K2, rows, cols):
        sig = types.void(a, a0, ars, aks, aks2, b, b0, ldb, ldb2, c, c0, crs, K, K2, rows, cols)

        def codegen(context, builder, sig, args):
            a, a0, ars, aks, aks2, b, b0, ldb, ldb2, c, c0, crs, K, K2, rows, cols = args
            ty = sig.args[9].dtype
            lanes = VECTOR_BYTES * 8 // ty.bitwidth
            width = [lanes] * (vectors - 1) + [lanes // 2 if half else lanes]
            vtys = [ir.VectorType(context.get_value_type(ty), w) for w in width]
            align = ty.bitwidth // 8
            i32 = ir.IntType(32)
            intp = context.get_value_type(types.intp)
            const = lambda v: ir.Constant(intp, v)  # noqa: E731
            ap, bp, cp = (builder.gep(context.make_array(t)(context, builder, v).data, [off])
                          for t, v, off in ((sig.args[0], a, a0), (sig.args[5], b, b0),
                                            (sig.args[9], c, c0)))
            fma = [cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(vty, [vty] * 3),
                f"llvm.fma.v{vty.count}f{ty.bitwidth}") for vty in vtys]
            fetch = None
            if prefetch:
                i8p = ir.IntType(8).as_pointer()
                fetch = cgutils.get_or_insert_function(
                    builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                    "llvm.prefetch.p0")

            def broadcast(x, n):
                start = ir.Constant(ir.VectorType(x.type, n), ir.Undefined)
                return builder.shuffle_vector(builder.insert_element(
                    start, x, ir.Constant(i32, 0)), start,
                    ir.Constant(ir.VectorType(i32, n), [0] * n))

            # Lanes of the last vector that lie inside cols.
            last_width = width[-1]
            iota = ir.Constant(ir.VectorType(intp, last_width), list(range(last_width)))
            mask = builder.icmp_signed("<", iota, broadcast(
                builder.sub(cols, const((vectors - 1) * lanes)), last_width))

            def load(ptr, v, masked):
                vty = vtys[v]
                ptr = builder.bitcast(ptr, vty.as_pointer())
                if masked:
                    return _masked(builder, "load", vty, [ptr, ir.Constant(i32, align), mask,
                                                          ir.Constant(vty, ir.Undefined)])
                return builder.load(ptr, align=align)

            def store(value, ptr, v, masked):
                vty = vtys[v]
                ptr = builder.bitcast(ptr, vty.as_pointer())
                if masked:
                    _masked(builder, "store", vty, [value, ptr, ir.Constant(i32, align), mask])
                else:
                    builder.store(value, ptr, align=align)

            def panel(mr, ap, cp, masked):
                rowoff = [builder.mul(const(r), ars) for r in range(mr)]
                acc = [[cgutils.alloca_once_value(builder, ir.Constant(vty, [0.0] * vty.count))
                        for vty in vtys] for _ in range(mr)]
                last = vectors - 1 if masked else vectors
                with cgutils.for_range(builder, K2) as outer:
                    a2 = builder.gep(ap, [builder.mul(outer.index, aks2)])
                    b2 = builder.gep(bp, [builder.mul(outer.index, ldb2)])
                    with cgutils.for_range(builder, K) as loop:
                        k = loop.index
                        brow = builder.gep(b2, [builder.mul(k, ldb)])
                        if fetch is not None:
                            ahead = builder.gep(brow, [builder.mul(const(prefetch), ldb)])
                            for line in range(0, vectors * VECTOR_BYTES, 64):
                                builder.call(fetch, [builder.bitcast(builder.gep(
                                    ahead, [const(line // align)]), i8p),
                                    ir.Constant(i32, 0), ir.Constant(i32, 3),
                                    ir.Constant(i32, 1)])
                        bv = [load(builder.gep(brow, [const(v * lanes)]), v, v == last)
                              for v in range(vectors)]
                        acol = builder.gep(a2, [builder.mul(k, aks)])
                        for r in range(mr):
                            x = builder.load(builder.gep(acol, [rowoff[r]]))
                            w = {n: broadcast(x, n) for n in set(width)}
                            for v in range(vectors):
                                total = builder.call(fma[v], [w[width[v]], bv[v],
                                                              builder.load(acc[r][v])])
                                builder.store(total, acc[r][v])
                for r in range(mr):
                    crow = builder.gep(cp, [builder.mul(const(r), crs)])
                    for v in range(vectors):
                        p = builder.gep(crow, [const(v * lanes)])
                        total = builder.fadd(load(p, v, v == last), builder.load(acc[r][v]))
                        store(total, p, v, v == last)

            def panels(masked):
                full = builder.icmp_signed("==", rows, const(rows_max))
                with builder.if_else(full) as (then, otherwise):
                    with then:
                        panel(rows_max, ap, cp, masked)
                    with otherwise:
                        # the bits of rows, largest first: panel s starts after the larger ones
                        s = 1 << (rows_max - 1).bit_length() - 1
                        while s:
                            has = builder.icmp_signed("!=", builder.and_(rows, const(s)),
                                                      const(0))
                            with builder.if_then(has):
                                r0 = builder.and_(rows, const(~(2 * s - 1)))
                                panel(s, builder.gep(ap, [builder.mul(r0, ars)]),
                                      builder.gep(cp, [builder.mul(r0, crs)]), masked)
                            s //= 2

            # Whole vectors need no mask: masking them too looked slower on the LSTM step in
            # one (noisy) A/B, though not in bench/tiles.py alone (bench/RESULTS.md).
            whole = builder.icmp_signed("==", cols, const(sum(width)))
            with builder.if_else(whole) as (then, otherwise):
                with then:
                    panels(False)
                with otherwise:
                    panels(True)
            return context.get_dummy_value()
        return sig, codegen
    return tile


# With 512-bit vectors a last block of columns that fills half a vector or less takes a
# 256-bit one: on CPUs that run a 512-bit multiply-add as two 256-bit halves (AMD Zen 4, Intel
# client cores) it costs half, and elsewhere the same (20 streams: 16 + 8 lanes, not 32).
HALF = VECTOR_BYTES == 64 and NV == 2
_wide, _one = make_tile(MR, NV, PREFETCH), make_tile(MR, 1, PREFETCH)
_wide_half, _half = make_tile(MR, NV, PREFETCH, HALF), make_tile(MR, 1, PREFETCH, HALF)


def _product_runs_flat(a, na, b, nb, c, nc, a0, ars, aks, aks2, lo, hi, K, K2, b0, ldb, ldb2,
                       bcs, ncols, c0, ldc):
    """The leaf: C[r, :ncols] += A[r] @ B[:, :ncols] for rows lo:hi, where the summed dimension
    comes in K2 runs of K: A[r, (k2, k)] = a[a0 + r*ars + k*aks + k2*aks2], B[(k2, k), n] =
    b[b0 + (n // C)*bcs + k*ldb + k2*ldb2 + n % C] for blocks of C = CHUNK columns (bcs = C:
    B a plain matrix; bcs = K*C with ldb = C: B packed block by block, pack_columns),
    C[r, n] = c[c0 + r*ldc + n]; a, b, c: pointers and lengths, offsets into them in numbers.
    One function, so that it compiles once (a helper it called would compile on its own and
    again inside it).

    The larger operand is read once and the smaller one again for each panel: panels of rows
    in the outer loop when A has more rows than B has columns (the LSTM's weights as A), column
    blocks outside when B is wider (the GRU's and RNN's weights as B)."""
    a, b, c = carray(a, (na,)), carray(b, (nb,)), carray(c, (nc,))
    chunk = CHUNK // c.itemsize
    one = VECTOR_BYTES // c.itemsize
    half = one // 2
    panels, chunks = (hi - lo + MR - 1) // MR, (ncols + chunk - 1) // chunk
    rows_outside = hi - lo >= ncols
    for i in range(panels * chunks):    # one loop, so that each tile is inlined once
        if rows_outside:
            p, q = i // chunks, i % chunks
        else:
            p, q = i % panels, i // panels
        r, n = lo + p * MR, q * chunk
        rows, cols = min(MR, hi - r), min(chunk, ncols - n)
        ra, rb, rc = a0 + r * ars, b0 + q * bcs, c0 + r * ldc + n
        if HALF:    # a constant: Numba compiles only the branch taken
            if cols > one + half:
                _wide(a, ra, ars, aks, aks2, b, rb, ldb, ldb2, c, rc, ldc, K, K2, rows, cols)
            elif cols > one:
                _wide_half(a, ra, ars, aks, aks2, b, rb, ldb, ldb2, c, rc, ldc, K, K2, rows,
                           cols)
            elif cols > half:
                _one(a, ra, ars, aks, aks2, b, rb, ldb, ldb2, c, rc, ldc, K, K2, rows, cols)
            else:
                _half(a, ra, ars, aks, aks2, b, rb, ldb, ldb2, c, rc, ldc, K, K2, rows, cols)
        elif cols > one:
            _wide(a, ra, ars, aks, aks2, b, rb, ldb, ldb2, c, rc, ldc, K, K2, rows, cols)
        else:
            _one(a, ra, ars, aks, aks2, b, rb, ldb, ldb2, c, rc, ldc, K, K2, rows, cols)


LEAF = Leaf("rnnkit_product_runs", _product_runs_flat, arrays=3, scalars=15)


def _signature(args, arrays):
    """A leaf caller's signature: the arguments at positions `arrays` as they are (they must
    be C-contiguous, of one float dtype), every other one intp; None if the arrays do not fit."""
    arys = [args[i] for i in arrays]
    if not all(isinstance(x, types.Array) and x.layout == "C" for x in arys) or \
            len({x.dtype for x in arys}) != 1 or arys[0].dtype not in DTYPES.values():
        return None
    return types.void(*[x if i in arrays else types.intp for i, x in enumerate(args)])


def _call_leaf(context, builder, sig, args, arrays, scalars):
    """Codegen: the leaf's call with the arrays at positions `arrays` each as its data pointer
    and size, then `scalars` (LLVM intp values, the leaf's order)."""
    values = []
    for i in arrays:
        ary = context.make_array(sig.args[i])(context, builder, args[i])
        values += [ary.data, ary.nitems]
    LEAF.emit(context, builder, sig.args[arrays[0]].dtype, values + scalars)
    return context.get_dummy_value()


@intrinsic
def product_runs(typingctx, a, a0, ars, aks, aks2, lo, hi, K, K2, b, b0, ldb, ldb2, ncols, c,
                 c0, ldc):
    """See _product_runs_flat; a, b and c: C-contiguous arrays of any shape and one dtype,
    offsets into their data; B a plain matrix. It calls the leaf (kernels/cpu/leaf.py: compiled
    once per dtype, called by name; call leaf.ready(dtype) before the first call)."""
    arrays = (0, 9, 14)
    sig = _signature((a, a0, ars, aks, aks2, lo, hi, K, K2, b, b0, ldb, ldb2, ncols, c, c0,
                      ldc), arrays)

    def codegen(context, builder, sig, args):
        v = args
        scalars = [v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[10], v[11], v[12],
                   _chunk(context, sig.args[0].dtype), v[13], v[15], v[16]]
        return _call_leaf(context, builder, sig, args, arrays, scalars)
    return None if sig is None else (sig, codegen)


@intrinsic
def product_runs_packed(typingctx, a, a0, ars, aks, aks2, lo, hi, K, K2, b, b0, ldb2, bcs, ncols,
                        c, c0, ldc):
    """product_runs with B packed by pack_columns: column block q of B is the matrix at
    b0 + q*bcs, rows C apart (C = CHUNK // itemsize), run k2 of the summed dimension from its
    row k2*ldb2 / C."""
    arrays = (0, 9, 14)
    sig = _signature((a, a0, ars, aks, aks2, lo, hi, K, K2, b, b0, ldb2, bcs, ncols, c, c0,
                      ldc), arrays)

    def codegen(context, builder, sig, args):
        v = args
        scalars = [v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[10],
                   _chunk(context, sig.args[0].dtype), v[11], v[12], v[13], v[15], v[16]]
        return _call_leaf(context, builder, sig, args, arrays, scalars)
    return None if sig is None else (sig, codegen)


def _chunk(context, dtype):
    return context.get_constant(types.intp, CHUNK // (dtype.bitwidth // 8))


@intrinsic
def product(typingctx, a, a0, ars, aks, lo, hi, K, b, b0, ldb, ncols, c, c0, ldc):
    """c[r, :ncols] += A[r] @ b[:, :ncols] for rows lo:hi of an A laid out by strides,
    A[r, k] = a[a0 + r*ars + k*aks] (a row-major matrix: ars = its row length, aks = 1; one
    read as its transpose: ars = 1, aks = its row length); b's row k starts at b0 + k*ldb,
    c's row r at c0 + r*ldc: product_runs with one run."""
    arrays = (0, 7, 11)
    sig = _signature((a, a0, ars, aks, lo, hi, K, b, b0, ldb, ncols, c, c0, ldc), arrays)

    def codegen(context, builder, sig, args):
        zero, one = (context.get_constant(types.intp, n) for n in (0, 1))
        v = args
        scalars = [v[1], v[2], v[3], zero, v[4], v[5], v[6], one, v[8], v[9], zero,
                   _chunk(context, sig.args[0].dtype), v[10], v[12], v[13]]
        return _call_leaf(context, builder, sig, args, arrays, scalars)
    return None if sig is None else (sig, codegen)


@intrinsic
def product_packed(typingctx, a, a0, ars, aks, lo, hi, K, b, b0, bcs, ncols, c, c0, ldc):
    """product with B packed by pack_columns: column block q (CHUNK bytes of each row) of B
    is the K x C matrix at b0 + q*bcs, rows C apart, read front to back."""
    arrays = (0, 7, 11)
    sig = _signature((a, a0, ars, aks, lo, hi, K, b, b0, bcs, ncols, c, c0, ldc), arrays)

    def codegen(context, builder, sig, args):
        zero, one = (context.get_constant(types.intp, n) for n in (0, 1))
        v = args
        chunk = _chunk(context, sig.args[0].dtype)
        scalars = [v[1], v[2], v[3], zero, v[4], v[5], v[6], one, v[8], chunk, zero, v[9],
                   v[10], v[12], v[13]]
        return _call_leaf(context, builder, sig, args, arrays, scalars)
    return None if sig is None else (sig, codegen)


@intrinsic
def transpose_block(typingctx, src, s0, sld, dst, d0, dld, add):
    """dst[d0 + q*dld + p] = (or +=, when add) src[s0 + p*sld + q] for p, q < lanes, the CPU's
    vector width in the arrays' dtype: a square block transposed in registers, log2(lanes)
    rounds of two-vector shuffles, each swapping the off-diagonal quarters of blocks twice
    as wide (about ten times faster than the scalar loop: bench/RESULTS.md)."""
    sig = types.void(src, s0, sld, dst, d0, dld, add)

    def codegen(context, builder, sig, args):
        src, s0, sld, dst, d0, dld, add = args
        ty = sig.args[3].dtype
        W = VECTOR_BYTES * 8 // ty.bitwidth
        vty = ir.VectorType(context.get_value_type(ty), W)
        align = ty.bitwidth // 8
        intp = context.get_value_type(types.intp)
        sp = builder.gep(context.make_array(sig.args[0])(context, builder, src).data, [s0])
        dp = builder.gep(context.make_array(sig.args[3])(context, builder, dst).data, [d0])

        def row(base, i, ld):
            ptr = builder.gep(base, [builder.mul(ir.Constant(intp, i), ld)])
            return builder.bitcast(ptr, vty.as_pointer())

        rows = [builder.load(row(sp, i, sld), align=align) for i in range(W)]
        b = W // 2
        while b >= 1:
            for i in range(W):
                if i & b:
                    continue
                top, bottom = rows[i], rows[i + b]
                upper = [c if not c & b else W + c - b for c in range(W)]
                lower = [c + b if not c & b else W + c for c in range(W)]
                rows[i] = builder.shuffle_vector(top, bottom, ir.Constant(
                    ir.VectorType(ir.IntType(32), W), upper))
                rows[i + b] = builder.shuffle_vector(top, bottom, ir.Constant(
                    ir.VectorType(ir.IntType(32), W), lower))
            b //= 2
        with builder.if_else(add) as (then, otherwise):
            with then:
                for i in range(W):
                    ptr = row(dp, i, dld)
                    builder.store(builder.fadd(builder.load(ptr, align=align), rows[i]), ptr,
                                  align=align)
            with otherwise:
                for i in range(W):
                    builder.store(rows[i], row(dp, i, dld), align=align)
        return context.get_dummy_value()
    return sig, codegen


@njit(**JIT)
def pack_columns(src, s0, srs, scs, K, n0, n1, dst, d0, bcs):
    """Columns n0:n1 of the K-row matrix B[k, n] = src[s0 + k*srs + n*scs] into dst, block by
    block as product_packed reads them: column n of block q = n // C at dst[d0 + q*bcs + k*C +
    n % C], C = CHUNK // itemsize; bcs = K*C for B alone, more for K rows of a taller packed
    matrix; n0 a multiple of C. src, dst: 1-D."""
    C = CHUNK // dst.itemsize
    for q0 in range(n0, n1, C):
        base, width = d0 + q0 // C * bcs, min(C, n1 - q0)
        if scs == 1:                    # read along src's rows
            for k in range(K):
                row, out = s0 + k * srs + q0, base + k * C
                # through views from 0, so that the copy is vectorised (indices from a
                # run-time start are not; a slice assignment checks for overlap each time)
                d, s = dst[out:out + width], src[row:row + width]
                for n in range(width):
                    d[n] = s[n]
        else:                           # along its columns (B is a transpose)
            for n in range(width):
                col = s0 + (q0 + n) * scs
                for k in range(K):
                    dst[base + k * C + n] = src[col + k * srs]
