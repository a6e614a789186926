"""Compile flags for every CPU kernel, read from here and nowhere else.

Numba's on-disk cache keys a function on its own file only: it misses edits in modules the
function calls, and it ignores flags chosen at run time. So the cache lives in a folder named by
a hash of every kernel source (all of rnnkit/kernels/), the flags, the Numba version and the
CPU the kernels compile for (rnnkit/kernels/cpu/target.py); any change gives a fresh folder.
(Numba's own index keys on the CPU too, but a look for a kernel in the cache, `in_cache`,
would not.)
"""
import contextlib
import fcntl
import hashlib
import os
import types
from pathlib import Path

import numba

from rnnkit.kernels.cpu import target   # first: it sets the CPU before anything compiles

# No fast-math flags at all. With reassociation or contraction, LLVM's result depends on what
# it inlines, and a kernel compiled in this process inlines its callees while one loaded from
# the cache calls them: the same run gave different losses on a fresh and a warm cache. With
# IEEE semantics every build (cached or not, serial or parallel, any optimisation level) gives
# the same bits; kernels/cpu/lanes.py supplies the fused multiply-adds and the vector reductions
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


# OpenMP first: it starts a parallel region a hundred times sooner than the workqueue layer
# (whose threads sleep), which matters with a region per time step. Its workers spin between
# regions; the governor (rnnkit/threads.py) runs fewer when other work needs the cores.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]


def _cache_dir():
    digest = hashlib.sha256(numba.__version__.encode() + repr(FASTMATH).encode() +
                            repr(target.KEY).encode())
    root = Path(__file__).resolve().parents[1]          # rnnkit/kernels
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
    base = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rnnkit", "numba")
    return os.path.join(base, digest.hexdigest()[:16])


if CACHE:
    numba.config.CACHE_DIR = _cache_dir()


@contextlib.contextmanager
def cache_lock(name, wait=True):
    """An exclusive lock on the file `name` in the cache folder, for compiling that processes
    sharing the cache take in turn. Yields True once held (with wait: after its holder lets
    go, its kernels then in the cache), False while another holds it (without wait). No cache,
    a read-only one or a filesystem without locks: True at once, each process on its own. The
    kernel releases a dead holder's lock."""
    fd = None
    if CACHE:
        try:
            os.makedirs(numba.config.CACHE_DIR, exist_ok=True)
            fd = os.open(os.path.join(numba.config.CACHE_DIR, name), os.O_RDWR | os.O_CREAT,
                         0o644)
        except OSError:
            fd = None
    try:
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            except OSError:
                pass
        yield True
    finally:
        if fd is not None:
            os.close(fd)            # closing releases the lock


def in_cache(qualname):
    """Whether the on-disk cache holds a compiled `module.function` of these kernels (a look
    for its index file), e.g. "lstm._forward_parallel"."""
    return CACHE and any(Path(numba.config.CACHE_DIR).glob(f"**/{qualname}-*.nbi"))
