"""Compile flags for every CPU kernel, read from here and nowhere else, and the serial/parallel
Twin. The kernels' on-disk cache: rnnkit/kernels/cache.py.
"""
import types

import numba

from rnnkit.kernels.cache import CACHE, cache_lock  # noqa: F401  (leaf.py takes both from here)

# No fast-math flags at all. With reassociation or contraction, LLVM's result depends on what
# it inlines, and a kernel compiled in this process inlines its callees while one loaded from
# the cache calls them: the same run gave different losses on a fresh and a warm cache. With
# IEEE semantics every build (cached or not, serial or parallel, any optimisation level) gives
# the same bits; kernels/cpu/lanes.py supplies the fused multiply-adds and the vector reductions
# that the flags used to buy.
FASTMATH = False

# error_model="numpy": no zero-division checks, which would stop loops from vectorising.
JIT = dict(cache=CACHE, fastmath=FASTMATH, error_model="numpy", nogil=True)
# Drivers split the batch (or the rows of a product) into one block per thread with prange;
# BLAS itself runs single-threaded inside each block (rnnkit/backends/threads.py says why).
PARALLEL = dict(JIT, parallel=True)


class Twin:
    """One driver built twice: serial (prange runs as range) and parallel. `twin(blocks, *args)`
    runs the parallel build when the work is cut into several blocks and more than one thread
    runs (rnnkit/backends/threads.py), else the serial one; both give the same bits.

    The parallel build gets its own function name: Numba's cache keys on the name, not the
    flags, and would otherwise hand one build's machine code to the other.

    In the parallel build, an array expression outside prange (`a += b[i]` on slices) becomes
    a parallel region of its own; in a loop that is one region per iteration (the GRU's bias
    sum once ran thousands of regions a call). Such loops belong in a serial @njit helper.
    """

    def __init__(self, fn):
        twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_parallel",
                                  fn.__defaults__, fn.__closure__)
        twin.__qualname__ = fn.__qualname__ + "_parallel"
        twin.__module__ = fn.__module__
        self.serial, self.parallel = numba.njit(**JIT)(fn), numba.njit(**PARALLEL)(twin)
        self.__doc__ = fn.__doc__

    def __call__(self, blocks, *args):
        if blocks > 1 and numba.get_num_threads() > 1:
            return self.parallel(*args)
        return self.serial(*args)
