"""The training loop through the Python API: exact resume, signals, NaN rollback, pre-flight."""
import json
import math
import os
import signal

import numpy as np
import pytest

from rnnkit.training import checkpoint
from rnnkit.model.network import Model
from rnnkit.corpus.preprocess import preprocess
from rnnkit.training.train import Diverged, TrainError, resume, train
from rnnkit.model.config import ScheduleConfig, TrainConfig

TEXT = "".join(f"line {i}: the quick brown fox {'jumps' if i % 3 else 'naps'} over it.\n"
               for i in range(60))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "t.txt").write_text(TEXT)
    preprocess([str(folder / "t.txt")], str(folder / "c.h5"), val_frac=0.1, test_frac=0.1)
    return str(folder / "c.h5")


def config(corpus, **train):
    cfg = TrainConfig()
    cfg.data.corpus, cfg.data.batch_size, cfg.data.seq_len = corpus, 8, 32   # 8 batches an epoch
    cfg.model.embed, cfg.model.hidden, cfg.model.layers, cfg.model.dropout = 8, 16, 2, 0.2
    cfg.optim.lr = 0.01
    cfg.schedule.schedule, cfg.schedule.warmup, cfg.schedule.decay_steps = "cosine", 3, 24
    cfg.train.threads, cfg.train.progress, cfg.train.log_every = 1, False, 1
    cfg.train.eval_every, cfg.train.max_steps = 5, 24
    for key, value in train.items():
        setattr(cfg.train, key, value)
    return cfg


def records(run_dir):
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def losses(run_dir, key="train_loss"):
    return {r["step"]: r[key] for r in records(run_dir) if key in r}


def weights(run_dir):
    return checkpoint.load(os.path.join(run_dir, "latest.h5")).weights


def test_trains_and_writes_the_run_folder(corpus, tmp_path):
    result = train(config(corpus), tmp_path / "run")
    assert result.step == 24 and not result.interrupted and result.epoch >= 2
    run = tmp_path / "run"
    assert {"latest.h5", "best.h5", "config.toml", "metrics.jsonl"} <= set(os.listdir(run))
    train_losses = losses(run)
    assert sorted(train_losses) == list(range(1, 25))
    assert np.mean([train_losses[s] for s in (21, 22, 23, 24)]) < train_losses[1]
    vals = [r for r in records(run) if "val_loss" in r]
    assert [r["step"] for r in vals] == [5, 10, 15, 20, 24]    # 24: the last step
    assert math.isclose(vals[0]["val_bpc"], vals[0]["val_loss"] / math.log(2))
    assert math.isclose(vals[0]["val_ppl"], math.exp(vals[0]["val_loss"]))
    first = records(run)[1]
    assert {"step", "epoch", "train_loss", "lr", "grad_norm", "tokens_per_s", "elapsed"} <= set(first)
    ck = checkpoint.load(run / "latest.h5")
    assert ck.step == 24 and ck.config["model"]["hidden"] == 16 and ck.vocab is not None
    assert checkpoint.load(run / "best.h5").best_val_loss == min(r["val_loss"] for r in vals)


def test_resume_after_a_limit_is_exact(corpus, tmp_path):
    train(config(corpus), tmp_path / "full")
    first = train(config(corpus, max_steps=11), tmp_path / "part")
    assert first.step == 11
    again = resume(tmp_path / "part", {"train": {"max_steps": 24}})
    assert again.step == 24
    assert losses(tmp_path / "part") == losses(tmp_path / "full")
    full_val, part_val = losses(tmp_path / "full", "val_loss"), losses(tmp_path / "part", "val_loss")
    assert set(part_val) - set(full_val) == {11}    # the report at the end of the first part
    assert {s: part_val[s] for s in full_val} == full_val
    for name, w in weights(tmp_path / "full").items():
        np.testing.assert_array_equal(weights(tmp_path / "part")[name], w)


PLATEAU = ScheduleConfig(schedule="plateau", plateau_threshold=0.05)  # decays at most checks


