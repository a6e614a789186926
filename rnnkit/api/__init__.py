"""rnnkit from Python: what `import rnnkit` offers (docs/api.md is the guide).

    import rnnkit
    rnnkit.preprocess("shakespeare.txt", "corpus.h5")
    rnnkit.train("corpus.h5", "runs/x", hidden=256, max_time="30m")
    lm = rnnkit.load("runs/x/best.h5")
    lm.generate("ROMEO:", 200, temperature=0.8, seed=1)

The commands call the same functions: `rnnkit train` turns its flags into the settings of
train_config, `rnnkit preprocess` calls preprocess, and `generate` and `score` run on the
LanguageModel that load returns (rnnkit/api/language_model.py). Settings are the config's keys
(rnnkit/model/config.py), one name each, whatever their section: hidden, lr, max_steps. This module
imports nothing heavy, so `import rnnkit` stays quick; numpy, h5py and Numba load on first use.
"""
from __future__ import annotations

import numbers
import os
from typing import TYPE_CHECKING, Any, Union

from rnnkit.errors import (ArgumentTypeError, RnnkitError, check_count, check_flag, check_number,
                           check_text)


if TYPE_CHECKING:
    from pathlib import Path

    from rnnkit.api.language_model import LanguageModel
    from rnnkit.model.config import ModelConfig
    from rnnkit.training.loop import TrainResult

PathArg = Union[str, bytes, "os.PathLike[str]"]      # what every path argument takes


class SettingError(RnnkitError, TypeError):
    """A setting that rnnkit does not know (one line, with the nearest known ones)."""


def path_of(value: Any, name: str) -> str:
    """A path given to the API (str, bytes or os.PathLike) as a str; ArgumentTypeError for
    anything else."""
    if isinstance(value, (str, bytes)) or hasattr(value, "__fspath__"):
        return os.fsdecode(value)
    raise ArgumentTypeError(f"{name} must be a path (str or os.PathLike), not "
                            f"{type(value).__name__}")


def load(path: PathArg, device: str = "cpu", threads: int | None = None) -> LanguageModel:
    """The trained model of checkpoint `path` (best.h5, latest.h5, step-N.h5) on `device`
    (cpu, cuda, cuda:N), as a LanguageModel. threads: the CPU kernels' threads (0: the cores
    this process may use; None: as the process is set)."""
    from rnnkit.api.language_model import LanguageModel

    _check_threads(threads)
    return LanguageModel.open(path_of(path, "path"), device=device, threads=threads)


def _check_threads(threads):
    from rnnkit.errors import ArgumentError

    if threads is not None:
        check_number("threads", threads, numbers.Integral)
        if threads < 0:
            raise ArgumentError(f"threads must be >= 0 (0: the cores this process may use), "
                                f"not {threads}")


def sections(settings):
    """{section: {key: value}} from flat settings {key: value}: each key of the training
    config belongs to one section (rnnkit/model/config.py). SettingError for an unknown key."""
    import difflib

    from rnnkit.model.config import SECTIONS, keys

    owner = {f.name: section for section, cls in SECTIONS.items() for f in keys(cls)}
    out = {}
    for key, value in settings.items():
        if key not in owner:
            near = difflib.get_close_matches(key, owner, n=3)
            hint = f"; did you mean {' or '.join(near)}?" if near else \
                " (docs/training.md lists them)"
            raise SettingError(f"unknown setting {key!r}{hint}")
        out.setdefault(owner[key], {})[key] = value
    return out


