"""Two process-wide settings for the test run.

Under Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1) each CUDA thread is a Python thread and
every barrier waits for the interpreter to switch threads: a short switch interval makes the
simulated kernels about ten times faster.

A suite started under `nohup`, or with `&` by a shell without job control (a CI runner's
script), inherits SIGHUP or SIGINT ignored, and so do the rnnkit processes the tests start.
rnnkit leaves an ignored signal ignored, as it should (rnnkit/training/stop_signals.py), so the
tests of what a hang-up or Ctrl-C does would see nothing happen: the run takes them back as a
terminal gives them.
"""
import signal
import sys

from numba.core.config import ENABLE_CUDASIM

if ENABLE_CUDASIM:
    sys.setswitchinterval(2e-5)

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