def signal_at_call(monkeypatch, method, at, signame):
    """Model.`method` sends this process `signame` at its `at`-th call; returns (the real
    method, the list that counts the calls)."""
    real, calls = getattr(Model, method), []

    def wrapped(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            os.kill(os.getpid(), getattr(signal, signame))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Model, method, wrapped)
    return real, calls


@pytest.mark.parametrize("signame,at", [("SIGUSR1", 13), ("SIGTERM", 13), ("SIGINT", 13),
                                        ("SIGUSR1", 15)])
def test_signal_checkpoints_and_resume_is_exact(corpus, tmp_path, monkeypatch, signame, at):
    """At 15, a validation step: the stop skips that validation and the resumed run does it
    (it was lost, and the plateau schedule went on undecayed)."""
    cfg = config(corpus)
    cfg.schedule = PLATEAU
    train(cfg, tmp_path / "full")
    # during step `at`: the step finishes, then the run stops
    real, _ = signal_at_call(monkeypatch, "forward_backward", at, signame)
    result = train(cfg, tmp_path / "part")
    assert result.interrupted and result.step == at and signame in result.reason
    assert checkpoint.load(tmp_path / "part" / "latest.h5").step == at
    monkeypatch.setattr(Model, "forward_backward", real)
    resume(tmp_path / "part")
    assert losses(tmp_path / "part") == losses(tmp_path / "full")
    assert losses(tmp_path / "part", "val_loss") == losses(tmp_path / "full", "val_loss")
    assert losses(tmp_path / "part", "lr") == losses(tmp_path / "full", "lr")
    for name, w in weights(tmp_path / "full").items():
        np.testing.assert_array_equal(weights(tmp_path / "part")[name], w)


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGINT"])
def test_a_signal_during_a_validation_stops_it_and_resume_does_it(tmp_path, monkeypatch,
                                                                  signame):
    # before: a validation ran to its end whatever came (a long one outlasted a scheduler's
    # grace time: killed without its checkpoint)
    (tmp_path / "t.txt").write_text(TEXT)
    corpus = str(tmp_path / "c.h5")      # a validation of 3 batches
    preprocess([str(tmp_path / "t.txt")], corpus, val_frac=0.4, test_frac=0.0)
    cfg = config(corpus)
    cfg.schedule = PLATEAU
    train(cfg, tmp_path / "full")
    # the first validation's second batch of 5 (step 5)
    real, calls = signal_at_call(monkeypatch, "evaluate", 2, signame)
    result = train(cfg, tmp_path / "part")
    assert len(calls) == 2          # none after the signal
    assert result.interrupted and result.step == 5 and signame in result.reason
    assert checkpoint.load(tmp_path / "part" / "latest.h5").step == 5
    assert 5 not in losses(tmp_path / "part", "val_loss")
    monkeypatch.setattr(Model, "evaluate", real)
    resume(tmp_path / "part")
    assert losses(tmp_path / "part", "val_loss") == losses(tmp_path / "full", "val_loss")
    assert losses(tmp_path / "part") == losses(tmp_path / "full")
    for name, w in weights(tmp_path / "full").items():
        np.testing.assert_array_equal(weights(tmp_path / "part")[name], w)


def test_a_plateau_decay_at_a_stop_is_resumed_exactly(corpus, tmp_path):
    """The schedule sees a validation before it sets the next step's rate, in a run stopped
    there and resumed as in one that was not (the decay came a step late in the latter)."""
    cfg = config(corpus)
    cfg.schedule = PLATEAU
    train(cfg, tmp_path / "full")
    cfg.train.max_steps = 15
    train(cfg, tmp_path / "part")
    resume(tmp_path / "part", {"train": {"max_steps": 24}})
    rates = losses(tmp_path / "full", "lr")
    assert len(set(rates.values())) > 1          # it decayed
    assert losses(tmp_path / "part", "lr") == rates
    assert losses(tmp_path / "part") == losses(tmp_path / "full")
    for name, w in weights(tmp_path / "full").items():
        np.testing.assert_array_equal(weights(tmp_path / "part")[name], w)


