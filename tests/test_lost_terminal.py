"""A lost terminal or a reader that leaves never loses work: SIGHUP checkpoints and exits 75,
a closed pipe stops the printing and not the training, and the temporaries of killed writers
are removed by the next writer into their folder. Real processes, real pipes, real signals."""
import os
import pty
import select
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from rnnkit.training import checkpoint
from rnnkit import files
from rnnkit.cli.main import main
from rnnkit.training.log import read_records
from tests.tiny_run import make_corpus

SMALL = ["--batch-size", "4", "--seq-len", "8", "--hidden", "16", "--embed", "8", "--layers",
         "1", "--threads", "1", "--log-every", "1"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("lost"))


def rnnkit(*args):
    return [sys.executable, "-m", "rnnkit", *map(str, args)]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def same_state(a, b):
    """Two checkpoints hold the same weights and optimizer state, bit for bit."""
    a, b = checkpoint.load(a), checkpoint.load(b)
    assert a.step == b.step
    for name in a.weights:
        assert np.array_equal(a.weights[name], b.weights[name]), name
    for name, buf in a.optimizer["buffers"].items():
        assert np.array_equal(buf, b.optimizer["buffers"][name]), name


def read_until(fd, marker, timeout=300):
    seen = b""
    end = time.monotonic() + timeout
    while marker not in seen and time.monotonic() < end:
        if select.select([fd], [], [], 1.0)[0]:
            seen += os.read(fd, 4096)
    assert marker in seen, seen.decode(errors="replace")
    return seen