def train_config(overrides=None, config_file=None):
    """The TrainConfig of a new run: the defaults, then the TOML `config_file` (its paths
    from its own folder, as a run's config.toml stores them), then `overrides` ({section:
    {key: value}}; paths from here); with [train] init_from, the model's settings come from
    that checkpoint unless the file or the overrides give them."""
    import os

    from rnnkit.training.checkpoint import read_meta
    from rnnkit.training.train import SHAPE
    from rnnkit.model.config import ConfigError, TrainConfig, flag
    from rnnkit.model.config_file import from_dict, load_toml, read_toml
    from rnnkit.training.paths import located

    overrides = overrides or {}
    cfg = TrainConfig()
    if config_file:
        cfg = located(load_toml(config_file), os.path.dirname(str(config_file)))
    init = overrides.get("train", {}).get("init_from") or cfg.train.init_from
    if not init:
        return from_dict(overrides, cfg)
    stored = from_dict(read_meta(init)["config"]).to_dict()["model"]
    asked = {**(read_toml(config_file).get("model", {}) if config_file else {}),
             **overrides.get("model", {})}
    try:
        cfg = from_dict({"model": stored}, cfg)
        if config_file:
            cfg = from_dict({"model": read_toml(config_file).get("model", {})}, cfg)
        return from_dict(overrides, cfg)
    except ConfigError:     # --hidden 64 from a tied 32: the shape, not tie_weights, is wrong
        given = from_dict({"model": asked}).model
        for key, value in asked.items():
            if key in SHAPE and getattr(given, key) != stored[key]:
                raise ConfigError(f"--init-from {init}: {flag(key)} {value} does not match "
                                  f"its {stored[key]}; a run that starts from its weights "
                                  f"needs its model shape") from None
        raise


def train(corpus: PathArg | None = None, out: PathArg | None = None, *,
          config: PathArg | None = None, **settings: Any) -> TrainResult:
    """Train a new run on `corpus` (made by preprocess) into the folder `out`; returns a
    TrainResult (run_dir, step, epoch, best_val_loss, reason, interrupted). `config`: a TOML
    file of settings; `settings`: the flags of `rnnkit train` as keywords (hidden=256,
    max_time="30m", lr=1e-3), which override it. The defaults are the command's."""
    from rnnkit.training.train import TrainError, train as run

    overrides = sections(settings)
    if corpus is not None:
        overrides.setdefault("data", {})["corpus"] = path_of(corpus, "corpus")
    cfg = train_config(overrides, config)
    if not cfg.data.corpus:
        raise TrainError("give a corpus (or [data] corpus in the config file)")
    if out is None:
        raise TrainError("give the run folder (out)")
    return run(cfg, path_of(out, "out"))


def resume(run_dir: PathArg, *, new_corpus: bool = False, **settings: Any) -> TrainResult:
    """Continue the run in `run_dir` from its latest.h5; settings may change its limits
    ([train]: max_steps, max_time, epochs, ...) and the corpus's path. Another corpus than the
    run's (by its fingerprint) is refused unless new_corpus=True (`--new-corpus`): training
    then goes on from that corpus's beginning."""
    from rnnkit.training.train import resume as run

    return run(path_of(run_dir, "run_dir"), sections(settings), new_corpus=new_corpus)


def preprocess(inputs: PathArg | list[PathArg], output: PathArg, **settings: Any) -> dict:
    """Write the corpus `output` (HDF5) from `inputs` (a path, folder or glob, or a list of
    them); returns a summary dict. Settings are the flags of `rnnkit preprocess` as keywords
    (level="word", val_frac=0.05, vocab_from="other.h5", force=True), with its defaults."""
    from rnnkit.corpus.preprocess import preprocess as run

    if isinstance(inputs, (str, bytes)) or hasattr(inputs, "__fspath__"):
        inputs = [inputs]
    try:
        inputs = list(inputs)
    except TypeError:
        raise ArgumentTypeError(f"inputs must be a path or a list of paths, not "
                                f"{type(inputs).__name__}") from None
    unknown = set(settings) - set(PREPROCESS_SETTINGS)
    if unknown:
        raise SettingError(f"unknown setting {sorted(unknown)[0]!r}; preprocess takes "
                           f"{', '.join(PREPROCESS_SETTINGS)}")
    for key, value in settings.items():
        if key in PREPROCESS_NUMBERS and value is not None:
            check_number(key, value, PREPROCESS_NUMBERS[key])
        elif key == "force":
            check_flag(key, value)
        elif key in ("level", "encoding", "errors"):
            check_text(key, value)
    for key in ("val", "test"):         # a path or a list of them
        value = settings.get(key)
        if value is not None:
            many = isinstance(value, (list, tuple))
            settings[key] = [path_of(v, key) for v in value] if many else path_of(value, key)
    if settings.get("vocab_from") is not None:
        settings["vocab_from"] = path_of(settings["vocab_from"], "vocab_from")
    return run([path_of(p, "inputs") for p in inputs], path_of(output, "output"), **settings)