def test_early_stopping_ignores_the_validation_at_a_limit(corpus, tmp_path, monkeypatch):
    """The validation at a --max-steps stop (not an eval_every step) may make best.h5, but early
    stopping counts from the scheduled ones alone, so a resumed run stops where an
    uninterrupted one does."""
    from rnnkit.training.loop import Loop

    scripted = {5: 3.0, 10: 2.9, 13: 2.5, 15: 2.8, 20: 2.7, 24: 2.6}
    monkeypatch.setattr(Loop, "_val_loss",
                        lambda self, max_batches=0: (scripted[self.run.counters.step], 1))
    full = train(config(corpus, patience=1), tmp_path / "full")
    assert full.step == 24 and "early" not in full.reason
    part = train(config(corpus, patience=1, max_steps=13), tmp_path / "part")
    assert part.best_val_loss == 2.5                           # best.h5 is step 13's
    assert checkpoint.load(tmp_path / "part" / "best.h5").step == 13
    again = resume(tmp_path / "part", {"train": {"max_steps": 24}})
    assert again.step == 24 and again.reason == full.reason
    for name, w in weights(tmp_path / "full").items():
        np.testing.assert_array_equal(weights(tmp_path / "part")[name], w)


def test_nan_weights_at_the_last_step_roll_back(corpus, tmp_path, monkeypatch):
    """Weights made inf by the last step are not the run's end, saved as nothing with exit
    0: the run rolls back as it does before a checkpoint, and diverges if that keeps on."""
    real = Model.forward_backward
    calls = []

    def forward_backward(self, *args, **kwargs):
        out = real(self, *args, **kwargs)
        calls.append(1)
        if len(calls) % 6 == 0:     # every 6th step: a weight inf, the loss and norm finite
            self.params[0] = np.inf
        return out

    monkeypatch.setattr(Model, "forward_backward", forward_backward)
    with pytest.raises(Diverged, match="the weights are NaN or inf at step 6 after 3 "
                                       "rollbacks"):
        train(config(corpus, max_steps=6, eval_every=100), tmp_path / "run")
    events = [r for r in records(tmp_path / "run") if r.get("event") == "rollback"]
    assert [(e["step"], e["from_step"]) for e in events] == [(0, 6)] * 3
    assert all(np.isfinite(w).all() for w in weights(tmp_path / "run").values())


def test_nan_rolls_back_and_halves_the_lr(corpus, tmp_path, monkeypatch):
    real = Model.forward_backward
    calls = []

    def forward_backward(self, *args, **kwargs):
        loss, state = real(self, *args, **kwargs)
        calls.append(1)
        if len(calls) == 8:
            self.grads[3] = np.nan
            return math.nan, state
        return loss, state

    monkeypatch.setattr(Model, "forward_backward", forward_backward)
    cfg = config(corpus)
    cfg.schedule = ScheduleConfig()
    result = train(cfg, tmp_path / "run")
    assert result.step == 24
    events = [r for r in records(tmp_path / "run") if r.get("event") == "rollback"]
    assert events == [{"event": "rollback", "step": 5, "from_step": 8, "lr_scale": 0.5}]
    lrs = losses(tmp_path / "run", "lr")
    assert lrs[5] == 0.01 and lrs[6] == lrs[24] == 0.005
    assert sorted(losses(tmp_path / "run")) == list(range(1, 25))
    ck = checkpoint.load(tmp_path / "run" / "latest.h5")
    assert ck.schedule["scale"] == 0.5
    assert all(np.isfinite(w).all() for w in ck.weights.values())


