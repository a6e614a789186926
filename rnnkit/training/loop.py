"""The training loop, read top to bottom in nanoGPT's order.

Each step: learning rate; evaluate and checkpoint when due; forward and backward; average the
gradients across processes; clip; optimizer step; log; stopping conditions. The hidden state
is carried from batch to batch and reset at each pass over the data (truncated BPTT).

Checkpoints (checkpoint.py) go to RUN_DIR/latest.h5 at the start, every validation, every
`checkpoint_every` steps and the end; best.h5 has the lowest validation loss. A NaN or inf never
reaches one: the run rolls back to latest.h5 with the rate halved (MAX_ROLLBACKS at most).

Every decision to stop is taken by rank 0 and sent to all ranks (comm.decide), so all leave at
the same step. With --max-time the loop stops early enough for the final validation and
checkpoint to end within it (a validation that would not fit is cut, and reported as partial).
"""
import dataclasses
import math
import time

from rnnkit.training import checkpoint
from rnnkit.model import softmax
from rnnkit.errors import TrainError
from rnnkit.training.evaluate import validation_batches, validation_loss
from rnnkit.model.optim import clip_gradients
from rnnkit.training.paths import portable
from rnnkit.training.folder import METRICS
from rnnkit.training.runtime import Runtime, kept
from rnnkit.training.clock import compiled_line, duration, eta
from rnnkit.training.log import Metrics, ProgressBar, val_line, val_metrics

MAX_ROLLBACKS = 3
MARGIN_S = 1.0                   # kept free before a --max-time deadline (at most 5% of it)


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


