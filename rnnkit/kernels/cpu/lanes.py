"""Vector arithmetic with a fixed order of operations: fma, and sums, maxima and dot products
over contiguous runs.

The kernels compile without LLVM's reassociation and contraction flags (kernels/cpu/compile.py says
why: results must not depend on what LLVM inlines, which differs between a fresh compile and
the on-disk cache). Without them LLVM keeps every sum in source order, one number at a time,
and never fuses a multiply with an add. So the few places where that order costs speed say
what they want here: `fma` is one fused multiply-add (exactly rounded, the same at every
optimisation level), and each reduction runs in U vectors of the CPU's width, lane k of vector
u summing elements k + W*u, k + W*(u + U), ...; the vectors are then added in a fixed tree and
the tail (fewer than W*U numbers) one at a time. The result depends only on the data and the
CPU's vector width.
"""
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from rnnkit.kernels.cpu.target import VECTOR_BYTES


U = 4   # vectors in flight per reduction: enough to hide the add's latency


def _float_bits(ty):
    return ty.bitwidth if isinstance(ty, types.Float) else None


def llvm_fma(builder, values):
    """A call to llvm.fma on scalars or vectors of one float type."""
    ty = values[0].type
    elt = ty.element if isinstance(ty, ir.VectorType) else ty
    bits = 32 if elt == ir.FloatType() else 64
    name = f"llvm.fma.v{ty.count}f{bits}" if isinstance(ty, ir.VectorType) else f"llvm.fma.f{bits}"
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ty, [ty] * 3), name)
    return builder.call(fn, values)


@intrinsic
def fma(typingctx, a, b, c):
    """a * b + c rounded once. Loops of it still vectorise (llvm.fma is a vector intrinsic)."""
    if not (_float_bits(a) and a == b == c):
        return None

    def codegen(context, builder, sig, args):
        return llvm_fma(builder, list(args))
    return a(a, a, a), codegen