def test_nan_every_time_stops_with_a_clear_message(corpus, tmp_path, monkeypatch):
    real = Model.forward_backward

    def forward_backward(self, *args, **kwargs):
        loss, state = real(self, *args, **kwargs)
        return (math.inf, state) if self._nan_after() else (loss, state)

    steps = iter(range(10 ** 6))
    monkeypatch.setattr(Model, "_nan_after", lambda self: next(steps) >= 6, raising=False)
    monkeypatch.setattr(Model, "forward_backward", forward_backward)
    with pytest.raises(Diverged, match=r"diverged: the loss was inf .* after 3 rollbacks"):
        train(config(corpus), tmp_path / "run")
    ck = checkpoint.load(tmp_path / "run" / "latest.h5")
    assert ck.step == 5 and all(np.isfinite(w).all() for w in ck.weights.values())
    # before: no stop line, and the last attempt's lines past step 5 stayed ("running or
    # killed", said info)
    log = records(tmp_path / "run")
    assert log[-1]["event"] == "stop" and log[-1]["step"] == 5 and \
        log[-1]["reason"].startswith("diverged (the loss was inf ") and \
        "at step 6)" in log[-1]["reason"]
    assert max(r["step"] for r in log) == 5


def test_preflight_errors(corpus, tmp_path):
    cfg = config(corpus)
    cfg.data.batch_size, cfg.data.seq_len = 64, 200
    with pytest.raises(TrainError, match=r"too few .* try N=\d+ with T=200 or T=\d+ with N=64"):
        train(cfg, tmp_path / "a")
    (tmp_path / "file").write_text("")
    with pytest.raises(TrainError, match="cannot write to run folder"):
        train(config(corpus), tmp_path / "file" / "run")
    train(config(corpus, max_steps=2), tmp_path / "b")
    with pytest.raises(TrainError, match="already holds a run .* --resume"):
        train(config(corpus), tmp_path / "b")
    with pytest.raises(TrainError, match=r"\[model\] hidden comes from the checkpoint"):
        resume(tmp_path / "b", {"model": {"hidden": 32}})
    with pytest.raises(TrainError, match="no run folder .*c to resume"):
        resume(tmp_path / "c")
    (tmp_path / "c").mkdir()
    with pytest.raises(TrainError, match="no latest.h5"):
        resume(tmp_path / "c")


def test_new_run_keeps_an_earlier_runs_files(corpus, tmp_path):
    """A folder with a run's files but no latest.h5 (moved away, or a copy of best.h5 and the
    log) is not overwritten by a new run, nor are those files removed when it stops."""
    train(config(corpus, max_steps=2), tmp_path / "run")
    (tmp_path / "run" / "latest.h5").unlink()
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    assert {"best.h5", "config.toml", "metrics.jsonl"} <= set(before)
    with pytest.raises(TrainError, match=r"holds files of an earlier run \(config.toml, "
                                         r"metrics.jsonl, best.h5.*\) but no latest.h5"):
        train(config(corpus, max_steps=2), tmp_path / "run")
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before


def test_early_stopping_and_epochs(corpus, tmp_path):
    cfg = config(corpus, max_steps=0, epochs=50, patience=1, eval_every=1)
    cfg.optim.lr = 0.5              # too high: validation stops improving quickly
    result = train(cfg, tmp_path / "run")
    assert result.reason.startswith("early stopping") and result.epoch < 50
    cfg = config(corpus, max_steps=0, epochs=2, eval_every=0)
    result = train(cfg, tmp_path / "epochs")
    vals = losses(tmp_path / "epochs", "val_loss")
    assert result.epoch == 2 and len(vals) == 2


def test_resuming_a_finished_run_does_nothing(corpus, tmp_path):
    train(config(corpus, max_steps=3), tmp_path / "run")
    result = resume(tmp_path / "run")
    assert result.step == 3 and result.reason == "limit reached before resuming"
    assert resume(tmp_path / "run", {"train": {"max_steps": 5}}).step == 5


