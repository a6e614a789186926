"""Training: the loop, read top to bottom in nanoGPT's order.

Each step: learning rate; evaluate and checkpoint when due; forward and backward; average the
gradients across processes; clip; optimizer step; log; stopping conditions. The hidden state
is carried from batch to batch and reset at each pass over the data (truncated BPTT).

    from rnnkit.train import train, resume
    from rnnkit.train_config import TrainConfig
    cfg = TrainConfig()
    cfg.data.corpus = "corpus.h5"
    result = train(cfg, "runs/x")
    result = resume("runs/x", {"train": {"epochs": 100}})

Checkpoints (rnnkit/checkpoint.py) go to RUN_DIR/latest.h5 at every validation, every
`checkpoint_every` steps and at the end; best.h5 is the one with the lowest validation loss.
A loss or gradient that is NaN or inf never reaches a checkpoint: the run rolls back to
latest.h5, halves the learning rate and goes on; after MAX_ROLLBACKS rollbacks without a new
checkpoint in between it stops with Diverged.

SIGINT, SIGTERM and SIGUSR1 (which SLURM sends before the time limit) let the current step
finish, write latest.h5 and return a result with `interrupted` set; `rnnkit train` then exits
with EXIT_INTERRUPTED (75, sysexits' EX_TEMPFAIL: "try again"), and
`rnnkit train --resume RUN_DIR` continues exactly where it stopped. A second SIGINT stops at
once (the last checkpoint is intact).
"""
import copy
import dataclasses
import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from rnnkit import checkpoint
from rnnkit.corpus import Corpus, CorpusError
from rnnkit.distributed import communicator
from rnnkit.evaluate import evaluate_batches
from rnnkit.optim import clip_gradients
from rnnkit.run import Run, config_from_checkpoint
from rnnkit.stop_signals import StopSignals
from rnnkit import threads
from rnnkit.train_config import dump_toml, from_dict
from rnnkit.train_log import Metrics, ProgressBar, val_metrics

EXIT_INTERRUPTED = 75
MAX_ROLLBACKS = 3
RESUMABLE = {"train"}            # config sections a resumed run may change (limits, not the math)


class TrainError(Exception):
    """Training cannot start or go on; the message is one line for the user."""


class Diverged(TrainError):
    """The loss stayed NaN or inf after MAX_ROLLBACKS rollbacks."""


@dataclasses.dataclass
class TrainResult:
    run_dir: str
    step: int
    epoch: int
    best_val_loss: float
    reason: str                 # why it stopped
    interrupted: bool = False   # by a signal: resume with --resume


def train(cfg, run_dir, comm=None, stream=None):
    """Train a new run in `run_dir` (created if needed; refused if it holds a run already)."""
    run_dir = _writable(run_dir)
    if (run_dir / "latest.h5").exists():
        step = checkpoint.read_meta(run_dir / "latest.h5")["step"]
        raise TrainError(f"{run_dir} already holds a run (latest.h5 at step {step}); continue "
                         f"it with --resume {run_dir} or choose another output folder")
    return _session(cfg, run_dir, None, comm, stream)


def resume(run_dir, overrides=None, comm=None, stream=None):
    """Continue the run in `run_dir` from latest.h5. `overrides` may change the [train] section
    (limits, evaluation, logging) and [data] corpus (a moved file with the same vocabulary)."""
    run_dir = _writable(run_dir)
    latest = run_dir / "latest.h5"
    if not latest.exists():
        raise TrainError(f"{run_dir} has no latest.h5 to resume from")
    ck = checkpoint.load(latest)
    stored = config_from_checkpoint(ck)
    cfg = from_dict(overrides or {}, stored)
    for section, values in (overrides or {}).items():
        for key in values:
            allowed = section in RESUMABLE or (section, key) == ("data", "corpus")
            if not allowed and getattr(getattr(cfg, section), key) != \
                    getattr(getattr(stored, section), key):
                raise TrainError(f"[{section}] {key} comes from the checkpoint when resuming "
                                 f"and cannot change; start a new run to change it")
    return _session(cfg, run_dir, ck, comm, stream)


def _writable(run_dir):
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=run_dir):
            pass
    except OSError as err:
        raise TrainError(f"cannot write to run folder {run_dir}: {err.strerror}") from None
    checkpoint.clean_temporaries(run_dir)
    return run_dir


