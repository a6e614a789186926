"""Loading numpy's and scipy's BLAS so that a failure to start its threads reads as what it is.

An OpenBLAS that cannot create its threads as it loads (a process-count limit: `ulimit -u`, a
batch system's cap) prints four lines and raise()s SIGINT. rnnkit took that for a Ctrl-C: train
stopped before its first step with exit 75, which a batch script requeues, again and again.
SIGINT waits (blocked) while the libraries load; one left pending is then read: OpenBLAS's
comes from this process (its pid as the sender), a user's from outside (a terminal: the
kernel; kill: another process), and is delivered as it came.
"""
import os
import signal
import threading

from rnnkit.errors import RnnkitError


def load(scipy=True):
    """Import numpy (and scipy's BLAS, which Numba's np.dot calls, with `scipy`); RnnkitError
    where OpenBLAS could not start its threads."""
    if threading.current_thread() is not threading.main_thread():
        return _imports(scipy)
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    own = user = False
    try:
        _imports(scipy)
    finally:
        while (info := signal.sigtimedwait({signal.SIGINT}, 0)) is not None:
            if info.si_pid == os.getpid():
                own = True
            else:
                user = True
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
    if user:
        os.kill(os.getpid(), signal.SIGINT)     # the user's Ctrl-C, to its handler now
    if own:
        raise RnnkitError(f"OpenBLAS could not start its threads: the limit on processes "
                          f"(ulimit -u, {_nproc()}) is reached; raise it, or run with "
                          f"OPENBLAS_NUM_THREADS=1")


def _imports(scipy):
    import numpy  # noqa: F401
    if scipy:
        try:
            import scipy.linalg  # noqa: F401
        except ImportError:
            pass


def _nproc():
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    return "unlimited" if soft == resource.RLIM_INFINITY else f"{soft}"
