"""rnnkit/blas_start.py: an OpenBLAS that cannot start its threads raise()s SIGINT as it loads;
that is an error of its own, a user's Ctrl-C stays one."""
import os
import signal
import subprocess

import pytest

from rnnkit import blas_start
from rnnkit.errors import RnnkitError


@pytest.fixture
def caught(monkeypatch):
    """The SIGINTs this process's handler sees."""
    seen = []
    before = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    yield seen
    signal.signal(signal.SIGINT, before)


def test_openblas_s_own_sigint_is_an_error_not_a_ctrl_c(monkeypatch, caught):
    # before: "stopped before the first step: stopped by SIGINT", exit 75, requeued for ever
    monkeypatch.setattr(blas_start, "_imports",
                        lambda scipy: os.kill(os.getpid(), signal.SIGINT))   # as OpenBLAS does
    with pytest.raises(RnnkitError, match="OpenBLAS could not start its threads"):
        blas_start.load()
    assert caught == []


def test_a_user_s_ctrl_c_while_loading_is_delivered(monkeypatch, caught):
    monkeypatch.setattr(blas_start, "_imports", lambda scipy: subprocess.run(
        ["kill", "-INT", str(os.getpid())], check=True))
    blas_start.load()
    assert caught == [signal.SIGINT]
