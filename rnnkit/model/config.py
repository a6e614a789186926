"""The configuration of a run: one dataclass per TOML table, each field with its help text.

    [model]                   # what is trained: ModelConfig
    cell = "lstm"
    hidden = 256
    [data]                    # what it is trained on: DataConfig
    batch_size = 64
    [optim]                   # how: OptimConfig
    optimizer = "adam"
    lr = 2e-3
    [schedule]                # the learning rate over time: ScheduleConfig
    schedule = "cosine"
    [train]                   # how long, how often to validate and save: LoopConfig
    max_time = "30m"

A key and its `rnnkit train` flag share their name ([optim] lr is --lr, [train] max_steps is
--max-steps); the flags are generated from these fields (cli/train.py), and dump_toml
writes the same help text as comments. Unknown sections or keys and values of the wrong type are
errors (ConfigError, one line). The resolved config (defaults, file and flags together) is
written to RUN_DIR/config.toml and stored in every checkpoint, and a resumed run takes
everything but [train] from there. Defaults follow torch-rnn's train.lua unless the help says
otherwise. Reading and writing configs (dicts, TOML files, durations, the flag table):
rnnkit/model/config_file.py.
"""
import dataclasses
from dataclasses import dataclass, field
from typing import Optional, get_type_hints

from rnnkit import cells
from rnnkit.model import optim, schedule, softmax
from rnnkit.errors import ArgumentTypeError, RnnkitError

CELLS = cells.NAMES
OPTIMIZERS = tuple(optim.OPTIMIZERS)
SCHEDULES = tuple(schedule.SCHEDULES)


class ConfigError(RnnkitError, ValueError):
    """A config that cannot be used; the message is one line for the user."""


class ConfigTypeError(ConfigError, ArgumentTypeError):
    """A setting of the wrong type (a str for a number): also a TypeError, as the API's other
    arguments of the wrong type (rnnkit.errors.ArgumentTypeError)."""


def setting(default, help, kind=None, aliases=(), show=None, key=True):
    """A config field. kind: ("choice", values), ("range", low, high, low_open, high_open) or
    ("duration",), else the annotation's type; aliases: more flags for it; show: how the flag's
    help shows the default; key=False: not a key or flag (set by rnnkit itself)."""
    return field(default=default, metadata=dict(help=help, kind=kind, aliases=tuple(aliases),
                                                 show=show, key=key))


def at_least(low, open_=False):
    return ("range", low, None, open_, False)


def between(low, high, low_open=False, high_open=False):
    return ("range", low, high, low_open, high_open)



def flag(key):
    """The `rnnkit train` flag of a config key ([optim] weight_decay: --weight-decay)."""
    return "--" + key.replace("_", "-")