def _reduce_intrinsic(kind, ranged=False):
    """An intrinsic f(x, lo, hi) (sum, max, sumsq) or f(x, y, lo, hi) (dot) over a 1-D
    contiguous array's elements lo:hi. sumsq accumulates float32 input in float64. ranged:
    f(x, ranges) over all of x, whose blocks (W * U numbers from x[0]) it visits only inside
    `ranges`, (R, 2) int64 [start, stop) runs, each start a multiple of the block: the tail
    runs whole, and the rest of x must be numbers that leave the sum as it is (zeros for a
    sum of squares)."""
    dot = kind == "dot"

    def typer(typingctx, *args):
        arrays = args[:2] if dot else args[:1]
        if not all(isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"
                   and _float_bits(a.dtype)
                   for a in arrays):
            return None
        if dot and arrays[0].dtype != arrays[1].dtype:
            return None
        if ranged and not (isinstance(args[-1], types.Array) and args[-1].ndim == 2
                           and args[-1].layout == "C" and args[-1].dtype == types.int64):
            return None
        acc = types.float64 if kind == "sumsq" else arrays[0].dtype
        return acc(*args), lambda context, builder, sig, a: _codegen(context, builder, sig, a)

    def _codegen(context, builder, sig, args):
        if ranged:
            ary = context.make_array(sig.args[0])(context, builder, args[0])
            lo = context.get_constant(types.intp, 0)
            arrays, (hi,) = args[:1], cgutils.unpack_tuple(builder, ary.shape, 1)
        else:
            arrays, (lo, hi) = (args[:2], args[2:]) if dot else (args[:1], args[1:])
        in_ty = context.get_value_type(sig.args[0].dtype)
        acc_ty = context.get_value_type(sig.return_type)
        W = VECTOR_BYTES * 8 // sig.return_type.bitwidth
        vin, vacc = ir.VectorType(in_ty, W), ir.VectorType(acc_ty, W)
        intp = context.get_value_type(types.intp)
        align = sig.args[0].dtype.bitwidth // 8
        ptrs = [builder.gep(context.make_array(sig.args[i])(context, builder, a).data, [lo])
                for i, a in enumerate(arrays)]
        n = builder.sub(hi, lo)
        if kind == "max":
            first = builder.load(ptrs[0])
            start = ir.Constant(vacc, ir.Undefined)
            for k in range(W):
                start = builder.insert_element(start, first, ir.Constant(ir.IntType(32), k))
            init, scalar_init = start, first
        else:
            init, scalar_init = ir.Constant(vacc, [0.0] * W), ir.Constant(acc_ty, 0.0)
        accs = [cgutils.alloca_once_value(builder, init) for _ in range(U)]

        def combine(acc, values, scalar):
            if kind == "sum":
                return builder.fadd(acc, values[0])
            if kind == "max":
                pred = builder.fcmp_ordered(">", values[0], acc)
                return builder.select(pred, values[0], acc)
            if kind == "sumsq":
                x = values[0] if in_ty == acc_ty else (
                    builder.fpext(values[0], acc_ty if scalar else vacc))
                return llvm_fma(builder, [x, x, acc])
            return llvm_fma(builder, [values[0], values[1], acc])

        block = W * U
        main = builder.mul(builder.sdiv(n, ir.Constant(intp, block)), ir.Constant(intp, block))

        def blocks(start, stop):
            with cgutils.for_range_slice(builder, start, stop,
                                         ir.Constant(intp, block)) as (i, _):
                for u in range(U):
                    at = builder.add(i, ir.Constant(intp, u * W))
                    values = [builder.load(builder.bitcast(builder.gep(p, [at]),
                                                           vin.as_pointer()), align=align)
                              for p in ptrs]
                    builder.store(combine(builder.load(accs[u]), values, False), accs[u])

        if ranged:
            runs = context.make_array(sig.args[-1])(context, builder, args[-1])
            count = cgutils.unpack_tuple(builder, runs.shape, 2)[0]
            with cgutils.for_range(builder, count) as loop:
                at = builder.mul(loop.index, ir.Constant(intp, 2))
                start = builder.load(builder.gep(runs.data, [at]))
                stop = builder.load(builder.gep(runs.data,
                                                [builder.add(at, ir.Constant(intp, 1))]))
                blocks(start, builder.select(builder.icmp_signed("<", stop, main), stop, main))
        else:
            blocks(ir.Constant(intp, 0), main)
        vals = [builder.load(a) for a in accs]
        def merge(a, b):
            if kind == "max":
                return builder.select(builder.fcmp_ordered(">", b, a), b, a)
            return builder.fadd(a, b)

        while len(vals) > 1:
            vals = [merge(vals[k], vals[k + 1]) for k in range(0, len(vals), 2)]
        vec = vals[0]
        width = W
        while width > 1:
            half = width // 2
            upper = builder.shuffle_vector(vec, vec, ir.Constant(
                ir.VectorType(ir.IntType(32), W), [half + (k % half) for k in range(W)]))
            vec = merge(vec, upper)
            width = half
        total = cgutils.alloca_once_value(builder, builder.extract_element(
            vec, ir.Constant(ir.IntType(32), 0)))
        tail = cgutils.alloca_once_value(builder, scalar_init)
        with cgutils.for_range_slice(builder, main, n, ir.Constant(intp, 1)) as (i, _):
            values = [builder.load(builder.gep(p, [i])) for p in ptrs]
            builder.store(combine(builder.load(tail), values, True), tail)
        t, s = builder.load(total), builder.load(tail)
        if kind == "max":
            return merge(t, s)
        empty = builder.icmp_signed("<=", n, ir.Constant(intp, 0))
        return builder.select(empty, ir.Constant(acc_ty, 0.0), builder.fadd(t, s))

    if ranged:
        @intrinsic
        def reduce(typingctx, x, ranges):
            return typer(typingctx, x, ranges)
    elif dot:
        @intrinsic
        def reduce(typingctx, x, y, lo, hi):
            return typer(typingctx, x, y, lo, hi)
    else:
        @intrinsic
        def reduce(typingctx, x, lo, hi):
            return typer(typingctx, x, lo, hi)
    return reduce


vsum = _reduce_intrinsic("sum")      # vsum(x, lo, hi): x[lo:hi].sum()
vmax = _reduce_intrinsic("max")      # vmax(x, lo, hi): x[lo:hi].max(); needs hi > lo
vsumsq = _reduce_intrinsic("sumsq")  # vsumsq(x, lo, hi): (x[lo:hi] ** 2).sum() in float64
vdot = _reduce_intrinsic("dot")      # vdot(x, y, lo, hi): x[lo:hi] @ y[lo:hi]
vsumsq_in = _reduce_intrinsic("sumsq", ranged=True)    # vsumsq_in(x, ranges): vsumsq(x, 0,
#                                                        len(x)) for x zero outside ranges
