"""One `threads` setting for the whole process.

All matrix products, the per-step recurrent ones inside the kernels included, go through one
BLAS (the one Numba's np.dot calls), and the element-wise kernels are serial. So the only
thread pool that matters is BLAS's: no Numba parallel region ever competes with spinning BLAS
threads, which is what made parallel=True plus OpenBLAS run 10-80x slower here.
"""
import os

from threadpoolctl import threadpool_limits

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


def set_threads(n=None):
    """Limit every BLAS library loaded in this process to `n` threads (default: all cores)."""
    global _limits
    from rnnkit import kernels  # noqa: F401  load numba's BLAS first so the limit reaches it

    n = available_cores() if not n else int(n)
    _limits = threadpool_limits(limits=n, user_api="blas")
    return n
