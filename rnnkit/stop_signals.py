"""Stopping cleanly on a signal: the training loop finishes its step and writes a checkpoint.

SIGINT (Ctrl-C), SIGTERM (kill, docker stop) and SIGUSR1 (what SLURM sends ahead of the time
limit with --signal=USR1@120) only set a flag that the loop reads after each step. A second
SIGINT raises KeyboardInterrupt at once: the last checkpoint on disk is intact either way.

Before training is set up (imports, compiling), `defer()` makes the same signals wait: the
loop then sees them before its first step and the run exits with 75 as it would later. Every
other command gets SystemExit on SIGTERM and SIGUSR1 (`install`), so the stack unwinds and
temporary outputs are removed instead of left behind.
"""
import signal
import threading

NAMES = ("SIGINT", "SIGTERM", "SIGUSR1")
_deferring = False
_pending = None


def _early(signum, frame):
    global _pending
    name = signal.Signals(signum).name
    if _deferring:
        if _pending == "SIGINT" and name == "SIGINT":
            raise KeyboardInterrupt
        _pending = _pending or name
        return
    if name == "SIGINT":
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def install():
    """SIGTERM and SIGUSR1 unwind the stack (SystemExit) instead of killing outright."""
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGTERM", "SIGUSR1"):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), _early)


def defer():
    """From now on SIGINT, SIGTERM and SIGUSR1 wait for the training loop (StopSignals)."""
    global _deferring
    _deferring = True
    if threading.current_thread() is threading.main_thread():
        for name in NAMES:
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), _early)


class StopSignals:
    """SIGINT, SIGTERM, SIGUSR1: note the first and let the loop stop after its step."""

    NAMES = NAMES

    def __init__(self):
        self.received = None
        self.previous = {}

    def _handle(self, signum, frame):
        if self.received == "SIGINT" and signum == signal.SIGINT:
            raise KeyboardInterrupt     # second Ctrl-C: stop now
        self.received = signal.Signals(signum).name

    def __enter__(self):
        global _pending
        self.received, _pending = _pending, None
        if threading.current_thread() is threading.main_thread():
            for name in self.NAMES:
                if hasattr(signal, name):
                    sig = getattr(signal, name)
                    self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
