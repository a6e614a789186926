"""gemm with strides, transposes and beta, callable from @njit code.

Numba's np.dot takes contiguous arrays and always overwrites its output. The LSTM needs more:
products into strided views (one step's slice of a (4H, T, N) array), accumulation on top of
what is there (beta = 1), and a choice of operand layout: single-threaded OpenBLAS runs the
per-step product of few streams faster when the output is feature-major (N contiguous) and the
weight is contiguous along the summed dimension than as np.dot lays it out
(bench/gemm_layout.py; figures in bench/RESULTS.md).

This calls the same BLAS as np.dot (scipy's, through Numba's `numba_xxgemm` helper), by symbol
name, so kernels that use it still cache to disk.
"""
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload
import numpy as np

from rnnkit.kernels.cpu.compile import JIT

_SIG = types.intc(types.char, types.char, types.char, types.intp, types.intp, types.intp,
                  types.voidptr, types.voidptr, types.intp, types.voidptr, types.intp,
                  types.voidptr, types.voidptr, types.intp)
_XXGEMM = types.ExternalFunction("numba_xxgemm", _SIG)
_N, _T = ord("N"), ord("T")


@intrinsic
def _address_of(typingctx, value):
    """A pointer to a stack copy of `value` (BLAS takes alpha and beta by reference)."""
    def codegen(context, builder, sig, args):
        ptr = cgutils.alloca_once_value(builder, args[0])
        return builder.bitcast(ptr, cgutils.voidptr_t)
    return types.voidptr(value), codegen


@intrinsic
def _data(typingctx, arr):
    """The address of an array's first element (of a view: the view's first element)."""
    def codegen(context, builder, sig, args):
        ary = context.make_array(sig.args[0])(context, builder, args[0])
        return builder.bitcast(ary.data, cgutils.voidptr_t)
    return types.voidptr(arr), codegen


@njit(**JIT)
def _strided(x, item):
    return x.shape[1] > 1 and x.strides[1] != item


def gemm(a, b, c, ta, tb, beta):
    """c = op(a) @ op(b) + beta * c, where op(x) is x.T when its flag is set.

    a, b, c: 2-D float arrays of one dtype, each row contiguous (any row stride), shapes
    consistent; the caller checks (the kernel wrappers validate their inputs)."""


@overload(gemm, jit_options=dict(nogil=True))
def _gemm(a, b, c, ta, tb, beta):
    if not all(isinstance(x, types.Array) and x.ndim == 2 for x in (a, b, c)):
        return None
    if c.dtype not in (types.float32, types.float64):
        return None
    kind = ord("s" if c.dtype == types.float32 else "d")
    dt = np.float32 if c.dtype == types.float32 else np.float64

    def impl(a, b, c, ta, tb, beta):
        M, N = c.shape
        K = a.shape[0] if ta else a.shape[1]
        if M == 0 or N == 0:
            return
        # Row-major c = op(a) op(b) is column-major c^T = op(b)^T op(a)^T: BLAS gets b first.
        item = c.itemsize
        if _strided(a, item) or _strided(b, item) or _strided(c, item):
            raise ValueError("gemm: every row must be contiguous")
        lda = max(a.strides[0] // item, a.shape[1], 1)
        ldb = max(b.strides[0] // item, b.shape[1], 1)
        ldc = max(c.strides[0] // item, N, 1)
        _XXGEMM(kind, _T if tb else _N, _T if ta else _N, N, M, K,
                _address_of(dt(1.0)), _data(b), ldb, _data(a), lda,
                _address_of(dt(beta)), _data(c), ldc)
    return impl