class Loop:
    def __init__(self, run, corpus, batches, folder, comm, stream, total_steps, deadline):
        self.run, self.corpus, self.batches = run, corpus, batches
        self.folder, self.run_dir = folder, folder.path
        self.comm, self.cfg, self.total, self.deadline = comm, run.cfg, total_steps, deadline
        self.main = comm.rank == 0
        self.metrics = Metrics(self.run_dir / METRICS)
        self.bar = ProgressBar(total_steps, run.cfg.train.progress and self.main, stream)
        self.rollbacks = 0          # rollbacks since the last checkpoint
        self.saved_step = run.counters.step     # step of latest.h5
        self.val_split = run.cfg.data.val_split
        # a validation split the corpus lacks: none (said in _start)
        self.missing_val = "" if self.val_split in corpus.splits else self.val_split
        if self.missing_val:
            self.val_split = ""
        self.first_step = run.counters.step
        self.step_s = 0.0           # seconds of the last step, of the last checkpoint, ...
        self.save_s = 0.0
        self.val_batch_s = None     # ... and of one validation batch
        self.runtime = Runtime(run.model.backend)   # compiling ahead, pacing threads
        # between steps only the allreduce, clipping and the optimizer touch the gradients,
        # each told the runs that can be non-zero (model/sparse_rows.py)
        run.model.sparse_embedding = True

    def say(self, text):
        if self.main:
            self.bar.message(text)

    def go(self, signals, resumed):
        self.signals = signals
        try:
            return self._go(signals, resumed)
        finally:
            self.runtime.end()      # what prepare() held for this run (the CPU's thread cap)

    def _go(self, signals, resumed):
        run, c, cfg = self.run, self.run.counters, self.cfg
        model, opt, t_cfg = run.model, run.optimizer, cfg.train
        N, T = cfg.data.batch_size, cfg.data.seq_len
        nb = self.batches.num_batches
        early = self.comm.decide(self._limit_reason(signals))
        if early:
            stopped = early.startswith("stopped by")
            if stopped or not resumed:
                self.say(f"stopped before the first step: {early}")
                return TrainResult(str(self.run_dir), c.step, c.epoch, c.best_val_loss, early,
                                   interrupted=stopped)
            self.say(f"nothing to do: {early} already; raise --epochs, --max-steps or "
                     f"--max-time to train further")
            return TrainResult(str(self.run_dir), c.step, c.epoch, c.best_val_loss,
                               "limit reached before resuming")
        ended = self.comm.decide(run.ended(t_cfg.patience) if resumed else None)
        if ended:
            self.say(f"nothing to do: {ended}")
            return TrainResult(str(self.run_dir), c.step, c.epoch, c.best_val_loss, ended)
        self._start(resumed, nb)
        it = self._iterate()
        started, elapsed0 = time.monotonic(), c.elapsed     # compiling ahead counts, as before
        self.runtime.prepare(model, N // self.comm.size, T, cfg.optim.optimizer)
        self.runtime.begin()
        tick, norm = time.monotonic(), 0.0      # the rate leaves the session's start out
        reason = None
        while True:
            # 1. evaluate and checkpoint, before the step's rate: the schedule sees the
            # validation first (plateau), as a run resumed here would. A validation due at the
            # step a run stopped on (a signal skips it) is done when it resumes.
            due_eval = self._due_eval()
            due_save = t_cfg.checkpoint_every and c.step % t_cfg.checkpoint_every == 0
            if due_eval or (due_save and c.step != self.saved_step):
                if self.comm.decide(not model.backend.all_finite(model.params)):
                    it = self._rollback("the weights are NaN or inf", c.step)
                    continue
                reason, improved = self._validate(run.schedule.lr(c.step, c.epoch)) \
                    if due_eval else (None, False)
                self._save(best=improved)
                if reason:
                    break
                tick = time.monotonic()     # the rate is the steps': validation left out

            # 2. the learning rate of this step
            lr = run.schedule.lr(c.step, c.epoch)
            opt.lr = lr

            # 3. forward and backward
            x, y = next(it)
            work_started = time.perf_counter()
            loss, state = model.forward_backward(x, y, run.state, run.rng)

            # 4. average gradients over processes (a no-op with one process): over the rows
            # that any rank's ids name, when the model skips the others
            if self.comm.size > 1 and model.skips_rows():
                model.share_ranges(self.comm.gather(x))
            self.comm.average(model.grads, model.backend, model.grad_ranges)
            loss = self.comm.mean(loss)

            # 5. clip
            norm = clip_gradients(model.grads, cfg.optim.clip_norm, cfg.optim.clip_value,
                                  model.backend, model.grad_ranges)
            if self.comm.decide(not (math.isfinite(loss) and math.isfinite(norm))):
                it = self._rollback(f"the loss was {loss} and the gradient norm {norm}")
                continue

            # 6. update
            opt.step(model.grads, model.grad_ranges)
            self.step_s = time.perf_counter() - work_started
            self.runtime.observe(N * T // self.comm.size, self.step_s)
            if c.step == self.first_step:
                self.comm.armed()       # compiling is over: a rank that waits long is lost
                if self.compiling:
                    self.say(compiled_line(time.monotonic() - started, self.deadline))
                # the ETA's pace: from after the first step, which compiles or loads kernels
                paced = (time.monotonic(), c.step + 1)
            run.state = state
            c.step += 1
            c.batch += 1
            self.folder.stepped = True
            if c.batch == nb:               # end of a pass: the next one starts afresh
                c.epoch, c.batch = c.epoch + 1, 0
                run.state = model.init_state(N // self.comm.size)
                it = self._iterate()
            c.elapsed = elapsed0 + time.monotonic() - started

            # 7. log (the window since the last line is in the counters: a stop keeps it)
            now = time.monotonic()
            c.window_loss, c.window_steps = c.window_loss + loss, c.window_steps + 1
            c.window_s, tick = c.window_s + now - tick, now
            rate = N * T * c.window_steps / max(c.window_s, 1e-9)
            if c.step % t_cfg.log_every == 0 and self.main:
                self.metrics.write(step=c.step, epoch=c.epoch + c.batch / nb,
                                   train_loss=c.window_loss / c.window_steps, lr=lr,
                                   grad_norm=norm, tokens_per_s=rate, elapsed=c.elapsed)
            if c.step % t_cfg.log_every == 0:
                c.window_loss, c.window_steps, c.window_s = 0.0, 0, 0.0
            self.bar.update(c.step, loss, rate, eta(now - paced[0], c.step, paced[1],
                                                    self.total, self.deadline))

            # 8. stop? Not with weights that the last update made NaN or inf, which would not
            # be saved: roll back as before a checkpoint (a signal stops at once all the same)
            reason = self.comm.decide(self._limit_reason(signals))
            if reason and not reason.startswith("stopped by") and \
                    self.comm.decide(not model.backend.all_finite(model.params)):
                it = self._rollback("the weights are NaN or inf", c.step)
                continue
            if reason:
                break
        return self._finish(reason, signals)

    # -- the parts of a step -------------------------------------------------------------------
    def _start(self, resumed, nb):
        run, c = self.run, self.run.counters
        m = run.cfg.model
        if self.main:
            moved = {"reason": f"new corpus {run.cfg.data.corpus}"} if run.new_corpus else {}
            self.metrics.truncate_after(c.step)
            self.metrics.write(event="resume" if resumed else "start", step=c.step,
                               target=run.model.backend.target(), **moved)
        what = f"resuming at step {c.step}" if resumed else "new run"
        out = softmax.describe(dataclasses.asdict(m))
        self.say(f"{m.cell} {m.layers}x{m.hidden}, {out + ', ' if out else ''}"
                 f"{run.model.num_params():,} parameters; "
                 f"{self.corpus.len_split(run.cfg.data.train_split):,} training tokens, "
                 f"{nb:,} batches per epoch; {what} in {self.run_dir}")
        if self.missing_val:
            self.say(f"note: the corpus has no {self.missing_val!r} split; no validation")
        if not resumed:
            self._save(best=False)      # the rollback point, and proof that saving works
        self.compiling = self.runtime.compiling(run.model)
        if self.compiling:
            self.say(f"compiling the {m.cell} kernels for {run.model.backend.compiles_for()}: "
                     f"the first step waits for it; {kept()}")

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
        if not self.val_split:
            c.last_eval_step = c.step
            return None, False
        loss, received = self._val_loss()
        if loss is None:                # done when the run resumes, as a skipped one is
            self.say(f"step {c.step}: validation stopped by {received}")
            return f"stopped by {received}", False
        c.last_eval_step = c.step
        if loss < c.best_scheduled:
            c.best_scheduled, c.bad_evals = loss, 0
        else:
            c.bad_evals += 1
        improved = loss < c.best_val_loss
        if improved:
            c.best_val_loss = loss
        run.schedule.observe(loss)
        numbers = val_metrics(loss)
        if self.main:
            self.metrics.write(step=c.step, epoch=c.epoch + c.batch / self.batches.num_batches,
                               **numbers, lr=lr, elapsed=c.elapsed)
        self.say(val_line(c.step, loss, " (best)" if improved else ""))
        reason = None
        if t_cfg.patience and c.bad_evals >= t_cfg.patience:
            reason = f"early stopping: no better validation loss in {c.bad_evals} evaluations"
        elif run.schedule.stop:
            reason = "plateau: the validation loss stopped improving after the last lr decay"
        return self.comm.decide(reason), improved

    def _val_batches(self):
        return validation_batches(self.corpus, self.val_split, self.cfg, self.comm)

    def _val_loss(self, max_batches=0):
        """(validation loss over all ranks' streams, batches evaluated); (None, signal) when a
        signal stopped it (a long validation must not outlast a scheduler's grace time)."""
        batches, count = self._val_batches()
        count = min(count, max_batches) if max_batches else count
        started = time.perf_counter()
        loss = validation_loss(self.run.model, batches, count, self.comm,
                               stop=lambda: self.signals.received is not None)
        received = self.comm.first(self.signals.received)
        if received:
            return None, received
        self.val_batch_s = (time.perf_counter() - started) / max(1, count)
        return loss, count

    def _save(self, best):
        self.rollbacks, self.saved_step = 0, self.run.counters.step
        started = time.perf_counter()
        ck = self.run.checkpoint()      # every rank: the state and RNGs are gathered
        ck.config = portable(ck.config, self.run_dir)
        # the others wait for rank 0's write: allow them ten times its last one
        allowance = 10 * self.comm.decide(self.save_s)
        if self.main:
            checkpoint.save_run(self.run_dir, ck, keep=self.cfg.train.keep, best=best)
            self.folder.write_config(ck.config)
        self.save_s = time.perf_counter() - started
        self.comm.barrier(allowance)    # nobody reads latest.h5 before it is whole

    def _rollback(self, what, bad_step=None):
        """Back to latest.h5 with the rate halved; `bad_step`: the step that went wrong (by
        default the one under way)."""
        run, c = self.run, self.run.counters
        bad_step = c.step + 1 if bad_step is None else bad_step
        self.rollbacks += 1
        if self.rollbacks > MAX_ROLLBACKS:
            err = Diverged(f"training diverged: {what} at step {bad_step} after {MAX_ROLLBACKS} "
                           f"rollbacks, each halving the learning rate; the last good "
                           f"checkpoint is {self.run_dir / 'latest.h5'}; try a lower --lr or "
                           f"--clip-norm")
            err.shared, err.quiet = True, not self.main     # decided on rank 0: it says it
            if self.main:       # the log reads as the run that latest.h5 resumes, stopped
                self.metrics.rewound(self.saved_step, event="stop",
                                     reason=f"diverged ({what} at step {bad_step})")
            raise err
        ck = checkpoint.load(self.run_dir / "latest.h5")
        run.restore(ck)
        self.saved_step = c.step
        run.schedule.scale *= 0.5 ** self.rollbacks
        self.say(f"warning: {what} at step {bad_step}; rolled back to step {c.step} and "
                 f"halved the learning rate ({run.schedule.lr(c.step, c.epoch):.3g})")
        if self.main:
            self.metrics.rewound(c.step, event="rollback", from_step=bad_step,
                                 lr_scale=run.schedule.scale)
        return self._iterate()

    def _finish_reserve(self):
        """Seconds to keep for the final validation and checkpoint before a deadline."""
        if not self.deadline:
            return 0.0
        val = 0.0
        if self.val_split and self._due_final_validation():
            _, count = self._val_batches()
            per = self.val_batch_s if self.val_batch_s is not None else self.step_s / 2
            val = count * per
        # never keep more than a tenth of the budget: a long validation gets cut instead
        return min(val, 0.1 * self.deadline.seconds) + self.save_s + self._margin()

    def _margin(self):
        return min(MARGIN_S, 0.05 * self.deadline.seconds)

    def _due_final_validation(self):
        c = self.run.counters
        return c.step != c.last_eval_step

    def _limit_reason(self, signals):
        c, t = self.run.counters, self.cfg.train
        received = self.comm.first(signals.received)    # a signal to any rank stops all
        if received:
            return f"stopped by {received}"
        if t.epochs and c.epoch >= t.epochs:
            return f"{t.epochs} epochs done"
        if t.max_steps and c.step >= t.max_steps:
            return f"{t.max_steps} steps done"
        if self.deadline and self.deadline.left() < self.step_s + self._finish_reserve():
            return f"time limit of {duration(t.max_time)} reached"
        return None

    def _finish(self, reason, signals):
        run, c = self.run, self.run.counters
        interrupted = reason.startswith("stopped by")
        best = False
        if not interrupted and self._due_eval():
            best = self._validate(run.schedule.lr(c.step, c.epoch))[1]
        elif not interrupted and self._due_final_validation() and self.val_split:
            best = self._final_validation()
        if self.comm.decide(not run.model.backend.all_finite(run.model.params)):  # not saved
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

    def _final_validation(self):
        """A last report; the schedule and patience do not see it (Counters.best_scheduled).
        Under a deadline it covers the batches that fit, and then it does not decide best.h5.
        Returns whether best."""
        c = self.run.counters
        _, count = self._val_batches()
        allowed = count
        if self.deadline and self.val_batch_s:
            room = self.deadline.left() - self.save_s - self._margin()
            allowed = self.comm.decide(max(0, min(count, int(room / self.val_batch_s))))
        if allowed == 0:
            self.say(f"step {c.step}: no time left for a final validation")
            return False
        loss, done = self._val_loss(max_batches=allowed)
        if loss is None:
            self.say(f"step {c.step}: the final validation stopped by {done}")
            return False
        partial = done < count
        best = not partial and loss < c.best_val_loss
        if best:
            c.best_val_loss = loss
        if self.main:
            self.metrics.write(step=c.step, epoch=c.epoch + c.batch / self.batches.num_batches,
                               **val_metrics(loss), lr=self.run.schedule.lr(c.step, c.epoch),
                               elapsed=c.elapsed, **({"val_batches": done} if partial else {}))
        self.say(val_line(c.step, loss, f" (on {done} of {count} batches: the time limit)"
                           if partial else " (best)" if best else ""))
        return best