@dataclass(slots=True)
class ModelConfig:
    cell: str = setting("lstm", "Recurrent cell; LSTM learns text best.", ("choice", CELLS),
                        aliases=("--model",))
    embed: int = setting(64, "Token embedding size E (torch-rnn's wordvec_size).", at_least(1))
    hidden: int = setting(128, "State size H of each layer (torch-rnn's rnn_size).", at_least(1))
    layers: int = setting(2, "Recurrent layers L.", at_least(1))
    dropout: float = setting(0.0, "Dropout on the embedding, between layers and before the "
                             "output (0: off, as torch-rnn; exact small models).",
                             between(0, 1, high_open=True))
    tie_weights: bool = setting(False, "Share the embedding and output matrix (needs embed = "
                                "hidden).")
    dtype: str = setting("float32", "Parameter type: float32 trains, float64 checks.",
                         ("choice", ("float32", "float64")))
    softmax: str = setting("full", "Output layer: full softmax, or adaptive (Grave et al. "
                           "2017, PyTorch's AdaptiveLogSoftmaxWithLoss: for large "
                           "vocabularies).", ("choice", softmax.KINDS))
    cutoffs: str = setting("", "adaptive: the ids where the head's shortlist and each tail "
                           "cluster end, e.g. 2000,10000 (word ids go by frequency).",
                           ("ints",), show='"", adaptive needs it')
    div_value: float = setting(4.0, "adaptive: tail cluster i projects H to H / div_value^(i+1).",
                               at_least(0, open_=True))
    head_bias: bool = setting(False, "adaptive: a bias on the head (PyTorch's head_bias).")
    vocab_size: int = setting(0, "V, from the corpus.", key=False)

    def __post_init__(self):
        if not isinstance(self.cutoffs, str):       # a list, as TOML and Python write it
            try:
                self.cutoffs = softmax.join_cutoffs(self.cutoffs)
            except ValueError as err:
                raise ConfigError(f"[model] {err}") from None
        self.check()

    def check(self):
        """ConfigError (one line) unless every field has a usable value."""
        if self.cell not in CELLS:
            raise ConfigError(f"[model] cell must be one of {', '.join(CELLS)}, not {self.cell!r}")
        for name in ("embed", "hidden", "layers"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"[model] {name} must be at least 1")
        if self.vocab_size < 0:
            raise ConfigError("[model] vocab_size must be at least 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("[model] dropout must be in [0, 1)")
        if self.tie_weights and self.embed != self.hidden:
            raise ConfigError(f"[model] tie_weights needs embed == hidden ({self.embed} != "
                              f"{self.hidden})")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"[model] dtype must be float32 or float64, not {self.dtype!r}")
        try:
            softmax.check(self)
        except ValueError as err:
            raise ConfigError(f"[model] {err}") from None

    def clusters(self):
        """The adaptive softmax's Clusters (rnnkit/model/softmax.py), or None for a full one."""
        return softmax.Clusters.of(self)

    def shapes(self):
        """Name -> shape of every parameter, in storage order (rnnkit/cells.py)."""
        if self.vocab_size < 1:
            raise ConfigError("[model] vocab_size must be at least 1")
        V, E, H = self.vocab_size, self.embed, self.hidden
        out = {"embed": (V, E)}
        for layer in range(self.layers):
            for name, shape in cells.get(self.cell).params(E if layer == 0 else H, H).items():
                out[f"l{layer}.{name}"] = shape
        clusters = self.clusters()
        if clusters is not None:
            out.update(clusters.shapes())
            return out
        if not self.tie_weights:
            out["out.w"] = (V, H)
        out["out.b"] = (V,)
        return out


@dataclass(slots=True)
class DataConfig:
    corpus: str = setting("", "The corpus .h5 written by `rnnkit preprocess` (CORPUS).")
    batch_size: int = setting(50, "Parallel streams N per batch.", at_least(1))
    seq_len: int = setting(50, "Steps T of truncated backpropagation through time.", at_least(1))
    train_split: str = setting("train", "Split to train on.")
    val_split: str = setting("val", "Split to validate on (\"\": none).")


@dataclass(slots=True)
class OptimConfig:
    optimizer: str = setting("adam", "Optimizer: PyTorch's equations and defaults.",
                             ("choice", OPTIMIZERS))
    lr: float = setting(2e-3, "Base learning rate (torch-rnn's; PTB with SGD wants ~1).",
                        at_least(0, open_=True))
    momentum: float = setting(0.0, "Momentum (sgd, rmsprop).", at_least(0))
    nesterov: bool = setting(False, "Nesterov momentum (sgd).")
    weight_decay: Optional[float] = setting(None, "Weight decay: L2 added to the gradient, "
                                            "decoupled for adamw.", at_least(0),
                                            show="0, 0.01 for adamw")
    beta1: float = setting(0.9, "Adam's beta1.", between(0, 1, high_open=True))
    beta2: float = setting(0.999, "Adam's beta2.", between(0, 1, high_open=True))
    alpha: float = setting(0.99, "RMSprop's smoothing.", between(0, 1, high_open=True))
    centered: bool = setting(False, "Centered RMSprop.")
    eps: Optional[float] = setting(None, "Term added to denominators.", at_least(0),
                                   show="1e-8, 1e-10 for adagrad")
    clip_norm: float = setting(5.0, "Scale the gradient down to this global L2 norm (0: off).",
                               at_least(0))
    clip_value: float = setting(0.0, "Clamp each gradient element to [-v, v] (0: off; "
                                "torch-rnn's grad_clip).", at_least(0))