def test_a_lost_terminal_checkpoints_and_resumes_bit_for_bit(corpus, tmp_path):
    master, slave = pty.openpty()
    p = subprocess.Popen(rnnkit("train", corpus, "-o", tmp_path / "run", *SMALL,
                                "--max-steps", 10**6, "--eval-every", 50),
                         stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    try:
        read_until(master, b"tok/s")            # the progress bar: training runs
    finally:
        os.close(master)                        # the terminal is gone: writes fail (EIO)
    time.sleep(0.5)
    p.send_signal(signal.SIGHUP)
    assert p.wait(timeout=120) == 75
    step = checkpoint.read_meta(tmp_path / "run" / "latest.h5")["step"]
    assert step > 0
    assert read_records(tmp_path / "run" / "metrics.jsonl")[-1] == {
        "event": "stop", "step": step, "reason": "stopped by SIGHUP"}
    resumed = invoke("train", "--resume", tmp_path / "run", "--max-steps", step + 7, "-q")
    assert resumed.exit_code == 0, resumed.output
    whole = invoke("train", corpus, "-o", tmp_path / "whole", *SMALL, "--max-steps", step + 7,
                   "--eval-every", 50, "-q")
    assert whole.exit_code == 0, whole.output
    same_state(tmp_path / "run" / "latest.h5", tmp_path / "whole" / "latest.h5")


def test_sighup_is_left_alone_under_nohup(corpus, tmp_path):
    p = subprocess.Popen(rnnkit("train", corpus, "-o", tmp_path / "run", *SMALL, "-q",
                                "--max-steps", 3000, "--eval-every", 1000),
                         stderr=subprocess.PIPE,
                         preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    time.sleep(1.0)
    p.send_signal(signal.SIGHUP)
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err
    assert checkpoint.read_meta(tmp_path / "run" / "latest.h5")["step"] == 3000


@pytest.mark.parametrize("lines", [1, 3])
def test_a_reader_that_leaves_stops_the_printing_not_the_training(corpus, tmp_path, lines):
    """`rnnkit train ... 2>&1 | head -N`: head exits, the run goes on to its end."""
    train = subprocess.Popen(rnnkit("train", corpus, "-o", tmp_path / "run", *SMALL,
                                    "--max-steps", 200, "--eval-every", 20),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    head = subprocess.Popen(["head", f"-{lines}"], stdin=train.stdout, stdout=subprocess.PIPE)
    train.stdout.close()
    shown = head.communicate(timeout=300)[0].decode()
    assert train.wait(timeout=300) == 0
    assert len(shown.splitlines()) == lines
    run = tmp_path / "run"
    assert checkpoint.read_meta(run / "latest.h5")["step"] == 200
    assert checkpoint.read_meta(run / "best.h5")["step"] > 0
    records = read_records(run / "metrics.jsonl")
    assert records[-1]["event"] == "stop" and max(r["step"] for r in records) == 200


@pytest.mark.parametrize("command", [
    ["generate", "{run}/latest.h5", "--length", 100000, "--seed", 1],
    ["score", "{run}/latest.h5", "{text}"],
])
def test_generate_and_score_into_a_closed_pipe_end_quietly(corpus, tmp_path, command):
    assert invoke("train", corpus, "-o", tmp_path / "run", *SMALL, "-q",
                  "--max-steps", 2).exit_code == 0
    (tmp_path / "t.txt").write_text("the quick brown fox\n" * 20000)
    args = [str(a).format(run=tmp_path / "run", text=tmp_path / "t.txt") for a in command]
    p = subprocess.Popen(rnnkit(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.read(10)
    p.stdout.close()                            # the reader leaves
    err = p.stderr.read().decode()
    assert p.wait(timeout=300) == 1
    assert err == "", err


# -- temporaries of killed writers ------------------------------------------------------------

def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_the_next_writer_removes_a_dead_writers_temporaries(corpus, tmp_path):
    assert invoke("train", corpus, "-o", tmp_path / "run", *SMALL, "-q",
                  "--max-steps", 2).exit_code == 0
    out = tmp_path / "out"
    out.mkdir()
    dead, live = dead_pid(), os.getpid()
    stale = [out / f".sample.txt.{dead}-{files.HOST}.0badf00d.tmp",
             out / f".corpus.h5.{dead}.12345678.tmp"]          # named as before HOST
    kept = [out / f".sample.txt.{live}-{files.HOST}.0badf00d.tmp",   # a writer that runs
            out / f".sample.txt.{dead}-00beef.0badf00d.tmp",       # another machine's
            out / ".notes.txt.tmp"]                                # not one of ours
    for path in stale + kept:
        path.write_bytes(b"x" * 1000)
    result = invoke("generate", tmp_path / "run" / "latest.h5", "--length", 5, "--seed", 1,
                    "-o", out / "new.txt")
    assert result.exit_code == 0, result.output
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept)


@pytest.mark.parametrize("sig,code,said", [(signal.SIGHUP, 129, ""),
                                           (signal.SIGINT, 130, "interrupted")])
def test_generate_stopped_removes_its_temporary(corpus, tmp_path, sig, code, said):
    assert invoke("train", corpus, "-o", tmp_path / "run", *SMALL, "-q",
                  "--max-steps", 2).exit_code == 0
    p = subprocess.Popen(rnnkit("generate", tmp_path / "run" / "latest.h5", "--length", 10**7,
                                "--seed", 1, "-o", tmp_path / "out.txt"),
                         stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 300
    while not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]:
        assert time.monotonic() < end and p.poll() is None
        time.sleep(0.05)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode == code and err.strip() == said, err
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp") or n == "out.txt"]


# -- the progress line -------------------------------------------------------------------------

SWALLOWED = r"""
import os, signal, sys, time, weakref
from rnnkit.training import stop_signals
stop_signals.install()
stop_signals.undefer()


class Held:
    pass


def callback(ref):
    os.kill(os.getpid(), getattr(signal, sys.argv[1]))
    for _ in range(10000):      # the handler runs in here
        pass


held = Held()
ref = weakref.ref(held, callback)
try:
    del held
    end = time.monotonic() + 10
    while time.monotonic() < end:
        time.sleep(0.001)
    print("lost")
except KeyboardInterrupt:
    print("interrupted")
"""


@pytest.mark.parametrize("sig,code,said", [("SIGINT", 0, "interrupted"), ("SIGTERM", 143, "")])
def test_a_signal_in_a_weakref_callback_still_stops(sig, code, said):
    """Python prints and drops an exception raised in a weakref callback, where importlib's
    module locks run while a command is still importing (a Ctrl-C there once left `rnnkit
    generate` writing): the stop is raised again after the callback, and nothing printed."""
    p = subprocess.run([sys.executable, "-c", SWALLOWED, sig], capture_output=True, text=True,
                       timeout=60)
    assert (p.returncode, p.stdout.strip(), p.stderr) == (code, said, "")


def test_the_progress_line_fits_the_terminal():
    import fcntl
    import struct
    import termios

    from rnnkit.training.log import ProgressBar

    master, slave = pty.openpty()
    try:
        with open(slave, "w", closefd=False) as stream:
            for cols in (100, 60, 45, 30):
                fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, cols, 0, 0))
                bar = ProgressBar(65200, stream=stream)
                bar.update(1234, 3.5845, 171134.0, 18000.0)
                shown = os.read(master, 4096).decode().split("\x1b[2K")[-1]
                assert 0 < len(shown) < cols, (cols, shown)
                assert ("[" in shown) == (cols == 100), shown     # the bar goes first
                assert ("tok/s" in shown) == (cols >= 60), shown  # then the rate (before: the
                assert "ETA 5:00:00" in shown, shown              # ETA was cut off first)
                assert shown.startswith("step 1234/65200")
            # before: a blank line between the last message and what follows the bar
            bar.message("step 1234: val loss 3.4")
            bar.close()
            stream.flush()
            shown = os.read(master, 4096).decode()
            assert shown.endswith("val loss 3.4\r\n"), repr(shown)   # the pty's \r\n
    finally:
        os.close(master)
        os.close(slave)


def test_a_dumb_terminal_gets_no_escape_codes(monkeypatch):
    # before: \x1b[2K, shown as ^[[2K by Emacs' shell (TERM=dumb)
    from rnnkit.training.log import ProgressBar

    monkeypatch.setenv("TERM", "dumb")
    master, slave = pty.openpty()
    try:
        with open(slave, "w", closefd=False) as stream:
            bar = ProgressBar(100, stream=stream)
            bar.update(12, 3.5, 1000.0, 60.0)
            bar.message("step 12: val loss 3.4")
            stream.flush()
            shown = ""
            while "val loss 3.4" not in shown and select.select([master], [], [], 5)[0]:
                shown += os.read(master, 4096).decode()     # the two writes may come apart
        assert "step 12/100" in shown and "val loss 3.4" in shown, shown
        assert "\x1b" not in shown, shown
    finally:
        os.close(master)
        os.close(slave)
