"""Faults: full disks, damaged files, busy and stale run folders, odd outputs, signals.

Each ends in one line on stderr and a non-zero exit, with nothing existing lost: the last
good checkpoint stays and resumes, no partial file appears under a final name.
"""
import json
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from rnnkit.training import checkpoint
from rnnkit import files
from rnnkit.cli.main import main
from rnnkit.lock import Busy, RunLock
from rnnkit.training.train import TrainError, resume, train
from tests.tiny_run import TEXT, make_corpus, tiny_config

SMALL = ["--batch-size", "4", "--seq-len", "8", "--hidden", "16", "--embed", "8", "--layers",
         "1", "--threads", "1", "--quiet"]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result, *words, code=1):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1, result.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def corpus(tmp_path):
    return make_corpus(tmp_path)


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MB tmpfs (root and mount(8) needed; skipped elsewhere)."""
    path = tmp_path / "small"
    path.mkdir()
    if not shutil.which("mount") or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)],
            capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    yield path
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(folder, leave):
    """Fill `folder`'s filesystem but `leave` bytes."""
    free = files.free_bytes(folder)
    with open(os.path.join(folder, "ballast"), "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def flip_byte(path, dataset):
    """Flip a byte in the middle of the first chunk of `dataset`."""
    with h5py.File(path, "r") as f:
        chunk = f[dataset].id.get_chunk_info(0)
    with open(path, "r+b") as fh:
        fh.seek(chunk.byte_offset + chunk.size // 2)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))


def flip_header(path, name):
    """Flip a byte inside the object header of `name` (a group or dataset; "/": the root),
    past its signature: HDF5 finds it by the header's checksum when it opens the object."""
    with h5py.File(path, "r") as f:
        at = h5py.h5o.get_info(f[name].id).addr
    with open(path, "r+b") as fh:
        fh.seek(at)
        assert fh.read(4) == b"OHDR"    # a version 2 header, which has a checksum
        fh.seek(at + 6)
        byte = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([byte[0] ^ 0xFF]))


# -- full disks ------------------------------------------------------------------------------

def test_checkpoint_on_a_full_disk_is_one_line_and_loses_nothing(corpus, small_disk, tmp_path):
    run = small_disk / "run"
    first = invoke("train", corpus, "-o", run, *SMALL, "--max-steps", 4)
    assert first.exit_code == 0, first.output
    fill(small_disk, leave=4096)
    result = invoke("train", "--resume", run, "--max-steps", 8, "--checkpoint-every", 2)
    line = one_line_error(result, "cannot write", "disk is full", "free")
    assert str(run) in line
    assert checkpoint.load(run / "latest.h5").step == 4         # the last good one, whole
    assert not [p for p in os.listdir(run) if p.endswith(".tmp")]
    os.unlink(small_disk / "ballast")
    again = invoke("train", "--resume", run, "--max-steps", 8)
    assert again.exit_code == 0, again.output
    assert checkpoint.load(run / "latest.h5").step == 8


def test_a_disk_that_fills_while_a_checkpoint_is_written(corpus, small_disk, monkeypatch):
    # the space check passed, then another writer took the space: the write fails, which is
    # the one-line error too, and the old file stays
    run = small_disk / "run"
    assert invoke("train", corpus, "-o", run, *SMALL, "--max-steps", 2).exit_code == 0
    ck = checkpoint.load(run / "latest.h5")
    # room to start the file (HDF5 writes its first 64 KiB then), not to finish it
    fill(small_disk, leave=150_000)
    monkeypatch.setattr(files, "check_space", lambda path, needed: None)
    big = dataclasses.replace(ck, step=3, state={"h": np.ones((4, 100_000), np.float32)})
    with pytest.raises(files.WriteError, match=r"cannot write .*latest\.h5: the disk is full"):
        checkpoint.save(run / "latest.h5", big)
    assert checkpoint.load(run / "latest.h5").step == 2
    assert sorted(os.listdir(run)) == sorted(["latest.h5", "best.h5", "config.toml",
                                              "metrics.jsonl", ".lock"])


def test_new_run_on_a_full_disk_leaves_no_folder(corpus, small_disk):
    fill(small_disk, leave=2048)
    result = invoke("train", corpus, "-o", small_disk / "run", *SMALL, "--max-steps", 2)
    one_line_error(result, "disk is full")
    assert not (small_disk / "run").exists()


def test_preprocess_on_a_full_disk(tmp_path, small_disk):
    text = tmp_path / "big.txt"
    text.write_bytes(os.urandom(1 << 20).hex().encode())        # 2 MB that barely compress
    result = invoke("preprocess", text, "-o", small_disk / "c.h5")
    one_line_error(result, "c.h5", "disk is full", "it needs")
    assert os.listdir(small_disk) == []


def test_a_write_error_is_one_line_with_the_space_needed(tmp_path, monkeypatch):
    """Without a mount: os.write reports ENOSPC."""
    import errno

    def no_space(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files.os, "write", no_space)
    with pytest.raises(files.WriteError, match=r"cannot write .*x\.bin: the disk is full "
                                                r"\(it needs 3 B, .* free in"):
        files.write_bytes(tmp_path / "x.bin", b"abc")
    assert os.listdir(tmp_path) == []


def _pair(tmp_path, old):
    paths = [tmp_path / "m.safetensors", tmp_path / "m.json"]
    for p in paths:
        p.write_text(old)
    return paths


def test_files_that_belong_together_stay_old_when_interrupted_while_syncing(tmp_path,
                                                                            monkeypatch):
    # before: the JSON was renamed into place while the weights still synced: a Ctrl-C
    # there left the new JSON beside the old weights
    paths = _pair(tmp_path, "old")
    synced = []

    def fsync(fd):
        synced.append(fd)
        if len(synced) == 2:
            raise KeyboardInterrupt

    from rnnkit.tools.safetensors import write_both
    monkeypatch.setattr(files.os, "fsync", fsync)
    with pytest.raises(KeyboardInterrupt):
        write_both(paths[0], b"new", paths[1], b"new")     # what export and ONNX export call
    assert [p.read_text() for p in paths] == ["old", "old"]
    assert sorted(os.listdir(tmp_path)) == ["m.json", "m.safetensors"]


def test_a_signal_during_the_renames_waits_until_both_are_in_place(tmp_path, monkeypatch):
    paths = _pair(tmp_path, "old")
    replace = os.replace

    def replace_then_signal(src, dst):
        replace(src, dst)
        os.kill(os.getpid(), signal.SIGINT)     # held until both files are new

    monkeypatch.setattr(files.os, "replace", replace_then_signal)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)   # not a run's handler
    try:
        with pytest.raises(KeyboardInterrupt):
            with files.atomic_all(paths) as tmps:
                for t in tmps:
                    open(t, "w").write("new")
    finally:
        signal.signal(signal.SIGINT, before)
    assert [p.read_text() for p in paths] == ["new", "new"]
    assert sorted(os.listdir(tmp_path)) == ["m.json", "m.safetensors"]