@dataclass(slots=True)
class ScheduleConfig:
    schedule: str = setting("constant", "Learning-rate schedule.", ("choice", SCHEDULES))
    lr_decay_every: int = setting(5, "step: decay every this many epochs (torch-rnn).",
                                  at_least(1))
    lr_decay_start: int = setting(-1, "step: first decay after this many epochs (-1: "
                                  "lr_decay_every).", at_least(-1))
    lr_decay_factor: float = setting(0.5, "step, plateau: multiply the lr by this.",
                                     between(0, 1, low_open=True))
    warmup: int = setting(0, "cosine: linear warm-up steps.", at_least(0))
    decay_steps: int = setting(0, "cosine: steps to reach min_lr (0: the run's step budget).",
                               at_least(0))
    min_lr: float = setting(0.0, "cosine: final learning rate.", at_least(0))
    plateau_threshold: float = setting(0.003, "plateau: decay when validation improves by less "
                                       "than this fraction (rnnlm).", at_least(0))
    max_decays: int = setting(6, "plateau: stop at the plateau after this many decays.",
                              at_least(0))


@dataclass(slots=True)
class LoopConfig:
    epochs: int = setting(50, "Passes over the training split (0: no limit; torch-rnn's "
                          "max_epochs).", at_least(0))
    max_steps: int = setting(0, "Stop after this many updates (0: no limit).", at_least(0))
    max_time: float = setting(0.0, "Stop this long after launch, compiling and the final "
                              "validation included: 90s, 30m, 2h, 1h30m (0: no limit).",
                              ("duration",), show="0, no limit")
    eval_every: int = setting(0, "Validate every this many steps (0: after each epoch).",
                              at_least(0))
    eval_batches: int = setting(0, "Validation batches per evaluation (0: the whole split, "
                                "scored as eval scores it).", at_least(0))
    patience: int = setting(0, "Stop after this many validations without a new best (0: off).",
                            at_least(0))
    checkpoint_every: int = setting(1000, "Also checkpoint every this many steps (0: only at "
                                    "validations).", at_least(0))
    keep: int = setting(0, "Keep this many of the newest checkpoints, as step-00000080.h5 (the "
                        "one of step 80), besides latest.h5 and best.h5.",
                        at_least(0))
    log_every: int = setting(10, "Steps per line of metrics.jsonl.", at_least(1))
    seed: int = setting(0, "Seed of the weights and dropout: same seed, same run.",
                        between(0, 2 ** 63 - 1))     # a TOML integer (config.toml holds it)
    init_from: str = setting("", "A checkpoint whose weights start a new run (fine-tuning): "
                             "fresh optimizer, schedule and counters; same vocabulary and "
                             "model shape.")
    threads: int = setting(0, "Kernel threads (0: the cores this process may use: affinity, "
                           "cgroup quota, SLURM_CPUS_PER_TASK, OMP_NUM_THREADS).", at_least(0),
                           show="0, all it may use")
    device: str = setting("cpu", "Where the model runs: cpu, cuda or cuda:N.")
    precision: str = setting("fp32", "GPU float32 products (projections, weight gradients, "
                             "output layer): fp32 IEEE, or tf32 tensor cores (10-bit "
                             "mantissas, ~1e-3 relative error, faster). The recurrence, the "
                             "cell math, the loss and the optimizer stay fp32; cpu ignores it.",
                             ("choice", ("fp32", "tf32")))
    progress: bool = setting(True, "Progress bar on stderr.", aliases=(" /-q", " /--quiet"))


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: LoopConfig = field(default_factory=LoopConfig)

    def to_dict(self):
        """{section: {key: value}} of the keys a file may hold (not those rnnkit sets)."""
        return {name: {f.name: getattr(getattr(self, name), f.name) for f in keys(cls)}
                for name, cls in SECTIONS.items()}


SECTIONS = get_type_hints(TrainConfig)    # section name -> its dataclass

def keys(cls):
    """The fields of a section that are config keys (and flags)."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("key", True)]