def _session(cfg, run_dir, ck, comm, stream):
    cfg = copy.deepcopy(cfg)        # resolved below; the caller's stays as it was
    comm = comm or communicator()
    count, why = threads.set_threads(cfg.train.threads)
    thread_note = (f"threads: {count} ({why})" +
                   ("; fewer while other work slows them" if count > 1 else ""))
    if not cfg.data.corpus:
        raise TrainError("no corpus given")
    try:
        corpus = Corpus(cfg.data.corpus)
    except (CorpusError, OSError) as err:
        raise TrainError(str(err)) from None
    with corpus:
        if ck is not None and (ck.vocab.tokens != corpus.vocab or ck.vocab.level != corpus.level):
            raise TrainError(f"{cfg.data.corpus} has another vocabulary than the run in {run_dir}")
        N, T = cfg.data.batch_size, cfg.data.seq_len
        try:
            corpus.check_fit(cfg.data.train_split, N, T, comm.size)
        except ValueError as err:
            raise TrainError(f"--batch-size/--seq-len: {err}") from None
        batches = corpus.batches(cfg.data.train_split, N, T, rank=comm.rank, world=comm.size)
        limits = cfg.train
        if limits.epochs < 1 and limits.max_steps < 1 and limits.max_time <= 0:
            raise TrainError("set at least one limit: epochs, max_steps or max_time")
        budget = min([n for n in (limits.max_steps, limits.epochs * batches.num_batches)
                      if n > 0], default=None)
        if cfg.schedule.name == "cosine" and not cfg.schedule.total:
            if not budget:
                raise TrainError("the cosine schedule needs a length: set [schedule] total, "
                                 "--max-steps or --epochs")
            # resolved now and saved, so that a resumed run with other limits keeps its curve
            cfg.schedule = dataclasses.replace(cfg.schedule, total=budget)
        run = Run.build(cfg, corpus.vocabulary, corpus.encoding)
        if ck is not None:
            run.restore(ck)
        else:
            run.state = run.model.init_state(N // comm.size)
        if comm.rank == 0:
            tmp = run_dir / "config.toml.tmp"
            tmp.write_text(dump_toml(cfg), encoding="utf-8")
            os.replace(tmp, run_dir / "config.toml")
        loop = Loop(run, corpus, batches, run_dir, comm, stream, budget)
        loop.say(thread_note)
        with StopSignals() as signals:
            return loop.go(signals, resumed=ck is not None)


class Loop:
    def __init__(self, run, corpus, batches, run_dir, comm, stream, total_steps):
        self.run, self.corpus, self.batches, self.run_dir = run, corpus, batches, run_dir
        self.comm, self.cfg, self.total = comm, run.cfg, total_steps
        self.main = comm.rank == 0
        self.metrics = Metrics(run_dir / "metrics.jsonl")
        self.bar = ProgressBar(total_steps, run.cfg.train.progress and self.main, stream)
        self.rollbacks = 0          # rollbacks since the last checkpoint
        self.saved_step = run.counters.step     # step of latest.h5
        self.val_split = run.cfg.data.val_split
        self.first_step = run.counters.step

    def say(self, text):
        if self.main:
            self.bar.message(text)

    def go(self, signals, resumed):
        run, c, cfg = self.run, self.run.counters, self.cfg
        model, opt, t_cfg = run.model, run.optimizer, cfg.train
        N, T = cfg.data.batch_size, cfg.data.seq_len
        nb = self.batches.num_batches
        if resumed and self._limit_reason(signals, 0.0):
            self.say(f"nothing to do: {self._limit_reason(signals, 0.0)} already; raise "
                     f"--epochs, --max-steps or --max-time to train further")
            return TrainResult(str(self.run_dir), c.step, c.epoch, c.best_val_loss,
                               "limit reached before resuming")
        self._start(resumed, nb)
        it = self._iterate()
        threads.begin()
        started, elapsed0 = time.monotonic(), c.elapsed
        tick, window_loss, window_steps, norm = time.monotonic(), 0.0, 0, 0.0
        reason = None
        while True:
            # 1. the learning rate of this step
            lr = run.schedule.lr(c.step, c.epoch)
            opt.lr = lr

            # 2. evaluate and checkpoint
            due_eval = self._due_eval()
            due_save = t_cfg.checkpoint_every and c.step % t_cfg.checkpoint_every == 0
            if (due_eval or due_save) and c.step != self.saved_step:
                if not np.isfinite(model.params).all():
                    it = self._rollback("the weights are NaN or inf")
                    continue
                reason, improved = self._validate(lr) if due_eval else (None, False)
                self._save(best=improved)
                if reason:
                    break

            # 3. forward and backward
            x, y = next(it)
            work_started = time.perf_counter()
            loss, state = model.forward_backward(x, y, run.state, run.rng)

            # 4. average gradients over processes (a no-op with one process)
            self.comm.average(model.grads)
            loss = self.comm.mean(loss)

            # 5. clip
            norm = clip_gradients(model.grads, cfg.optim.clip_norm, cfg.optim.clip_value)
            if not (math.isfinite(loss) and math.isfinite(norm)):
                it = self._rollback(f"the loss was {loss} and the gradient norm {norm}")
                continue

            # 6. update
            opt.step(model.grads)
            threads.observe(N * T // self.comm.size, time.perf_counter() - work_started)
            run.state = state
            c.step += 1
            c.batch += 1
            if c.batch == nb:               # end of a pass: the next one starts afresh
                c.epoch, c.batch = c.epoch + 1, 0
                run.state = model.init_state(N // self.comm.size)
                it = self._iterate()
            c.elapsed = elapsed0 + time.monotonic() - started

            # 7. log
            window_loss, window_steps = window_loss + loss, window_steps + 1
            now = time.monotonic()
            rate = N * T * window_steps / max(now - tick, 1e-9)
            if c.step % t_cfg.log_every == 0 and self.main:
                self.metrics.write(step=c.step, epoch=c.epoch + c.batch / nb,
                                   train_loss=window_loss / window_steps, lr=lr, grad_norm=norm,
                                   tokens_per_s=rate, elapsed=c.elapsed)
                tick, window_loss, window_steps = now, 0.0, 0
            self.bar.update(c.step, loss, rate, self._eta(now - started, c.step))

            # 8. stop?
            reason = self._limit_reason(signals, now - started)
            if reason:
                break
        return self._finish(reason, signals)

    # -- the parts of a step -------------------------------------------------------------------
    def _start(self, resumed, nb):
        run, c = self.run, self.run.counters
        m = run.cfg.model
        if self.main:
            self.metrics.truncate_after(c.step)
            self.metrics.write(event="resume" if resumed else "start", step=c.step)
        what = f"resuming at step {c.step}" if resumed else "new run"
        self.say(f"{m.cell} {m.layers}x{m.hidden}, {run.model.num_params():,} parameters; "
                 f"{self.corpus.len_split(run.cfg.data.train_split):,} training tokens, "
                 f"{nb:,} batches per epoch; {what} in {self.run_dir}")
        if self.val_split and self.val_split not in self.corpus.splits:
            self.say(f"note: the corpus has no {self.val_split!r} split; no validation")
            self.val_split = ""
        if not resumed:
            self._save(best=False)      # the rollback point, and proof that saving works

    def _iterate(self):
        c, cfg = self.run.counters, self.cfg
        return iter(self.corpus.batches(cfg.data.train_split, cfg.data.batch_size,
                                        cfg.data.seq_len, start=c.batch, rank=self.comm.rank,
                                        world=self.comm.size))

    def _due_eval(self):
        """Validate after every eval_every steps, or at the end of each pass when it is 0."""
        c, every = self.run.counters, self.cfg.train.eval_every
        return c.step > 0 and c.step != c.last_eval_step and (
            c.step % every == 0 if every else c.batch == 0)

    def _validate(self, lr):
        """Validation loss, best-so-far bookkeeping, schedule; returns (stop reason or None,
        whether this is the best model so far)."""
        run, c, t_cfg = self.run, self.run.counters, self.cfg.train
        c.last_eval_step = c.step
        if not self.val_split:
            return None, False
        loss = self._val_loss()
        improved = loss < c.best_val_loss
        if improved:
            c.best_val_loss, c.bad_evals = loss, 0
        else:
            c.bad_evals += 1
        run.schedule.observe(loss)
        numbers = val_metrics(loss)
        if self.main:
            self.metrics.write(step=c.step, epoch=c.epoch + c.batch / self.batches.num_batches,
                               **numbers, lr=lr, elapsed=c.elapsed)
        self.say(f"step {c.step}: val loss {loss:.4f}, ppl {numbers['val_ppl']:.2f}, "
                 f"{numbers['val_bpc']:.3f} bits/token{' (best)' if improved else ''}")
        reason = None
        if t_cfg.patience and c.bad_evals >= t_cfg.patience:
            reason = f"early stopping: no better validation loss in {c.bad_evals} evaluations"
        elif run.schedule.stop:
            reason = "plateau: the validation loss stopped improving after the last lr decay"
        return reason, improved

    def _val_loss(self):
        cfg = self.cfg
        N, T = cfg.data.batch_size, cfg.data.seq_len
        L = self.corpus.len_split(self.val_split)
        N = max(self.comm.size, min(N, (L - 1) // T // self.comm.size * self.comm.size))
        T = min(T, (L - 1) // N)
        batches = self.corpus.batches(self.val_split, N, T, rank=self.comm.rank,
                                      world=self.comm.size)
        total, count = evaluate_batches(self.run.model, batches, N // self.comm.size,
                                        cfg.train.eval_batches)
        return self.comm.mean(total / count)

    def _save(self, best):
        self.rollbacks, self.saved_step = 0, self.run.counters.step
        if self.main:
            checkpoint.save_run(self.run_dir, self.run.checkpoint(), keep=self.cfg.train.keep,
                                best=best)

    def _rollback(self, what):
        run, c = self.run, self.run.counters
        bad_step = c.step + 1           # the step that went wrong
        self.rollbacks += 1
        if self.rollbacks > MAX_ROLLBACKS:
            raise Diverged(f"training diverged: {what} at step {bad_step} after {MAX_ROLLBACKS} "
                           f"rollbacks, each halving the learning rate; the last good "
                           f"checkpoint is {self.run_dir / 'latest.h5'}; try a lower --lr or "
                           f"--clip-norm")
        ck = checkpoint.load(self.run_dir / "latest.h5")
        run.restore(ck)
        self.saved_step = c.step
        run.schedule.scale *= 0.5 ** self.rollbacks
        self.say(f"warning: {what} at step {bad_step}; rolled back to step {c.step} and "
                 f"halved the learning rate ({run.schedule.lr(c.step, c.epoch):.3g})")
        if self.main:
            self.metrics.truncate_after(c.step)
            self.metrics.write(event="rollback", step=c.step, from_step=bad_step,
                               lr_scale=run.schedule.scale)
        return self._iterate()

    def _limit_reason(self, signals, session_s):
        c, t = self.run.counters, self.cfg.train
        if signals.received:
            return f"stopped by {signals.received}"
        if t.epochs and c.epoch >= t.epochs:
            return f"{t.epochs} epochs done"
        if t.max_steps and c.step >= t.max_steps:
            return f"{t.max_steps} steps done"
        if t.max_time and session_s >= t.max_time:
            return f"time limit of {t.max_time:g} s reached"
        return None

    def _eta(self, session_s, step):
        done = step - self.first_step
        left = [math.inf]
        if self.total and done:
            left = [max(0, self.total - step) * session_s / done]
        if self.cfg.train.max_time:
            left.append(max(0.0, self.cfg.train.max_time - session_s))
        return min(left)

    def _finish(self, reason, signals):
        run, c = self.run, self.run.counters
        interrupted = bool(signals.received)
        best = False
        if not interrupted and self._due_eval():
            best = self._validate(run.schedule.lr(c.step, c.epoch))[1]
        elif not interrupted and c.step != c.last_eval_step and self.val_split:
            loss = self._val_loss()     # a last report; the schedule and patience do not see it
            best = loss < c.best_val_loss
            c.best_val_loss = min(c.best_val_loss, loss)
            if self.main:
                self.metrics.write(step=c.step, epoch=c.epoch + c.batch / self.batches.num_batches,
                                   **val_metrics(loss), elapsed=c.elapsed)
            self.say(f"step {c.step}: val loss {loss:.4f}{' (best)' if best else ''}")
        if not np.isfinite(run.model.params).all():     # never saved; latest.h5 stays good
            reason += f"; the weights at step {c.step} were NaN or inf and were not saved"
        elif c.step != self.saved_step:
            self._save(best=best)
        self.bar.close()
        if self.main:
            self.metrics.write(event="stop", step=c.step, reason=reason)
        self.say(f"{reason}; checkpoint {self.run_dir / 'latest.h5'} (step {self.saved_step})" +
                 (f"; continue with: rnnkit train --resume {self.run_dir}" if interrupted else ""))
        return TrainResult(str(self.run_dir), c.step, c.epoch, c.best_val_loss, reason,
                           interrupted)