@pytest.mark.slow               # fresh processes, killed and resumed
def test_real_process_sigterm_then_kill_9(corpus, tmp_path):
    """The command in its own process: SIGTERM gives exit code 75 and a checkpoint; kill -9
    during the resumed run leaves a readable latest.h5 that resumes again."""
    import subprocess
    import sys
    import time

    run = tmp_path / "run"
    args = [sys.executable, "-m", "rnnkit", "train", corpus, "-o", str(run), "--batch-size", "8",
            "--seq-len", "32", "--hidden", "16", "--embed", "8", "--threads", "1",
            "--max-steps", "1000000", "--checkpoint-every", "20", "--eval-every", "50",
            "--quiet"]

    def wait_for_step(proc, at_least):
        for _ in range(600):
            time.sleep(0.05)
            try:
                if checkpoint.read_meta(run / "latest.h5")["step"] >= at_least:
                    return
            except (checkpoint.CheckpointError, OSError):
                pass
            assert proc.poll() is None, proc.stderr.read()
        raise AssertionError("no checkpoint appeared")

    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    wait_for_step(proc, 20)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 75
    assert "stopped by SIGTERM" in proc.stderr.read()
    stopped = checkpoint.load(run / "latest.h5").step
    assert stopped >= 20

    proc = subprocess.Popen(args[:4] + ["--resume", str(run), "--quiet"], stderr=subprocess.PIPE,
                            text=True)
    wait_for_step(proc, stopped + 40)
    proc.kill()
    proc.wait()
    proc.stderr.close()
    ck = checkpoint.load(run / "latest.h5")
    assert ck.step >= stopped + 40 and all(np.isfinite(w).all() for w in ck.weights.values())
    assert resume(run, {"train": {"max_steps": ck.step + 2}}).step == ck.step + 2


