"""One `threads` setting for the whole process.

The kernels split each batch into one block of streams (or rows) per thread with Numba's
prange, and every BLAS call runs single-threaded inside its block. BLAS's own threads would
spin between the many small per-step products and compete with Numba's threads for the
cores (parallel=True plus OpenBLAS threads ran 10-80x slower here); measured here, even a
serial kernel ran its gate math 1.6x slower beside two spinning OpenBLAS threads. So: Numba
threads = `threads` (OpenMP layer where there is one: rnnkit/config.py says why), and BLAS
threads = 1.
"""
import os

from threadpoolctl import threadpool_limits

import rnnkit.config  # noqa: F401  picks the threading layer before Numba starts one

_limits = None


def available_cores():
    """Cores this process may use: SLURM's allocation, else the CPU affinity mask."""
    slurm = os.environ.get("SLURM_CPUS_PER_TASK")
    if slurm and slurm.isdigit():
        return int(slurm)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def limit_blas():
    """BLAS runs single-threaded inside the kernels' blocks (applied when kernels load)."""
    global _limits
    import scipy.linalg.cython_blas  # noqa: F401  numba's BLAS: load it so the limit reaches it

    _limits = threadpool_limits(limits=1, user_api="blas")


def set_threads(n=None):
    """Use `n` threads (default: all cores) for the kernels, and one for each BLAS call."""
    import numba

    n = available_cores() if not n else int(n)
    n = max(1, min(n, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    limit_blas()
    return n
