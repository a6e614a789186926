"""Kernels compiled once and called by name, so that their callers do not compile them again.

Numba links the code of every @njit function a kernel calls into that kernel and optimises and
compiles it all again there: a helper that six drivers call is compiled seven times, and a
chain of wrappers around it more. For the few big shared helpers (the register tiles) that is
most of the compile time. A Leaf compiles such a helper once per dtype as a C-callable function
(numba.cfunc, cached on disk like every kernel), registers its address under a symbol name, and
@njit code calls it through an intrinsic that emits the call (`Leaf.emit`): the callers'
machine code holds only a call to that symbol, resolved when they are compiled or loaded from
the cache. An intrinsic, not an @njit wrapper: a wrapper compiles once per combination of its
arguments' types (array layouts), each a fraction of a second of the first run. Arrays cross
as a pointer to their first element and their length.

A leaf's symbol must exist before any caller is compiled or loaded: the kernels' Python
wrappers call `ready(dtype, the leaves they use)` first (it compiles or loads each leaf the
first time only).
"""
import llvmlite.binding as ll
import numpy as np
from llvmlite import ir
from numba import cfunc, types
from numba.core import cgutils

from rnnkit.kernels.cpu.compile import CACHE, FASTMATH, cache_lock

DTYPES = {np.dtype(np.float32): types.float32, np.dtype(np.float64): types.float64}
LEAVES = []


def ready(dtype, leaves=None):
    """The leaves for `dtype` (default: all) compiled or loaded, their symbols registered.
    Processes sharing the cache (a run and its compile workers, the ranks of a node) take
    turns: the first compiles, the others wait and load what it wrote instead of compiling the
    same code again."""
    todo = [leaf for leaf in leaves or LEAVES if DTYPES[np.dtype(dtype)] not in leaf.compiled]
    if todo:
        with cache_lock("leaves.lock"):
            for leaf in todo:
                leaf.ready(dtype)


class Leaf:
    """`adapter`: a module-level function of (pointer, length) per array, then `scalars`
    integers, which wraps the pointers in carrays and does the work itself (a helper it called
    would compile on its own and again inside it)."""

    def __init__(self, name, adapter, arrays, scalars):
        self.name, self.adapter = name, adapter
        self.signatures = {dt: types.void(*([types.CPointer(dt), types.intp] * arrays),
                                          *([types.intp] * scalars))
                           for dt in DTYPES.values()}
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

    def emit(self, context, builder, dtype, args):
        """In an intrinsic's codegen: call the leaf for `dtype` (a Numba type) with `args`, LLVM
        values in the signature's order."""
        fnty = ir.FunctionType(ir.VoidType(), [context.get_value_type(t)
                                               for t in self.signatures[dtype].args])
        builder.call(cgutils.get_or_insert_function(builder.module, fnty,
                                                    f"{self.name}_{dtype}"), args)