def test_init_from_starts_a_new_run_from_the_weights(corpus, tmp_path):
    base = train(config(corpus, max_steps=6), tmp_path / "base")
    assert base.step == 6
    cfg = config(corpus, max_steps=3, init_from=str(tmp_path / "base" / "latest.h5"), keep=5)
    result = train(cfg, tmp_path / "ft")
    assert result.step == 3                     # fresh counters
    ck = checkpoint.load(tmp_path / "ft" / "latest.h5")
    assert ck.optimizer["step"] == 3
    # its first checkpoint, at step 0, holds the weights it started from
    first = checkpoint.load(tmp_path / "ft" / checkpoint.step_name(0))
    assert first.step == 0 and first.optimizer["step"] == 0
    start = weights(tmp_path / "base")
    assert set(first.weights) == set(start)
    for name, w in start.items():
        np.testing.assert_array_equal(first.weights[name], w)
    # the new run's first loss is the trained model's, far below a fresh model's
    assert losses(tmp_path / "ft")[1] < losses(tmp_path / "base")[1] - 0.1
    cfg = config(corpus, max_steps=3, init_from=str(tmp_path / "base" / "latest.h5"))
    cfg.model.hidden = 24
    with pytest.raises(TrainError, match="--hidden 24 does not match its 16"):
        train(cfg, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_init_from_on_the_command_line_takes_the_model_from_the_checkpoint(corpus, tmp_path):
    from click.testing import CliRunner

    from rnnkit.cli.main import main

    train(config(corpus, max_steps=2), tmp_path / "base")
    result = CliRunner().invoke(main, ["train", corpus, "-o", str(tmp_path / "ft"), "--init-from",
                                       str(tmp_path / "base" / "latest.h5"), "--max-steps", "2",
                                       "--batch-size", "8", "--seq-len", "32", "-q"])
    assert result.exit_code == 0, result.output
    assert "weights from" in result.output
    ck = checkpoint.load(tmp_path / "ft" / "latest.h5")
    assert ck.config["model"]["hidden"] == 16 and ck.config["model"]["layers"] == 2
    bad = CliRunner().invoke(main, ["train", corpus, "-o", str(tmp_path / "x"), "--init-from",
                                    str(tmp_path / "base" / "latest.h5"), "--layers", "3",
                                    "--batch-size", "8", "--seq-len", "32"])
    assert bad.exit_code == 1 and "--layers 3 does not match its 2" in bad.output
    # before: from a tied checkpoint, "[model] tie_weights needs embed == hidden (16 != 24)",
    # tie_weights never asked for
    cfg = config(corpus, max_steps=2)
    cfg.model.embed, cfg.model.tie_weights = 16, True
    train(cfg, tmp_path / "tied")
    bad = CliRunner().invoke(main, ["train", corpus, "-o", str(tmp_path / "y"), "--init-from",
                                    str(tmp_path / "tied" / "latest.h5"), "--hidden", "24"])
    assert bad.exit_code == 1 and "--hidden 24 does not match its 16" in bad.output, bad.output
    (tmp_path / "c.toml").write_text("[model]\nhidden = 24\n")      # from a config file too
    bad = CliRunner().invoke(main, ["train", corpus, "-o", str(tmp_path / "y"), "--init-from",
                                    str(tmp_path / "tied" / "latest.h5"), "--config",
                                    str(tmp_path / "c.toml")])
    assert bad.exit_code == 1 and "--hidden 24 does not match its 16" in bad.output, bad.output


def test_a_run_its_own_rule_ended_does_not_train_on_when_resumed(corpus, tmp_path,
                                                                 monkeypatch):
    """Early stopping and the plateau schedule end a run as a limit does: a resume has nothing
    to do (before, each resume trained to the next validation, and a new best reset the
    count: the finished run changed)."""
    from rnnkit.training.loop import Loop

    monkeypatch.setattr(Loop, "_val_loss", lambda self, max_batches=0: (3.0, 1))  # no gain
    ended = train(config(corpus, patience=2), tmp_path / "early")
    assert ended.step == 15 and ended.reason.startswith("early stopping")
    before = records(tmp_path / "early")
    again = resume(tmp_path / "early", {})
    assert again.step == 15 and again.reason.startswith("early stopping ended this run")
    assert records(tmp_path / "early") == before
    assert resume(tmp_path / "early", {"train": {"patience": 4}}).step == 24    # raised

    cfg = config(corpus)
    cfg.schedule = ScheduleConfig(schedule="plateau", max_decays=0)
    ended = train(cfg, tmp_path / "plateau")
    assert ended.step == 10 and ended.reason.startswith("plateau")
    again = resume(tmp_path / "plateau", {"train": {"max_steps": 40}})
    assert again.step == 10 and again.reason.startswith("the plateau schedule ended this run")


def test_a_stop_between_log_lines_keeps_the_window(corpus, tmp_path):
    """train_loss is the mean over the steps since the last line: a run stopped between two
    lines and resumed writes the lines of one that was not (before, the resumed run's next
    line averaged its own steps only, and the others' losses were lost)."""
    full = config(corpus, log_every=10, max_steps=24)
    train(full, tmp_path / "full")
    part = config(corpus, log_every=10, max_steps=13)
    train(part, tmp_path / "part")
    resume(tmp_path / "part", {"train": {"max_steps": 24}})
    assert sorted(losses(tmp_path / "full")) == [10, 20]
    assert losses(tmp_path / "part") == losses(tmp_path / "full")


@pytest.mark.parametrize("compiling", [True, False])
def test_the_eta_leaves_out_the_first_step(corpus, tmp_path, monkeypatch, compiling):
    # before: the ETA after step 2 took the first step's compile time as the pace (a first
    # line could promise hours); on a warm cache its loading of the kernels (0.25-0.5 s a
    # step for a run of 1 ms steps: "ETA 27:21" for a 62 s run)
    import time

    from rnnkit.training.log import ProgressBar
    from rnnkit.training.runtime import Runtime

    real, etas = Model.forward_backward, []

    def forward_backward(self, *args, **kwargs):
        if not etas:
            time.sleep(3.0)         # the compiler, or the kernels loaded from the cache
        etas.append(None)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Model, "forward_backward", forward_backward)
    monkeypatch.setattr(Runtime, "compiling",
                        lambda self, model, sampling=False: compiling)
    monkeypatch.setattr(ProgressBar, "update",
                        lambda self, step, loss, rate, eta_s, force=False: etas.append(eta_s))
    train(config(corpus, max_steps=40), tmp_path / "run")
    later = [e for e in etas if e is not None][1:]      # after the second step on
    assert later and max(later) < 2.0, later