# -- damaged files ---------------------------------------------------------------------------

def test_a_flipped_byte_in_a_corpus_is_named(corpus, tmp_path):
    flip_byte(corpus, "train")
    result = invoke("train", corpus, "-o", tmp_path / "run", *SMALL, "--max-steps", 2)
    one_line_error(result, corpus, "/train", "checksum")
    assert not (tmp_path / "run").exists()
    assert invoke("info", corpus).exit_code == 0        # the description reads no tokens
    one_line_error(invoke("info", "--verify", corpus), "/train", "checksum")


def test_a_flipped_byte_in_a_checkpoint_is_named(corpus, tmp_path):
    assert invoke("train", corpus, "-o", tmp_path / "run", *SMALL, "--max-steps", 2).exit_code == 0
    ck = tmp_path / "run" / "latest.h5"
    flip_byte(ck, "weights/embed")
    one_line_error(invoke("generate", ck, "--length", 5), "weights/embed", "checksum")
    one_line_error(invoke("info", "--verify", tmp_path / "run"), "weights/embed")
    one_line_error(invoke("train", "--resume", tmp_path / "run", "--max-steps", 3),
                   "weights/embed")


def test_info_verify_checks_every_checkpoint_of_a_run(corpus, tmp_path):
    assert checkpoint.step_name(80) in " ".join(invoke("train", "-h").output.split())
    assert invoke("train", corpus, "-o", tmp_path / "run", *SMALL, "--max-steps", 6, "--keep",
                  2, "--checkpoint-every", 2).exit_code == 0
    kept = checkpoint.step_files(tmp_path / "run")
    assert [p.name for p in kept] == ["step-00000004.h5", "step-00000006.h5"]
    shown = invoke("info", "--verify", tmp_path / "run")
    assert shown.exit_code == 0 and "2 kept: step-00000004.h5, step-00000006.h5" in shown.output
    assert f"{kept[0]}: checksums: verified" in shown.output
    flip_byte(kept[0], "weights/embed")     # the older: latest.h5 and best.h5 are intact
    one_line_error(invoke("info", "--verify", tmp_path / "run"), "step-00000004.h5",
                   "weights/embed")


