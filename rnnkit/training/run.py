"""A training run's state: everything that changes as it trains and goes into a checkpoint.

`Run.build` makes the model, optimizer, schedule and dropout RNG from a TrainConfig on a
backend; `run.checkpoint()` captures the whole state on the host and `run.restore(ck)` puts it
back, so a run resumed from a checkpoint continues bit for bit where it stopped. (A trained
model alone, for generate and eval: rnnkit/tools/load.py.)

With several ranks (rnnkit/training/distributed.py) each holds its share of the N streams' carried
state and its own dropout RNG; a checkpoint holds the whole (L, N, H) state and every rank's
RNG state, so a resume with as many ranks is exact, and one with another number of ranks that
divides N takes each rank's share of the state (and, with dropout, RNG streams derived from
the stored ones).
"""
import dataclasses
import hashlib
import json
import math

import numpy as np

from rnnkit.training.checkpoint import Checkpoint
from rnnkit.training.distributed import split_streams
from rnnkit.model.config import (ConfigError, ModelConfig, OptimConfig, ScheduleConfig,
                                 TrainConfig, flag)
from rnnkit.model.config_file import from_dict
from rnnkit.model.network import Model, WeightsMismatch
from rnnkit.model.optim import DEFAULTS, make_optimizer
from rnnkit.model import schedule as schedules


def optimizer_options(section):
    """Hyper-parameters for the chosen optimizer. A setting that it does not use, changed from
    its default, is an error rather than silently ignored (momentum with adam, say)."""
    name = section.optimizer
    if name not in DEFAULTS:
        raise ConfigError(f"[optim] optimizer: unknown optimizer {name!r}; choose one of "
                          f"{', '.join(DEFAULTS)}")
    defaults = OptimConfig()
    options = {}
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if f.name in ("optimizer", "clip_norm", "clip_value") or value is None:
            continue
        if f.name in DEFAULTS[name]:
            options[f.name] = value
        elif value != getattr(defaults, f.name):
            takers = [n for n, d in DEFAULTS.items() if f.name in d]
            raise ConfigError(f"[optim] {f.name} does not apply to {name} "
                              f"({flag(f.name)}: {', '.join(takers)} only)")
    if section.clip_norm < 0 or section.clip_value < 0:
        raise ConfigError("[optim] clip_norm and clip_value must be >= 0 (0 turns them off)")
    return options


def unused_settings(cfg, validates):
    """A new run's setting that would do nothing, changed from its default, is an error, as
    an optimizer's is (optimizer_options): cutoffs without the adaptive softmax, a schedule's
    key for another schedule, and early stopping or the plateau schedule without validation
    (`validates`: the run has a validation split)."""
    m, s = cfg.model, cfg.schedule
    if m.softmax != "adaptive":
        for key in ("cutoffs", "div_value", "head_bias"):
            if getattr(m, key) != getattr(ModelConfig(), key):
                raise ConfigError(f"[model] {key} applies to softmax = adaptive only "
                                  f"(--softmax adaptive)")
    if s.schedule in schedules.SCHEDULES:
        used = schedules.keys(s)
        for f in dataclasses.fields(s):
            if f.name != "schedule" and f.name not in used and \
                    getattr(s, f.name) != getattr(ScheduleConfig(), f.name):
                takers = [n for n, c in schedules.SCHEDULES.items()
                          if f.name in schedules.keys(dataclasses.replace(s, schedule=n))]
                raise ConfigError(f"[schedule] {f.name} does not apply to the {s.schedule} "
                                  f"schedule ({flag(f.name)}: {', '.join(takers)} only)")
    if not validates:
        why = ("--val-split ''" if not cfg.data.val_split else
               f"the corpus has no {cfg.data.val_split!r} split")
        if cfg.train.patience:
            raise ConfigError(f"[train] patience stops when validation stops improving, and "
                              f"this run has none ({why})")
        if s.schedule == "plateau":
            raise ConfigError(f"the plateau schedule decays on validation, and this run has "
                              f"none ({why})")
        for key in ("eval_every", "eval_batches"):
            if getattr(cfg.train, key):
                raise ConfigError(f"[train] {key} sets when and how much to validate, and "
                                  f"this run has no validation ({why})")


@dataclasses.dataclass
class Counters:
    step: int = 0                 # optimizer updates done
    epoch: int = 0                # passes over the training split done
    batch: int = 0                # batches of the current pass done
    elapsed: float = 0.0          # training seconds, over all sessions of the run
    best_val_loss: float = math.inf   # best.h5's: the lowest of every validation
    # the lowest of the validations every eval_every steps (or epoch) alone, which early
    # stopping counts from: the one at a limit's stop is not among them, so a run stopped and
    # resumed decides as one that was not
    best_scheduled: float = math.inf
    bad_evals: int = 0            # validations since the best one (early stopping)
    last_eval_step: int = -1      # step of the last validation (not repeated on resume)
    # the steps since the last train_loss line: their summed loss, count and seconds, kept
    # over a stop so that the next line is the one an uninterrupted run writes
    window_loss: float = 0.0
    window_steps: int = 0
    window_s: float = 0.0