def evaluate(checkpoint: PathArg, corpus: PathArg | None = None, *, split: str | None = None,
             text: PathArg | None = None, batch_size: int = 10, seq_len: int = 0,
             encoding: str | None = None, unknown: str = "error", device: str = "cpu",
             threads: int | None = None) -> dict:
    """What `rnnkit eval` prints, as a dict (loss, perplexity, bits_per_token, tokens, source,
    seconds; with a text: chars and bits_per_char; with <unk> in the vocabulary: unk_tokens):
    checkpoint `checkpoint` on a split of `corpus` (default: the run's own corpus, split
    "test", else "val") or on the text file `text`; seq_len 0: the training seq_len; threads
    as load's."""
    from rnnkit.tools.eval_checkpoint import evaluate_checkpoint

    check_count("batch_size", batch_size, 1)
    check_count("seq_len", seq_len, 0)
    _check_threads(threads)
    check_text("encoding", encoding)
    check_text("split", split)
    return evaluate_checkpoint(
        path_of(checkpoint, "checkpoint"), None if corpus is None else path_of(corpus, "corpus"),
        split, None if text is None else path_of(text, "text"), batch_size, seq_len, encoding,
        unknown, device=device, threads=threads)


def export(checkpoint: PathArg, output: PathArg, *, format: str | None = None,  # noqa: A002
           force: bool = False) -> tuple[Path, Path]:
    """What `rnnkit export` writes: the weights as safetensors with PyTorch's names, or the
    model as ONNX (format None: by the suffix of `output`), with NAME.json beside it; returns
    the two paths."""
    output = path_of(output, "output")
    check_flag("force", force)
    if format is None:
        format = "onnx" if output.lower().endswith(".onnx") else "safetensors"  # noqa: A001
    if format == "onnx":
        from rnnkit.tools.onnx_export import export_onnx as run
    elif format == "safetensors":
        from rnnkit.tools.safetensors import export_checkpoint as run
    else:
        from rnnkit.errors import ArgumentError
        raise ArgumentError(f"format must be safetensors or onnx, not {format!r}")
    return run(path_of(checkpoint, "checkpoint"), output, force)


def import_weights(weights: PathArg, output: PathArg, *, vocab: PathArg | None = None,
                   force: bool = False) -> ModelConfig:
    """What `rnnkit import` does: an rnnkit checkpoint `output` from a safetensors file with
    word_language_model's names and its JSON (vocab; default: beside it); returns the model's
    ModelConfig."""
    from rnnkit.tools.safetensors_import import import_safetensors

    check_flag("force", force)
    return import_safetensors(path_of(weights, "weights"), path_of(output, "output"),
                              None if vocab is None else path_of(vocab, "vocab"), force)


# rnnkit.corpus.preprocess.preprocess's settings (its keywords; a test checks the list and that the
# command's flags have their defaults)
PREPROCESS_SETTINGS = ("level", "encoding", "errors", "val_frac", "test_frac", "val", "test",
                       "vocab_from", "max_vocab", "min_count", "vocab_size", "force")
PREPROCESS_NUMBERS = {"val_frac": numbers.Real, "test_frac": numbers.Real,
                      "max_vocab": numbers.Integral, "min_count": numbers.Integral,
                      "vocab_size": numbers.Integral}
