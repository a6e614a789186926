"""What each signal does while a run waits for its step (rnnkit/training/stop_signals.py)."""
import signal

import pytest

from rnnkit.training import stop_signals


@pytest.fixture
def signals(monkeypatch):
    """The module's state, put back after the test (handlers included)."""
    for name in ("_deferring", "_pending", "stopping", "_raised", "taken", "_interrupted"):
        monkeypatch.setattr(stop_signals, name, getattr(stop_signals, name, None), raising=False)
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield stop_signals
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.parametrize("between", [[], [signal.SIGTERM], [signal.SIGUSR1, signal.SIGHUP]])
def test_a_second_ctrl_c_stops_at_once_whatever_came_between(signals, between):
    # before: SIGINT, SIGTERM, SIGINT let the run go on to its checkpoint (75, not 130)
    with signals.StopSignals() as stop:
        stop._handle(signal.SIGINT, None)
        for sig in between:
            stop._handle(sig, None)
        with pytest.raises(KeyboardInterrupt):
            stop._handle(signal.SIGINT, None)


@pytest.mark.parametrize("first", [[signal.SIGINT, signal.SIGTERM],
                                   [signal.SIGTERM, signal.SIGINT]])
def test_while_a_run_sets_up_too(signals, first):
    # before: SIGTERM, SIGINT, SIGINT during the set-up did not stop at once
    signals.defer()
    for sig in first:
        signals._early(sig, None)
    with pytest.raises(KeyboardInterrupt):
        signals._early(signal.SIGINT, None)
    signals._pending = None


def test_other_signals_after_one_change_nothing(signals):
    with signals.StopSignals() as stop:
        for sig in (signal.SIGTERM, signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
            stop._handle(sig, None)
        assert stop.received == "SIGINT"


def test_a_run_after_one_stopped_by_ctrl_c_starts_afresh(signals):
    # the API: train() stopped by Ctrl-C, then another train() in the same process
    with signals.StopSignals() as stop:
        stop._handle(signal.SIGINT, None)
    with signals.StopSignals() as stop:
        stop._handle(signal.SIGINT, None)
        assert stop.received == "SIGINT"


def test_the_command_line_takes_the_signals_before_its_heavy_imports():
    # before: Ctrl-C in the first ~0.1 s of any command (click and the commands importing)
    # was a traceback: the handler came after them
    import subprocess
    import sys

    code = ("import signal, sys, rnnkit.cli; "
            "print('click' in sys.modules, signal.getsignal(signal.SIGINT).__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.split() == ["False", "_early"], done.stdout + done.stderr


def test_a_ctrl_c_before_train_s_set_up_still_counts(signals):
    # before: install(), a Ctrl-C while click imported, then train's defer() forgot it: the
    # next Ctrl-C in the run was taken as the first
    signals.install()
    signals._early(signal.SIGINT, None)
    signals.defer()
    with signals.StopSignals() as stop:
        with pytest.raises(KeyboardInterrupt):
            stop._handle(signal.SIGINT, None)
