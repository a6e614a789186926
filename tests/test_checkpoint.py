"""Checkpoint files: a full round trip, the run folder's latest/best/keep files, and a writer
killed with SIGKILL at random moments never leaving a damaged latest.h5."""
import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from rnnkit.training import checkpoint as ckpt
from rnnkit.model.optim import make_optimizer
from rnnkit.model.schedule import make_schedule
from rnnkit.corpus.tokenize import Vocabulary


def _checkpoint(step=7, size=10):
    rng = np.random.default_rng(123)
    rng.standard_normal(5)          # move the generator off its seed state
    params = np.arange(size, dtype=np.float32)
    opt = make_optimizer("adam", params)
    opt.step(np.ones(size, np.float32))
    sched = make_schedule("plateau", 1e-3)
    sched.observe(4.0)
    sched.observe(3.999)
    return ckpt.Checkpoint(
        config={"model": {"cell": "lstm", "hidden": 8}, "optim": {"lr": 1e-3, "betas": None}},
        weights={"embed": params[:4].reshape(2, 2), "l0.w_x": params[4:]},
        optimizer=opt.state_dict(), schedule=sched.state_dict(),
        rng=rng.bit_generator.state,
        state={"h": np.ones((2, 3, 4), np.float32), "c": np.zeros((2, 3, 4), np.float32)},
        vocab=Vocabulary("char", ["a", "b", "\u00e9"]),
        step=step, epoch=2, batch=5, elapsed=12.5, best_val_loss=3.25)


def test_round_trip(tmp_path):
    ck = _checkpoint()
    path = tmp_path / "a.h5"
    ckpt.save(path, ck)
    back = ckpt.load(path)
    assert back.config == ck.config
    assert (back.step, back.epoch, back.batch, back.elapsed, back.best_val_loss) == (7, 2, 5, 12.5,
                                                                                    3.25)
    for name, arr in ck.weights.items():
        np.testing.assert_array_equal(back.weights[name], arr)
        assert back.weights[name].dtype == arr.dtype
    assert back.optimizer["name"] == "adam" and back.optimizer["step"] == 1
    assert back.optimizer["hyper"] == ck.optimizer["hyper"]
    for key, buf in ck.optimizer["buffers"].items():
        np.testing.assert_array_equal(back.optimizer["buffers"][key], buf)
    assert back.schedule == ck.schedule and back.schedule["halvings"] == 1
    assert back.rng == ck.rng
    a = np.random.Generator(np.random.PCG64())
    a.bit_generator.state = back.rng
    b = np.random.default_rng(123)
    b.standard_normal(5)
    np.testing.assert_array_equal(a.standard_normal(4), b.standard_normal(4))
    np.testing.assert_array_equal(back.state["h"], ck.state["h"])
    assert back.vocab.level == "char" and back.vocab.tokens == ["a", "b", "\u00e9"]
    assert back.meta["rnnkit_version"] and back.meta["format"] == ckpt.FORMAT
    # readable with plain h5py; no pickle: every object is a numeric or string type
    with h5py.File(path) as f:
        assert f.attrs["format"] == "rnnkit-checkpoint"
        assert json.loads(f.attrs["config"])["model"]["cell"] == "lstm"
        f.visititems(lambda name, obj: _no_objects(obj))


def _no_objects(obj):
    if isinstance(obj, h5py.Dataset):
        assert obj.dtype.kind in "fiub" or h5py.check_string_dtype(obj.dtype), obj.name


def test_word_vocabulary(tmp_path):
    ck = _checkpoint()
    ck.vocab = Vocabulary("word", ["<unk>", "<eos>", "the", "caf\u00e9"])
    ckpt.save(tmp_path / "a.h5", ck)
    back = ckpt.load(tmp_path / "a.h5").vocab
    assert back.level == "word" and back.tokens == ck.vocab.tokens and back.unk_id == 0


def test_weights_only_and_meta(tmp_path):
    path = tmp_path / "a.h5"
    ckpt.save(path, _checkpoint())
    back = ckpt.load(path, weights_only=True)
    assert back.optimizer is None and back.rng is None and back.weights
    meta = ckpt.read_meta(path)
    assert meta["step"] == 7 and meta["config"]["model"]["hidden"] == 8
    assert meta["parameters"]["embed"] == (2, 2)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="no such checkpoint"):
        ckpt.load(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(ckpt.CheckpointError, match="not an HDF5 file"):
        ckpt.load(tmp_path / "text.h5")
    with h5py.File(tmp_path / "corpus.h5", "w") as f:
        f.attrs["format"] = "rnnkit-corpus"
    with pytest.raises(ckpt.CheckpointError, match="not an rnnkit checkpoint"):
        ckpt.load(tmp_path / "corpus.h5")


def test_run_folder_keep_latest_best(tmp_path):
    for step in range(1, 6):
        ckpt.save_run(tmp_path, _checkpoint(step), keep=2, best=step == 3)
    assert [p.name for p in ckpt.step_files(tmp_path)] == [ckpt.step_name(4), ckpt.step_name(5)]
    assert ckpt.load(tmp_path / "latest.h5").step == 5
    assert ckpt.load(tmp_path / "best.h5").step == 3
    ckpt.save_run(tmp_path, _checkpoint(6), keep=0)
    assert ckpt.load(tmp_path / "latest.h5").step == 6
    assert ckpt.load(tmp_path / ckpt.step_name(5)).step == 5   # links, not shared contents
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_link_whose_source_went_is_a_write_error(tmp_path):
    # before: a raw FileNotFoundError naming latest.h5 (the run folder removed under an MPI
    # run), where "cannot write" was promised
    from rnnkit.files import WriteError

    with pytest.raises(WriteError, match=r"cannot write .*best\.h5: No such file"):
        ckpt.link(tmp_path / "gone" / "latest.h5", tmp_path / "gone" / "best.h5")


WRITER = """
import sys, numpy as np
from rnnkit.training import checkpoint as ckpt
step = 0
while True:
    step += 1
    w = np.full(300_000, step, np.float32)
    ckpt.save_run(sys.argv[1], ckpt.Checkpoint(config={"step": step}, weights={"w": w},
                  step=step), keep=int(sys.argv[2]), best=step % 3 == 0)
    print(step, flush=True)
"""


@pytest.mark.parametrize("keep", [0, 2])
def test_kill_9_never_damages_latest(tmp_path, keep):
    rng = np.random.default_rng(0)
    for trial in range(4):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(keep)],
                                stdout=subprocess.PIPE, text=True)
        proc.stdout.readline()                      # at least one checkpoint written
        time.sleep(float(rng.uniform(0.0, 0.3)))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        for name in ("latest.h5", "best.h5"):
            ck = ckpt.load(tmp_path / name)
            assert ck.config["step"] == ck.step >= 1
            assert np.all(ck.weights["w"] == ck.step)
        ckpt.clean_temporaries(tmp_path)
        assert not list(tmp_path.glob(".*.tmp"))
