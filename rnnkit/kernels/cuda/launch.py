"""Launch shapes and compile flags for every CUDA kernel, read from here and nowhere else.

Under Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1) a kernel runs as Python, one Python
thread per CUDA thread and one block after another, so the shapes shrink there: a few threads
per block and a few blocks per grid, which still makes tiny test inputs span several blocks
and several grid-stride passes. Tests may patch these names (as stumpy patches
THREADS_PER_BLOCK); kernels read them at launch, or, in compiled code, as constants.

Every launch goes through `launch()`, so the tests can record the argument types of each one
and check them against the signatures that tests/test_cuda_ptx.py compiles to PTX.
"""
import numpy as np
from numba import cuda, types
from numba.core.config import ENABLE_CUDASIM as SIMULATOR
from numba.np.numpy_support import from_dtype

# One folder of compiled kernels for both backends (kernels/cache.py).
from rnnkit.kernels.cache import CACHE, protect

# IEEE arithmetic, as on the CPU (kernels/cpu/compile.py): the same build gives the same bits.
JIT = dict(cache=CACHE and not SIMULATOR, fastmath=False)
if JIT["cache"]:
    try:
        from numba.cuda.core import caching     # numba-cuda's own copy of Numba's classes
    except ImportError:                         # older numba-cuda: Numba's, protected already
        caching = None
    if caching is not None:
        protect(caching)
DEVICE = dict(device=True, fastmath=False)

# 1-D kernels: threads per block (a power of two: the reductions are trees) and the most
# blocks of a grid-stride launch.
THREADS = 2 if SIMULATOR else 256
BLOCKS = 3 if SIMULATOR else 4096
# Reductions split into at most this many block sums, a function of the length only, so the
# order of additions is the same on every device.
REDUCE_BLOCKS = 3 if SIMULATOR else 512
# Every shared buffer is dynamic (sized at launch): the simulator hands out a static
# `cuda.shared.array(shape, ...)` lazily per thread without a lock, so two threads of a block
# can get different arrays and a reduction reads garbage (seen as rare wrong losses).

# Tiled products (gemm.py): TS x TS threads, each an R x R tile of C, K in steps of BK. (The
# simulator's single thread per block keeps its barriers cheap; tests/test_cuda_kernels.py
# runs the products with several.)
TS = 1 if SIMULATOR else 16
R = 4
BK = 8 if SIMULATOR else 16
GEMM_BLOCKS = 3 if SIMULATOR else 65535

# Recurrences (recurrent.py): a block is WARPS warps of LANES threads; each thread keeps a
# CR x NR tile of the step's product (slice rows x streams) in registers; the most hidden
# units one block owns. The simulator's small warps make tiny layers span several warps,
# tiles and blocks (UNITS: a block's units there, 0: as many as spread H over the SMs).
LANES = 2 if SIMULATOR else 32
WARPS = 2 if SIMULATOR else 8
CR, NR = 2 if SIMULATOR else 4, 2 if SIMULATOR else 4
UNITS = 8
STEP_UNITS = 2 if SIMULATOR else 0

# Sampling: rows of at most this many tokens are drawn by one thread each, longer ones by a
# block each (sample.py).
ROW_V = 256

# Set to a list by tests: each launch appends (kernel, argument types).
RECORD = None
# Kernel launches and library calls (cuBLAS products) so far: the bench and the tests read
# the difference across a step.
COUNT = [0]


def blocks_for(n, threads=None, cap=None):
    """Blocks of a grid-stride launch over n items."""
    threads = threads or THREADS
    return max(1, min(cap or BLOCKS, -(-int(n) // threads)))


def launch(kernel, blocks, threads, *args, shared=0, cooperative=False):
    """kernel[blocks, threads, 0, shared](*args), recorded when RECORD is a list. cooperative:
    a cooperative launch (the driver starts all blocks at once or refuses; Numba launches a
    kernel so when its `cooperative` flag is set, which only grid-group code sets itself)."""
    COUNT[0] += 1
    if RECORD is not None:
        RECORD.append((kernel, tuple(arg_type(a) for a in args)))
    if not cooperative or SIMULATOR:
        kernel[blocks, threads, 0, shared](*args)
        return
    compiled = kernel.compile(tuple(arg_type(a) for a in args))
    compiled.cooperative = True
    try:
        kernel[blocks, threads, 0, shared](*args)
    finally:
        compiled.cooperative = False


def opt_in(compiled, shared):
    """Let a compiled kernel launch with `shared` bytes of dynamic shared memory (above the
    48 KB every kernel may have). Numba has no public call for it: its function handle is a
    CUkernel (library-loaded, numba-cuda >= 0.2x) or a CUfunction (older)."""
    from numba.cuda.cudadrv.driver import binding, driver
    fn = compiled._codelibrary.get_cufunc()
    attr = binding.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
    if type(fn.handle).__name__ == "CUkernel":
        driver.cuKernelSetAttribute(attr, int(shared), fn.handle, fn.device.id)
    else:
        driver.cuFuncSetAttribute(fn.handle, attr, int(shared))


def arg_type(a):
    """The Numba type a launch argument takes: 1-D C arrays and scalars only."""
    if isinstance(a, (bool, np.bool_)):
        return types.boolean
    if isinstance(a, (int, np.integer)):
        return types.int64 if not isinstance(a, np.integer) else from_dtype(a.dtype)
    if isinstance(a, float):
        return types.float64
    if isinstance(a, np.floating):
        return from_dtype(a.dtype)
    if a.ndim != 1:
        raise TypeError(f"kernels take flat arrays, got {a.ndim}-D")
    return types.Array(from_dtype(np.dtype(a.dtype)), 1, "C")


_CODES = {"i": types.int64, "u": types.uint32, "b": types.boolean, "D": types.float64,
          "I": types.Array(types.int64, 1, "C"), "d": types.Array(types.float64, 1, "C")}


def signature(codes, dtype):
    """Argument types from one letter per argument: a, a 1-D C array of `dtype`; f, a scalar of
    `dtype`; d, a float64 array; D, a float64 scalar; I, an int64 array; i, an int64; u, a
    uint32; b, a boolean."""
    dt = from_dtype(np.dtype(dtype))
    out = []
    for c in codes.replace(" ", ""):
        out.append(types.Array(dt, 1, "C") if c == "a" else dt if c == "f" else _CODES[c])
    return tuple(out)


FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
# the recurrences' kernels (recurrent.steps_kernel): w_h, b, b2, src, a0..a6, acc, T, N, H,
# t0, count, flag, U, KC, NS, bar, base, blocks
STEPS = "aaaa aaaaaaa d iiiiii iii Iii"
F64 = (np.dtype(np.float64),)


def jit(fn):
    return cuda.jit(**JIT)(fn)


def device(fn):
    return cuda.jit(**DEVICE)(fn)

