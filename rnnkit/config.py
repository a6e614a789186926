"""Compile flags for every kernel, read from here and nowhere else.

Numba's on-disk cache keys a function on its own file only: it misses edits in modules the
function calls, and it ignores flags chosen at run time. So the cache lives in a folder named by
a hash of all kernel sources, the flags and the Numba version; any change gives a fresh folder.
"""
import hashlib
import os
import types
from pathlib import Path

import numba

# No fast-math flags at all. With reassociation or contraction, LLVM's result depends on what
# it inlines, and a kernel compiled in this process inlines its callees while one loaded from
# the cache calls them: the same run gave different losses on a fresh and a warm cache. With
# IEEE semantics every build (cached or not, serial or parallel, any optimisation level) gives
# the same bits; kernels/lanes.py supplies the fused multiply-adds and the vector reductions
# that the flags used to buy.
FASTMATH = False
CACHE = os.environ.get("RNNKIT_NO_CACHE", "") == ""

# error_model="numpy": no zero-division checks, which would stop loops from vectorising.
JIT = dict(cache=CACHE, fastmath=FASTMATH, error_model="numpy", nogil=True)
# Drivers split the batch (or the rows of a product) into one block per thread with prange;
# BLAS itself runs single-threaded inside each block (rnnkit/threads.py says why).
PARALLEL = dict(JIT, parallel=True)


class Twin:
    """One driver built twice: serial (prange runs as range) and parallel. `twin(blocks, *args)`
    runs the parallel build when the work is cut into several blocks and more than one thread
    runs (rnnkit/threads.py), else the serial one; both give the same bits.

    The parallel build gets its own function name: Numba's cache keys on the name, not the
    flags, and would otherwise hand one build's machine code to the other.

    In the parallel build, an array expression outside prange (`a += b[i]` on slices) becomes
    a parallel region of its own; in a loop that is one region per iteration (seen here: the
    GRU's bias sum ran 4096 regions a call and halved its backward). Such loops belong in a
    serial @njit helper.
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


# OpenMP first: it starts a parallel region in ~1 us here, the workqueue layer in ~120 us
# (sleeping threads), which costs more than a sampling step's whole work. Its workers spin
# between regions, but only on cores that our single-threaded BLAS leaves idle.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]


def _cache_dir():
    digest = hashlib.sha256(numba.__version__.encode() + repr(FASTMATH).encode())
    for path in sorted((Path(__file__).parent / "kernels").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    base = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rnnkit", "numba")
    return os.path.join(base, digest.hexdigest()[:16])


if CACHE:
    numba.config.CACHE_DIR = _cache_dir()


DRIVERS = {"lstm": "lstm._forward", "gru": "gru._forward", "rnn-tanh": "rnn._forward",
           "rnn-relu": "rnn._forward"}


def cached(cell, parallel):
    """Whether the on-disk cache holds this cell's forward driver (so the first step need not
    wait for the compiler): a look for its index file."""
    if not CACHE:
        return False
    name = DRIVERS[cell] + ("_parallel" if parallel else "")
    root = Path(numba.config.CACHE_DIR)
    return any(root.glob(f"**/{name}-*.nbi"))
