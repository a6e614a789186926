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


def serial_and_parallel(fn):
    """Two builds of one driver: serial (prange runs as range) for small work such as
    sampling one token, where waking threads costs more than it saves; parallel otherwise.

    The parallel build gets its own function name: Numba's cache keys on the name, not the
    flags, and would otherwise hand one build's machine code to the other.

    In the parallel build, an array expression outside prange (`a += b[i]` on slices) becomes
    a parallel region of its own; in a loop that is one region per iteration (seen here: the
    GRU's bias sum ran 4096 regions a call and halved its backward). Such loops belong in a
    serial @njit helper.
    """
    twin = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_parallel",
                              fn.__defaults__, fn.__closure__)
    twin.__qualname__ = fn.__qualname__ + "_parallel"
    twin.__module__ = fn.__module__
    return numba.njit(**JIT)(fn), numba.njit(**PARALLEL)(twin)

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