def test_the_logged_validation_loss_is_eval_s_on_the_whole_split(corpus, tmp_path):
    # before: the validation left out the streams' last tokens that filled no batch of T
    # steps (12% of a 20,000-token split at N = T = 50), unlike `rnnkit eval` and the docs
    from rnnkit.corpus.reader import Corpus
    from rnnkit.tools.eval_checkpoint import evaluate_checkpoint

    cfg = config(corpus, max_steps=5, eval_every=5)
    cfg.data.batch_size, cfg.data.seq_len = 3, 7
    cfg.model.dtype = "float64"
    train(cfg, tmp_path / "run")
    logged = [r["val_loss"] for r in records(tmp_path / "run") if "val_loss" in r]
    with Corpus(corpus) as c:
        L = c.len_split("val")
    assert ((L - 1) // 3) % 7                   # a shorter last batch
    expected = evaluate_checkpoint(tmp_path / "run" / "latest.h5", corpus, "val",
                                   batch_size=3, seq_len=7)
    assert logged[-1] == expected["loss"]


def test_resuming_a_cosine_run_past_its_length_is_refused(corpus, tmp_path):
    # before: the resumed steps ran at learning rate 0, changing nothing, without a word
    cfg = config(corpus, max_steps=10)
    cfg.schedule.decay_steps = 0            # its length: --max-steps
    train(cfg, tmp_path / "run")
    with pytest.raises(TrainError, match=r"cosine schedule ended at step 10 .* --init-from"):
        resume(tmp_path / "run", {"train": {"max_steps": 14}})
    # a resume with nothing to do is as before (a requeued job whose signal came at the end)
    assert resume(tmp_path / "run").reason == "limit reached before resuming"
    cfg = config(corpus, max_steps=10)
    cfg.schedule.decay_steps, cfg.schedule.min_lr = 0, 0.001    # goes on at min_lr
    train(cfg, tmp_path / "floor")
    assert resume(tmp_path / "floor", {"train": {"max_steps": 12}}).step == 12


@pytest.mark.parametrize("optimizer,said", [("adamw", ["weight_decay unset: adamw's own, 0.01",
                                                     "eps unset: adamw's own, 1e-08"]),
                                           ("sgd", ["weight_decay unset: sgd's own, 0.0"])])
def test_config_toml_names_the_optimizer_s_own_defaults(corpus, tmp_path, optimizer, said):
    # before: adamw's weight decay of 0.01 ran and config.toml said nothing of it; the keys
    # stay unset, so that the file as --config with another optimizer takes that one's own
    from rnnkit.model.config_file import load_toml

    cfg = config(corpus, max_steps=2)
    cfg.optim.optimizer = optimizer
    train(cfg, tmp_path / "run")
    text = (tmp_path / "run" / "config.toml").read_text()
    assert all(f"# {line}\n" in text for line in said), text
    again = load_toml(tmp_path / "run" / "config.toml")
    assert again.optim.weight_decay is None and again.optim.eps is None


def test_a_run_killed_before_its_first_checkpoint_can_be_run_again(corpus, tmp_path):
    # before: kill -9 between the log's start line and the step-0 checkpoint left a folder
    # that neither the same command ("holds files of an earlier run") nor --resume took
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"event": "start", "step": 0, "target": "cpu"}\n')
    assert train(config(corpus, max_steps=2), run).step == 2
    log = records(run)
    assert [r.get("event") for r in log].count("start") == 1
    # a log with steps is another matter: kept, and refused
    other = tmp_path / "other"
    other.mkdir()
    (other / "metrics.jsonl").write_text('{"event": "start", "step": 0}\n'
                                         '{"step": 1, "train_loss": 4.0}\n')
    with pytest.raises(TrainError, match="holds files of an earlier run"):
        train(config(corpus, max_steps=2), other)
    # another tool's log, or an empty one, is not rnnkit's to remove
    for text in ('{"epoch": 1, "acc": 0.91}\n', ""):
        (other / "metrics.jsonl").write_text(text)
        with pytest.raises(TrainError, match="holds files of an earlier run"):
            train(config(corpus, max_steps=2), other)
        assert (other / "metrics.jsonl").read_text() == text


