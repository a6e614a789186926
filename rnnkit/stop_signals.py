"""Stopping cleanly on a signal: the training loop finishes its step and writes a checkpoint.

SIGINT (Ctrl-C), SIGTERM (kill, docker stop) and SIGUSR1 (what SLURM sends ahead of the time
limit with --signal=USR1@120) only set a flag that the loop reads after each step. A second
SIGINT raises KeyboardInterrupt at once: the last checkpoint on disk is intact either way.
"""
import signal
import threading


class StopSignals:
    """SIGINT, SIGTERM, SIGUSR1: note the first and let the loop stop after its step."""

    NAMES = ("SIGINT", "SIGTERM", "SIGUSR1")

    def __init__(self):
        self.received = None
        self.previous = {}

    def _handle(self, signum, frame):
        if self.received == "SIGINT" and signum == signal.SIGINT:
            raise KeyboardInterrupt     # second Ctrl-C: stop now
        self.received = signal.Signals(signum).name

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for name in self.NAMES:
                if hasattr(signal, name):
                    sig = getattr(signal, name)
                    self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