def test_truncated_files(corpus, tmp_path):
    cut = tmp_path / "cut.h5"
    data = open(corpus, "rb").read()
    cut.write_bytes(data[:len(data) // 2])
    one_line_error(invoke("info", cut), "cut.h5")
    one_line_error(invoke("train", cut, "-o", tmp_path / "run", *SMALL), "cut.h5")


def test_lines_of_metrics_that_are_not_records_are_left_out(corpus, tmp_path):
    """Valid JSON that is no record (a hand edit) made info and --resume internal errors."""
    run = tmp_path / "run"
    train(tiny_config(corpus, steps=2), run)
    with open(run / "metrics.jsonl", "a") as f:
        f.write('[1, 2]\n"text"\n{"step": null}\n{"step": "x", "train_loss": "abc"}\n'
                '{"step": 1, "train_loss": true}\n')
    assert invoke("info", run).exit_code == 0
    result = invoke("train", "--resume", run, "--max-steps", "3", "--quiet")
    assert result.exit_code == 0, result.output
    assert all(isinstance(json.loads(line), dict) for line in open(run / "metrics.jsonl"))


# -- run folders -----------------------------------------------------------------------------

def test_a_second_process_in_a_run_folder_is_refused(corpus, tmp_path):
    train(tiny_config(corpus, steps=2), tmp_path / "run")
    with RunLock(tmp_path / "run"):
        with pytest.raises(Busy, match=rf"in use by PID {os.getpid()}"):
            resume(tmp_path / "run", {"train": {"max_steps": 4}})
        result = invoke("train", "--resume", tmp_path / "run", "--max-steps", 4)
        one_line_error(result, "in use by PID")
    assert resume(tmp_path / "run", {"train": {"max_steps": 4}}).step == 4


def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_stale_lock_and_temporaries_are_taken_over(corpus, tmp_path):
    train(tiny_config(corpus, steps=2), tmp_path / "run")
    pid = dead_pid()
    (tmp_path / "run" / ".lock").write_text(f"{pid} somehost\n")       # no flock held
    stale = tmp_path / "run" / f".latest.h5.{pid}.0badf00d.tmp"
    stale.write_bytes(b"x" * 1000)
    live = tmp_path / "run" / f".latest.h5.{os.getpid()}.0badf00d.tmp"
    live.write_bytes(b"y")
    result = invoke("train", "--resume", tmp_path / "run", "--max-steps", 3)
    assert result.exit_code == 0, result.output
    assert f"removed {stale.name} (1.0 kB), left by a killed process" in result.output
    assert not stale.exists() and live.exists()         # a running writer's stays


def test_hand_edited_config_is_not_overwritten(corpus, tmp_path):
    train(tiny_config(corpus, steps=2), tmp_path / "run")
    path = tmp_path / "run" / "config.toml"
    path.write_text(path.read_text().replace("lr = 0.02", "lr = 0.5"))
    with pytest.raises(TrainError, match=r"edited .*\[optim\] lr 0.02 -> 0.5"):
        resume(tmp_path / "run", {"train": {"max_steps": 4}})
    assert "lr = 0.5" in path.read_text()


def test_checkpoints_follow_the_umask(corpus, tmp_path):
    old = os.umask(0o022)
    try:
        train(tiny_config(corpus, steps=2), tmp_path / "run")
    finally:
        os.umask(old)
    for name in ("latest.h5", "best.h5", "config.toml"):
        assert os.stat(tmp_path / "run" / name).st_mode & 0o777 == 0o644, name


# -- outputs that must not be replaced -------------------------------------------------------

def test_force_replaces_only_regular_files(tmp_path, corpus):
    text = tmp_path / "t.txt"
    one_line_error(invoke("preprocess", text, "-o", "/dev/null", "-f"), "device")
    os.mkfifo(tmp_path / "fifo")
    one_line_error(invoke("preprocess", text, "-o", tmp_path / "fifo", "-f"), "FIFO")
    (tmp_path / "target.h5").write_bytes(b"keep")
    os.symlink(tmp_path / "target.h5", tmp_path / "link.h5")
    one_line_error(invoke("preprocess", text, "-o", tmp_path / "link.h5", "-f"),
                   "symbolic link")
    assert (tmp_path / "target.h5").read_bytes() == b"keep"
    one_line_error(invoke("preprocess", text, "-o", text, "-f"), "also an input")
    assert text.read_text().startswith("line 0")
    one_line_error(invoke("preprocess", text, "--vocab-from", corpus, "-o", corpus, "-f"),
                   "also an input")


# -- signals ---------------------------------------------------------------------------------

def rnnkit(*args):
    return [sys.executable, "-m", "rnnkit", *map(str, args)]


@pytest.mark.slow               # fresh processes
@pytest.mark.parametrize("sig,code,said", [(signal.SIGTERM, 143, ""), (signal.SIGHUP, 129, ""),
                                           (signal.SIGINT, 130, "interrupted")])
def test_preprocess_stopped_by_a_signal_leaves_no_temporary(tmp_path, sig, code, said):
    text = tmp_path / "big.txt"
    text.write_bytes(b"the quick brown fox jumps over the lazy dog\n" * 2_000_000)  # 88 MB
    p = subprocess.Popen(rnnkit("preprocess", text, "-o", tmp_path / "c.h5", "--level", "word"),
                         stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == code and err.strip() == said, err
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp") or n == "c.h5"]


def handles(pid, sig):
    """Whether process `pid` has a handler for `sig` (from /proc: its caught-signals mask)."""
    with open(f"/proc/{pid}/status") as f:
        mask = next(line for line in f if line.startswith("SigCgt:")).split()[1]
    return bool(int(mask, 16) >> (sig - 1) & 1)


@pytest.mark.slow               # a fresh process
def test_sigterm_during_start_up_exits_75(corpus, tmp_path):
    p = subprocess.Popen(rnnkit("train", corpus, "-o", tmp_path / "run", *SMALL,
                                "--max-steps", 1000), stderr=subprocess.PIPE, text=True)
    while not handles(p.pid, signal.SIGTERM):   # from the first moment rnnkit handles it
        assert p.poll() is None
        time.sleep(0.001)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 75, err
    assert "Traceback" not in err


@pytest.mark.slow               # fresh processes
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, 75), (signal.SIGINT, 130)])
def test_a_second_signal_soon_after_the_first_never_kills_the_run(corpus, tmp_path, sig, code):
    """Python's teardown gave the signals their default action back: a second SIGTERM 50 ms
    after the first killed the stopping run (143) instead of letting it exit with 75. A second
    Ctrl-C stops at once (130, or 75 when the run was already leaving)."""
    p = subprocess.Popen(rnnkit("train", corpus, "-o", tmp_path / "run", *SMALL,
                                "--max-steps", 10 ** 7, "--epochs", 0),
                         stderr=subprocess.PIPE, text=True)
    while not (tmp_path / "run" / "metrics.jsonl").exists() or \
            "train_loss" not in (tmp_path / "run" / "metrics.jsonl").read_text():
        assert p.poll() is None
        time.sleep(0.05)
    p.send_signal(sig)
    time.sleep(0.05)
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    assert p.returncode in {code, 75} and "Traceback" not in err, err
    # 130: stopped before the first signal's checkpoint (on a loaded host), the start's stays
    step = checkpoint.read_meta(tmp_path / "run" / "latest.h5")["step"]
    assert step > 0 if p.returncode == 75 else step >= 0