def test_a_new_corpus_starts_early_stopping_and_the_plateau_afresh(corpus, tmp_path,
                                                                     monkeypatch):
    # before: --resume --new-corpus compared the new split's losses with the old split's
    # best, for early stopping and the plateau schedule: a run that improved at each
    # validation was stopped at its first
    from rnnkit.training.loop import Loop

    (tmp_path / "b.txt").write_text("".join(reversed(TEXT.splitlines(keepends=True))))
    other = str(tmp_path / "b.h5")
    preprocess([str(tmp_path / "b.txt")], other, val_frac=0.1, test_frac=0.1, vocab_from=corpus)
    losses = iter([3.0, 2.0, 5.0, 4.5, 4.0])     # the first split's; then the new one's, higher
    monkeypatch.setattr(Loop, "_val_loss", lambda self, max_batches=0: (next(losses), 1))
    cfg = config(corpus, max_steps=10, eval_every=5, patience=1)
    cfg.schedule = PLATEAU
    train(cfg, tmp_path / "run")
    result = resume(tmp_path / "run", {"train": {"max_steps": 25}, "data": {"corpus": other}},
                    new_corpus=True)
    assert result.step == 25 and result.reason == "25 steps done", result.reason
    assert all(r["lr"] == records(tmp_path / "run")[1]["lr"] for r in records(tmp_path / "run")
               if "lr" in r and r["step"] > 10)        # each new loss gained 10%: no halving
    # before: nothing in the log or in info said the corpus changed
    from rnnkit.tools.info import describe_run

    (resumed,) = [r for r in records(tmp_path / "run") if r.get("event") == "resume"]
    assert resumed["reason"] == f"new corpus {other}"
    assert f"corpus: from step 10 a new corpus {other} (--new-corpus)" in \
        describe_run(str(tmp_path / "run"))


def test_the_logged_rate_is_the_steps_alone(corpus, tmp_path, monkeypatch):
    # before: a window holding a validation (or a checkpoint) logged its time as the steps':
    # a sawtooth of tokens_per_s in metrics.jsonl and on the bar
    import time

    from rnnkit.training.loop import Loop

    real = Loop._val_loss

    def slow(self, max_batches=0):
        time.sleep(0.5)
        return real(self, max_batches)

    monkeypatch.setattr(Loop, "_val_loss", slow)
    train(config(corpus, max_steps=12, eval_every=4), tmp_path / "run")
    rates = {r["step"]: r["tokens_per_s"] for r in records(tmp_path / "run")
             if "tokens_per_s" in r}
    after = [rates[s] for s in (5, 9)]          # the steps right after a validation
    assert min(after) > 0.3 * sorted(rates.values())[len(rates) // 2], rates


def test_a_compile_past_the_time_limit_says_so(corpus, tmp_path, monkeypatch):
    # before: "compiled in 16.3 s", then a quiet stop at 18.5 s of a 6 s --max-time
    import time

    from rnnkit.training.loop import Loop
    from rnnkit.training.runtime import Runtime

    real = Model.forward_backward
    slow = iter([True])

    def forward_backward(self, *args, **kwargs):
        if next(slow, False):
            time.sleep(2.5)                 # the compiler
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Model, "forward_backward", forward_backward)
    monkeypatch.setattr(Runtime, "compiling", lambda self, model, sampling=False: True)
    said = []
    monkeypatch.setattr(Loop, "say", lambda self, text: said.append(text))
    result = train(config(corpus, max_steps=0, max_time=2.0), tmp_path / "run",
                   start=time.monotonic())
    assert result.step == 1 and "time limit" in result.reason
    assert any("past --max-time 2 s: the run stops after this step" in s for s in said), said
