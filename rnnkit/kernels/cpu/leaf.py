"""Kernels compiled once and called by name, so that their callers do not compile them again.

Numba links the code of every @njit function a kernel calls into that kernel and optimises and
compiles it all again there: a helper that six drivers call is compiled seven times, and a
chain of wrappers around it more. For the few big shared helpers (the register tiles) that is
most of the compile time. A Leaf compiles such a helper once per dtype as a C-callable function
(numba.cfunc, cached on disk like every kernel), registers its address under a symbol name, and
@njit code calls it through `leaf.call(dtype)`: the callers' machine code holds only a call to
that symbol, resolved when they are compiled or loaded from the cache. Arrays cross as a pointer
to their first element and their length.

A leaf's symbol must exist before any caller is compiled or loaded: the kernels' Python
wrappers call `ready(dtype)` first (it compiles or loads every leaf the first time only).
"""
import llvmlite.binding as ll
import numpy as np
from numba import cfunc, types
from numba.extending import intrinsic

from rnnkit.kernels.cpu.jit import CACHE, FASTMATH

DTYPES = {np.dtype(np.float32): types.float32, np.dtype(np.float64): types.float64}
LEAVES = []


def ready(dtype):
    """Every leaf for `dtype`, compiled or loaded, its symbol registered."""
    for leaf in LEAVES:
        leaf.ready(dtype)


@intrinsic
def data_pointer(typingctx, arr):
    """A typed pointer to an array's first element."""
    def codegen(context, builder, sig, args):
        return context.make_array(sig.args[0])(context, builder, args[0]).data
    return types.CPointer(arr.dtype)(arr), codegen


class Leaf:
    """`adapter`: a module-level function of (pointer, length) per array, then `scalars`
    integers, which wraps the pointers in carrays and calls the helper."""

    def __init__(self, name, adapter, arrays, scalars):
        self.name, self.adapter = name, adapter
        self.signatures = {dt: types.void(*([types.CPointer(dt), types.intp] * arrays),
                                          *([types.intp] * scalars))
                           for dt in DTYPES.values()}
        self.externals = {dt: types.ExternalFunction(f"{name}_{dt}", sig)
                          for dt, sig in self.signatures.items()}
        self.compiled = {}
        LEAVES.append(self)

    def ready(self, dtype):
        """Compile or load the leaf for `dtype` and register its symbol (once)."""
        dt = DTYPES[np.dtype(dtype)]
        if dt not in self.compiled:
            cf = cfunc(self.signatures[dt], cache=CACHE, fastmath=FASTMATH,
                       error_model="numpy", nogil=True)(self.adapter)
            ll.add_symbol(f"{self.name}_{dt}", cf.address)
            self.compiled[dt] = cf

    def call(self, dtype):
        """The external function for @njit code (a typing-time constant)."""
        return self.externals[dtype]
