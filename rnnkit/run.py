"""A training run's state: everything that changes as it trains and goes into a checkpoint.

`Run.build` makes the model, optimizer, schedule and dropout RNG from a TrainConfig;
`run.checkpoint()` captures the whole state and `run.restore(ck)` puts it back, so a run
resumed from a checkpoint continues bit for bit (with one thread) where it stopped.
`load_model(path)` gives a trained model and its text codec from any checkpoint.
"""
import dataclasses
import math

import numpy as np

from rnnkit.checkpoint import Checkpoint, CheckpointError, load
from rnnkit.model import Model, ModelConfig, State
from rnnkit.optim import DEFAULTS, make_optimizer
from rnnkit.schedule import make_schedule
from rnnkit.textcodec import TextCodec
from rnnkit.train_config import ConfigError, OptimSection, TrainConfig, from_dict


def model_config(cfg, vocab_size):
    """The ModelConfig of a TrainConfig for a vocabulary of `vocab_size` tokens."""
    fields = dataclasses.asdict(cfg.model)
    fields.pop("dtype")
    try:
        return ModelConfig(vocab_size=vocab_size, **fields)
    except ValueError as err:
        raise ConfigError(f"[model] {err}") from None


def optimizer_options(section):
    """Hyper-parameters for the chosen optimizer. A setting that it does not use, changed from
    its default, is an error rather than silently ignored (momentum with adam, say)."""
    name = section.name
    if name not in DEFAULTS:
        raise ConfigError(f"[optim] name: unknown optimizer {name!r}; choose one of "
                          f"{', '.join(DEFAULTS)}")
    defaults = OptimSection()
    options = {}
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        if f.name in ("name", "clip_norm", "clip_value") or value is None:
            continue
        if f.name in DEFAULTS[name]:
            options[f.name] = value
        elif value != getattr(defaults, f.name):
            raise ConfigError(f"[optim] {f.name} does not apply to {name}")
    if section.clip_norm < 0 or section.clip_value < 0:
        raise ConfigError("[optim] clip_norm and clip_value must be >= 0 (0 turns them off)")
    return options


def schedule_options(section):
    s = section
    options = {"constant": {}, "step": dict(every=s.every, factor=s.factor,
                                                  start=None if s.start < 0 else s.start),
               "cosine": dict(warmup=s.warmup, total=s.total, min_lr=s.min_lr),
               "plateau": dict(threshold=s.threshold, factor=s.factor,
                               max_halvings=s.max_halvings)}
    if s.name not in options:
        raise ConfigError(f"[schedule] name: unknown schedule {s.name!r}; choose one of "
                          f"{', '.join(options)}")
    return options[s.name]


@dataclasses.dataclass
class Counters:
    step: int = 0                 # optimizer updates done
    epoch: int = 0                # passes over the training split done
    batch: int = 0                # batches of the current pass done
    elapsed: float = 0.0          # training seconds, over all sessions of the run
    best_val_loss: float = math.inf
    bad_evals: int = 0            # validations since the best one (early stopping)
    last_eval_step: int = -1      # step of the last validation (not repeated on resume)


class Run:
    def __init__(self, cfg, model, optimizer, schedule, rng, vocab, encoding):
        self.cfg, self.model, self.optimizer = cfg, model, optimizer
        self.schedule, self.rng = schedule, rng
        self.vocab, self.encoding = vocab, encoding
        self.counters = Counters()
        self.state = None           # carried hidden state, set by the loop

    @classmethod
    def build(cls, cfg, vocab, encoding):
        if cfg.model.dtype not in ("float32", "float64"):
            raise ConfigError("[model] dtype must be float32 or float64")
        model = Model(model_config(cfg, len(vocab)), dtype=np.dtype(cfg.model.dtype),
                      seed=cfg.train.seed)
        try:
            optimizer = make_optimizer(cfg.optim.name, model.params,
                                       **optimizer_options(cfg.optim))
            schedule = make_schedule(cfg.schedule.name, cfg.optim.lr,
                                     **schedule_options(cfg.schedule))
        except ValueError as err:
            raise ConfigError(str(err)) from None
        # its own stream: the model's initial weights use default_rng(seed) already.
        rng = np.random.default_rng([cfg.train.seed, 1])
        return cls(cfg, model, optimizer, schedule, rng, vocab, encoding)

    def checkpoint(self):
        c = self.counters
        return Checkpoint(
            config=self.cfg.to_dict(),
            weights={name: w.copy() for name, w in self.model.p.items()},
            optimizer=self.optimizer.state_dict(), schedule=self.schedule.state_dict(),
            rng=self.rng.bit_generator.state,
            state={k: v.copy() for k, v in self.state.arrays().items()},
            vocab=self.vocab, encoding=self.encoding, step=c.step, epoch=c.epoch,
            batch=c.batch, elapsed=c.elapsed, best_val_loss=c.best_val_loss,
            meta={"bad_evals": c.bad_evals, "last_eval_step": c.last_eval_step})

    def restore(self, ck):
        """Put the state of checkpoint `ck` back (same architecture and settings)."""
        for name, w in self.model.p.items():
            if name not in ck.weights or ck.weights[name].shape != w.shape:
                raise ConfigError(f"checkpoint parameter {name!r} is missing or has another "
                                  f"shape; was the model changed?")
            w[...] = ck.weights[name]
        self.optimizer.load_state_dict(ck.optimizer)
        self.schedule.load_state_dict(ck.schedule)
        self.rng.bit_generator.state = ck.rng
        self.state = State.from_arrays({k: v.astype(self.model.dtype)
                                        for k, v in ck.state.items()})
        restored = Counters(
            step=ck.step, epoch=ck.epoch, batch=ck.batch, elapsed=ck.elapsed,
            best_val_loss=ck.best_val_loss, bad_evals=int(ck.meta.get("bad_evals", 0)),
            last_eval_step=int(ck.meta.get("last_eval_step", -1)))
        for f in dataclasses.fields(Counters):      # in place: the loop holds self.counters
            setattr(self.counters, f.name, getattr(restored, f.name))


def config_from_checkpoint(ck):
    """The TrainConfig stored in a checkpoint."""
    try:
        return from_dict(ck.config, TrainConfig())
    except ConfigError as err:
        raise CheckpointError(f"the config stored in the checkpoint is not usable: {err}") \
            from None


def load_model(path):
    """(model, codec, checkpoint) from a checkpoint file: all that generate and eval need.
    Raises CheckpointError (one line) for a file that is not a usable checkpoint."""
    ck = load(path, weights_only=True)
    if ck.vocab is None:
        raise CheckpointError(f"{path}: the checkpoint has no vocabulary")
    cfg = config_from_checkpoint(ck)
    model = Model(model_config(cfg, len(ck.vocab)), dtype=np.dtype(cfg.model.dtype))
    for name, w in model.p.items():
        if name not in ck.weights or ck.weights[name].shape != w.shape:
            raise CheckpointError(f"{path}: parameter {name!r} is missing or has the wrong "
                                  f"shape for the stored model config")
        w[...] = ck.weights[name]
    return model, TextCodec(ck.vocab, ck.encoding), ck