def test_a_lost_latest_names_the_kept_checkpoint_that_can_replace_it(corpus, tmp_path):
    run = tmp_path / "run"
    cfg = tiny_config(corpus, steps=4)
    cfg.train.checkpoint_every, cfg.train.keep = 2, 2
    train(cfg, run)
    os.unlink(run / "latest.h5")
    hint = f"cp {run / 'step-00000004.h5'} {run / 'latest.h5'}"
    assert hint in invoke("info", run).output
    result = invoke("train", "--resume", run, "--max-steps", "6", "--quiet")
    assert result.exit_code == 1 and hint in result.output


def test_info_describes_a_run_with_damaged_checkpoints_and_names_each(corpus, tmp_path):
    """A truncated latest.h5 made info give up on the folder, a damaged best.h5 read as
    'no best.h5 yet', and --verify stopped at the first damaged file."""
    run = tmp_path / "run"
    assert invoke("train", corpus, "-o", run, *SMALL, "--max-steps", 6, "--keep", 2,
                  "--checkpoint-every", 2).exit_code == 0
    for name in ("latest.h5", "best.h5"):
        data = (run / name).read_bytes()
        os.unlink(run / name)               # it may share its data with a kept file (a link)
        (run / name).write_bytes(data[:len(data) // 2])
    kept = checkpoint.step_files(run)
    flip_byte(kept[0], "weights/embed")
    shown = invoke("info", "--verify", run)
    assert shown.exit_code == 1
    assert "latest.h5 damaged; best.h5 damaged; 2 kept" in shown.output
    assert f"cp {kept[-1]} {run / 'latest.h5'}" in shown.output       # what can take its place
    assert f"{kept[-1]}: checksums: verified" in shown.output
    errors = [line for line in shown.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "3 damaged" in errors[0] and kept[0].name in errors[0]


@pytest.mark.parametrize("level", ["word", "bpe"])
def test_a_changed_word_in_a_vocabulary_is_found(tmp_path, level):
    """Text datasets take no fletcher32: a changed word in /vocab (or the tokenizer) was read
    as it was, --verify said 'verified', and a run trained on the changed vocabulary."""
    if level == "bpe":
        pytest.importorskip("tokenizers")
    corpus = make_corpus(tmp_path, level) if level == "word" else str(tmp_path / "b.h5")
    if level == "bpe":
        from rnnkit.corpus.preprocess import preprocess
        (tmp_path / "t.txt").write_text("the quick brown fox naps over it\n" * 40)
        preprocess([str(tmp_path / "t.txt")], corpus, level="bpe", vocab_size=300)
    data = bytearray(open(corpus, "rb").read())
    at = data.find(b"quick")                        # in /vocab (bpe: and the tokenizer's)
    assert at >= 0
    data[at] ^= 0x01                                 # 'q' -> 'p'
    open(corpus, "wb").write(bytes(data))
    one_line_error(invoke("info", "--verify", corpus), "dataset /", "checksum does not match")
    one_line_error(invoke("train", corpus, "-o", tmp_path / "run", *SMALL, "--max-steps", 1),
                   "checksum does not match")


def test_a_changed_source_name_or_split_in_a_corpus_is_found(tmp_path):
    """/sources is a table with text (no fletcher32): a changed byte in it was read as it was
    (info printed it, the fingerprint that tells corpora apart took it)."""
    from rnnkit.corpus.preprocess import preprocess

    (tmp_path / "sourcefile.txt").write_text(TEXT)
    corpus = str(tmp_path / "c.h5")
    preprocess([str(tmp_path / "sourcefile.txt")], corpus)
    assert "verified" in invoke("info", "--verify", corpus).output
    data = bytearray(open(corpus, "rb").read())
    at = data.find(b"sourcefile.txt")
    assert at >= 0 and data.find(b"sourcefile.txt", at + 1) < 0
    data[at] ^= 0x01
    open(corpus, "wb").write(bytes(data))
    one_line_error(invoke("info", "--verify", corpus), "dataset /sources",
                   "checksum does not match")
    one_line_error(invoke("info", corpus), "dataset /sources", "checksum does not match")
