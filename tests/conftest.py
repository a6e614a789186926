"""Under Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1) each CUDA thread is a Python thread
and every barrier waits for the interpreter to switch threads: a short switch interval makes
the simulated kernels about ten times faster (a process-wide setting, for the test run)."""
import sys

from numba.core.config import ENABLE_CUDASIM

if ENABLE_CUDASIM:
    sys.setswitchinterval(5e-5)
