"""The training configuration: dataclasses, read from TOML, overridden by flags, saved with runs.

A config file has one table per section, with the field names below as keys:

    [model]
    cell = "lstm"
    hidden = 256
    [optim]
    name = "adam"
    lr = 2e-3
    [train]
    max_time = "30m"

Unknown sections or keys and values of the wrong type are errors (ConfigError, one line). The
resolved config (defaults, file and flags together) is written to RUN_DIR/config.toml and stored
in every checkpoint, and a resumed run takes everything but the [train] limits from there.
Defaults follow torch-rnn's train.lua unless a comment says otherwise.
"""
import dataclasses
import math
import re
import sys
from dataclasses import dataclass, field
from typing import Optional, get_type_hints

from rnnkit.errors import RnnkitError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigError(RnnkitError, ValueError):
    """A config that cannot be used; the message is one line for the user."""


@dataclass
class ModelSection:
    cell: str = "lstm"            # rnn-tanh | rnn-relu | lstm | gru; LSTM learns text best
    embed: int = 64               # E: torch-rnn's wordvec_size
    hidden: int = 128             # H: torch-rnn's rnn_size
    layers: int = 2               # L: torch-rnn's num_layers
    dropout: float = 0.0          # between layers; 0 (torch-rnn) keeps small models exact
    tie_weights: bool = False     # share embedding and output matrix (needs embed == hidden)
    dtype: str = "float32"        # float32 trains; float64 for checks


@dataclass
class DataSection:
    corpus: str = ""              # the corpus .h5 written by `rnnkit preprocess`
    batch_size: int = 50          # N parallel streams per batch
    seq_len: int = 50             # T: steps of truncated backpropagation through time
    train_split: str = "train"    # split to train on
    val_split: str = "val"        # split to validate on ("" for none)


@dataclass
class OptimSection:
    name: str = "adam"            # sgd | adam | adamw | rmsprop | adagrad
    lr: float = 2e-3              # base learning rate (torch-rnn's; PTB with SGD wants ~1)
    momentum: float = 0.0         # sgd and rmsprop only
    nesterov: bool = False        # sgd only
    weight_decay: Optional[float] = None  # None: the optimizer's PyTorch default
    beta1: float = 0.9            # adam/adamw (PyTorch's)
    beta2: float = 0.999          # adam/adamw (PyTorch's)
    alpha: float = 0.99           # rmsprop's smoothing (PyTorch's)
    centered: bool = False        # rmsprop only
    eps: Optional[float] = None   # None: the optimizer's PyTorch default
    clip_norm: float = 5.0        # global-norm clipping (torch-rnn's grad_clip); 0 is off
    clip_value: float = 0.0       # element-wise clipping to [-v, v]; 0 is off


@dataclass
class ScheduleSection:
    name: str = "constant"        # constant | step | cosine | plateau
    every: int = 5                # step: decay every this many epochs (torch-rnn)
    start: int = -1               # step: first decay after this many epochs; -1 = `every`
    factor: float = 0.5           # step and plateau: multiply the lr by this
    warmup: int = 0               # cosine: linear warm-up steps
    total: int = 0                # cosine: steps to reach min_lr; 0 = the run's step budget
    min_lr: float = 0.0           # cosine: final learning rate
    threshold: float = 0.003      # plateau: relative validation gain below this decays (rnnlm)
    max_halvings: int = 6         # plateau: stop training at the plateau after this many decays


@dataclass
class TrainSection:
    epochs: int = 50              # passes over the training split (torch-rnn's max_epochs)
    max_steps: int = 0            # stop after this many updates; 0 = no limit
    max_time: float = 0.0         # stop this session after so many seconds ("30m" too); 0: none
    eval_every: int = 0           # validate every this many steps; 0 = after each epoch
    eval_batches: int = 0         # validation batches per evaluation; 0 = the whole split
    patience: int = 0             # early stop after this many validations without a new best
    checkpoint_every: int = 1000  # steps between checkpoints besides those at validations
    keep: int = 0                 # keep this many step-N.h5 checkpoints besides latest/best
    log_every: int = 10           # steps between lines of metrics.jsonl
    seed: int = 0                 # weights, dropout masks: same seed, same run
    threads: int = 0              # kernel threads; 0 = all cores this process may use
    progress: bool = True         # progress bar on stderr


@dataclass
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    train: TrainSection = field(default_factory=TrainSection)

    def to_dict(self):
        return dataclasses.asdict(self)


SECTIONS = get_type_hints(TrainConfig)    # section name -> its dataclass
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(s|m|h|d)?\s*$")
_UNITS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text):
    """'90', '90s', '30m', '1.5h', '2d' -> seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    match = _DURATION.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a duration (e.g. 90s, 30m, 1.5h)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _coerce(where, kind, value):
    """Check `value` against the annotation `kind`; ints are accepted as floats."""
    optional = getattr(kind, "__args__", None)
    if optional:
        if value is None:
            return None
        kind = next(k for k in optional if k is not type(None))
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
        ok = ok and math.isfinite(value)
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise ConfigError(f"{where}: expected {kind.__name__}, got {value!r}")
    return value


def from_dict(data, base=None):
    """A TrainConfig from nested dicts, on top of `base` (default: the defaults)."""
    cfg = dataclasses.replace(base) if base else TrainConfig()
    if not isinstance(data, dict):
        raise ConfigError("config: expected tables [model], [data], [optim], [schedule], [train]")
    for section, values in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown config section [{section}]; known: "
                              f"{', '.join(SECTIONS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] must be a table of keys")
        kinds = get_type_hints(SECTIONS[section])
        current = dataclasses.replace(getattr(cfg, section))
        for key, value in values.items():
            if key not in kinds:
                raise ConfigError(f"unknown key {key!r} in [{section}]; known: "
                                  f"{', '.join(kinds)}")
            if section == "train" and key == "max_time" and isinstance(value, str):
                try:
                    value = parse_duration(value)
                except ValueError as err:
                    raise ConfigError(f"[train] max_time: {err}") from None
            setattr(current, key, _coerce(f"[{section}] {key}", kinds[key], value))
        setattr(cfg, section, current)
    return cfg


def load_toml(path):
    """Read a TOML config file into a TrainConfig."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    try:
        return from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def dump_toml(cfg):
    """The config as TOML text (None values, meaning 'the default', are left out)."""
    lines = ["# Resolved rnnkit training config; `rnnkit train --config` reads it back."]
    for section, values in cfg.to_dict().items():
        lines.append(f"\n[{section}]")
        lines += [f"{key} = {_toml_value(v)}" for key, v in values.items() if v is not None]
    return "\n".join(lines) + "\n"
