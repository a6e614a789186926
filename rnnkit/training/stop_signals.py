"""Stopping cleanly on a signal: the training loop finishes its step and writes a checkpoint.

SIGINT (Ctrl-C), SIGTERM (kill, docker stop), SIGHUP (the terminal closed: ssh dropped, the
window shut) and SIGUSR1 (what SLURM sends ahead of the time limit with --signal=USR1@120) only
set a flag that the loop reads after each step. A second SIGINT raises KeyboardInterrupt at
once: the last checkpoint on disk is intact either way.

From the program's start (`install`) until the command is known, the same signals wait: `rnnkit
train` keeps them waiting (`defer`) through its set-up (imports, compiling), so that the loop
sees them before its first step and the run exits with 75 as it would later. Every other
command takes them at once (`undefer`): SystemExit on SIGTERM, SIGHUP and SIGUSR1,
KeyboardInterrupt on SIGINT, so the stack unwinds and temporary outputs are removed instead of
left behind. Never where Python would drop the exception (a finalizer, a weakref callback:
importlib runs one for each module lock while a command still imports): there it is raised
again 50 ms later.

Once a run has taken a signal (`taken`), no later one kills the process until it has left:
SIGTERM, SIGHUP and SIGUSR1 change nothing, a second Ctrl-C stops the loop at once (130), one
after the run has returned changes nothing (it leaves at once with 75, as every rank of an MPI
job does), and the command leaves with `leave`, without the interpreter's teardown (which
gives every signal its default action back: a second SIGTERM there killed the process, 143).
"""
import _thread
import os
import signal
import sys
import threading

NAMES = ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1")
_deferring = False
_pending = None
stopping = False                # a signal is unwinding the stack (KeyboardInterrupt, SystemExit)
_raised = None                  # the signal whose exception _stop raised last
taken = None                    # the signal a training run stopped on (StopSignals)
_interrupted = False            # a Ctrl-C came while signals wait: the next one stops at once
_hooks = []                     # sys.unraisablehook before install()


def _early(signum, frame):
    global _pending, _interrupted
    name = signal.Signals(signum).name
    if taken:       # the run has stopped on a signal and leaves at once (75)
        return
    if _deferring:
        if name == "SIGINT":
            if _interrupted:
                _stop(signum, frame)
            _interrupted = True
        _pending = _pending or name
        return
    _stop(signum, frame)


def _stop(signum, frame):
    """KeyboardInterrupt for SIGINT, else SystemExit(128 + signum); again in 50 ms instead
    when raising it now would be lost (_unsafe)."""
    if _unsafe(frame):
        _later(signum)
        return
    global stopping, _raised
    stopping, _raised = True, signum
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def leave(code):
    """Exit now with `code`, without the interpreter's teardown: once a signal has stopped the
    command, a later one must not meet the default action that the teardown gives back, and a
    signal that stopped Numba's compiler mid-way can crash it there. Its stack has unwound
    already: files are closed, temporaries removed."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:       # a reader gone
            pass
    os._exit(code)


def _later(signum):
    """_stop(signum) again in 50 ms, from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        _thread.interrupt_main(signum)
        return
    signal.signal(signal.SIGALRM, lambda _, frame: _stop(signum, frame))
    signal.setitimer(signal.ITIMER_REAL, 0.05)


def _unsafe(frame):
    """Whether an exception raised in `frame` would be lost or leave a wreck: in a finalizer
    or a callback from C Python prints it and carries on, and LLVM's objects (Numba compiles
    with them) half made break later."""
    if frame is not None and frame.f_code.co_name == "__del__":
        return True
    while frame is not None:
        if f"{os.sep}llvmlite{os.sep}" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False


def _swallowed(unraisable):
    """sys.unraisablehook: an exception _stop raised where Python could only print it (in a
    weakref callback, as importlib's module locks run, or another finalizer _unsafe cannot
    see) would leave the command running: it is raised again in 50 ms."""
    if _raised is not None and isinstance(unraisable.exc_value, (KeyboardInterrupt,
                                                                 SystemExit)):
        _later(_raised)
        return
    (_hooks[0] if _hooks else sys.__unraisablehook__)(unraisable)


def _ours(names):
    """The signals of `names` this process may handle: from the main thread, those the system
    has, not those ignored by whoever started it (`nohup` ignores SIGHUP: the run goes on)."""
    if threading.current_thread() is not threading.main_thread():
        return []
    sigs = [getattr(signal, name) for name in names if hasattr(signal, name)]
    return [sig for sig in sigs if signal.getsignal(sig) is not signal.SIG_IGN]


def install():
    """At the program's start: the signals wait until the command says what they do (defer or
    undefer)."""
    if sys.unraisablehook is not _swallowed:
        _hooks[:] = [sys.unraisablehook]
        sys.unraisablehook = _swallowed
    defer()


def undefer():
    """From now on SIGTERM, SIGHUP and SIGUSR1 unwind the stack (SystemExit) instead of
    killing outright, and SIGINT raises KeyboardInterrupt as Python's own handler does but
    never where it would be lost (_stop); a signal that came while they waited does so now."""
    global _deferring, _pending, taken, _interrupted
    _deferring, taken, _interrupted = False, None, False
    for sig in _ours(NAMES):
        signal.signal(sig, _early)
    pending, _pending = _pending, None
    if pending:
        _stop(getattr(signal, pending), None)


def defer():
    """From now on SIGINT, SIGTERM, SIGHUP and SIGUSR1 wait for the training loop
    (StopSignals)."""
    global _deferring, taken
    _deferring, taken = True, None      # a Ctrl-C that came before still counts (_interrupted)
    for sig in _ours(NAMES):
        signal.signal(sig, _early)


class StopSignals:
    """SIGINT, SIGTERM, SIGHUP, SIGUSR1: note the first and let the loop stop after its
    step."""

    NAMES = NAMES

    def __init__(self):
        self.received = None
        self.previous = {}

    def _handle(self, signum, frame):
        global taken, _interrupted
        if signum == signal.SIGINT:
            if _interrupted:
                _stop(signum, frame)    # second Ctrl-C, whatever came between: stop now
            _interrupted = True
        self.received = taken = signal.Signals(signum).name

    def __enter__(self):
        global _pending, taken, _interrupted
        self.received = taken = _pending
        _interrupted = _interrupted and _pending is not None     # this command's Ctrl-C only
        _pending = None
        for sig in _ours(self.NAMES):
            self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        global _interrupted
        _interrupted = False            # a later run of this process starts afresh (the API)
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