class Run:
    def __init__(self, cfg, model, optimizer, schedule, rng, vocab, encoding, comm):
        self.cfg, self.model, self.optimizer = cfg, model, optimizer
        self.schedule, self.rng, self.comm = schedule, rng, comm
        self.vocab, self.encoding = vocab, encoding
        self.counters = Counters()
        self.state = None           # carried hidden state, set by the loop
        self.corpus = None          # the fingerprint of its corpus (Corpus.fingerprint)
        self.new_corpus = False     # this session resumed it on another corpus (--new-corpus)

    @classmethod
    def build(cls, cfg, vocab, encoding, backend, comm):
        cfg.model.vocab_size = len(vocab)
        cfg.model.check()
        model = Model(cfg.model, seed=cfg.train.seed, backend=backend)
        try:
            optimizer = make_optimizer(cfg.optim.optimizer, model.params, backend,
                                       **optimizer_options(cfg.optim))
            schedule = schedules.from_config(cfg.schedule, cfg.optim.lr)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        # its own stream: the model's initial weights use default_rng(seed) already; one
        # stream per rank (a single process keeps the stream it always had)
        rng = backend.rng(rng_seed(cfg.train.seed, comm.rank, comm.size))
        return cls(cfg, model, optimizer, schedule, rng, vocab, encoding, comm)

    def checkpoint(self):
        """The run's state, whole: on every rank (collective: all ranks call it together). Its
        weights and optimizer state are views of the live arrays where those are on the host:
        write it before the next step changes them."""
        c, b, comm = self.counters, self.model.backend, self.comm
        rng = b.rng_state(self.rng)
        state = self.model.state_to_host(self.state)
        if comm.size > 1:
            rngs = comm.gather(rng)
            rng = {"bit_generator": rngs[0]["bit_generator"], "ranks": rngs}
            shares = comm.gather(state)
            state = {k: np.concatenate([s[k] for s in shares], axis=1) for k in state}
        return Checkpoint(
            config=self.cfg.to_dict(),
            weights={name: b.host_view(w) for name, w in self.model.p.items()},
            optimizer=self.optimizer.state_dict(copy=False), schedule=self.schedule.state_dict(),
            rng=rng, state=state,
            vocab=self.vocab, encoding=self.encoding, step=c.step, epoch=c.epoch,
            batch=c.batch, elapsed=c.elapsed, best_val_loss=c.best_val_loss,
            meta={"bad_evals": c.bad_evals, "last_eval_step": c.last_eval_step,
                  "best_scheduled": c.best_scheduled, "window_loss": c.window_loss,
                  "window_steps": c.window_steps, "window_s": c.window_s,
                  **({"corpus": json.dumps(self.corpus)} if self.corpus else {})})

    def restore(self, ck):
        """Put the state of checkpoint `ck` back (same architecture and settings)."""
        model, b = self.model, self.model.backend
        try:
            model.load_weights(ck.weights)
        except WeightsMismatch as err:
            raise ConfigError(f"checkpoint parameter {err.name!r} is missing or has another "
                              f"shape; was the model changed?") from None
        self.optimizer.load_state_dict(ck.optimizer)
        self.schedule.load_state_dict(ck.schedule)
        comm = self.comm
        stored = ck.rng.get("ranks", [ck.rng])
        if len(stored) == comm.size:
            b.set_rng_state(self.rng, stored[comm.rank])
        else:                       # another number of ranks: streams derived from the stored
            text = json.dumps(stored[comm.rank % len(stored)], sort_keys=True).encode()
            seed = int.from_bytes(hashlib.sha256(text).digest()[:8], "little")
            self.rng = b.rng([seed, comm.rank, comm.size])
        self.state = model.state_from_host(
            {k: split_streams(np.asarray(v), comm.rank, comm.size) for k, v in ck.state.items()})
        restored = Counters(
            step=ck.step, epoch=ck.epoch, batch=ck.batch, elapsed=ck.elapsed,
            best_val_loss=ck.best_val_loss, bad_evals=int(ck.meta.get("bad_evals", 0)),
            best_scheduled=float(ck.meta.get("best_scheduled", ck.best_val_loss)),
            last_eval_step=int(ck.meta.get("last_eval_step", -1)),
            window_loss=float(ck.meta.get("window_loss", 0.0)),
            window_steps=int(ck.meta.get("window_steps", 0)),
            window_s=float(ck.meta.get("window_s", 0.0)))
        for f in dataclasses.fields(Counters):      # in place: the loop holds self.counters
            setattr(self.counters, f.name, getattr(restored, f.name))


    def ended(self, patience):
        """Why the run's own rule ended it (early stopping, the plateau schedule), or None: a
        resume then trains no further (it took more steps, each resume a few)."""
        c = self.counters
        if patience and c.bad_evals >= patience:
            return (f"early stopping ended this run (no better validation loss in "
                    f"{c.bad_evals} evaluations); raise --patience to train further")
        if self.schedule.stop:
            return ("the plateau schedule ended this run (the validation loss stopped "
                    "improving after its last lr decay)")
        return None


def rng_seed(seed, rank, size):
    """The dropout RNG's seed of one rank."""
    return [seed, 1] if size == 1 else [seed, 1, rank]


def config_from_checkpoint(ck):
    """The TrainConfig stored in a checkpoint."""
    from rnnkit.training.checkpoint import CheckpointError

    try:
        return from_dict(ck.config, TrainConfig())
    except ConfigError as err:
        raise CheckpointError(f"the config stored in the checkpoint is not usable: {err}") \
            from None
