"""`rnnkit train`: flags and a TOML file into a TrainConfig, then rnnkit.train does the work.

Every config key is a flag of the same name (rnnkit/model/config.py): the options below are made
from the config's fields, their types, defaults and help, so nothing is written twice.
"""
import typing

import click
from click.core import ParameterSource

from rnnkit.cli.options import ConfigOption
from rnnkit.model.config import SECTIONS, TrainConfig, keys
from rnnkit.model.config import flag as key_flag
from rnnkit.model.config_file import parse_duration

D = TrainConfig()


class NamedChoice(click.Choice):
    """A choice whatever its case and with _ for - (PyTorch's --model RNN_TANH, LSTM)."""

    def normalize_choice(self, choice, ctx):
        return super().normalize_choice(choice, ctx).lower().replace("_", "-")


class Duration(click.ParamType):
    name = "DURATION"

    def convert(self, value, param, ctx):
        try:
            return parse_duration(value)
        except ValueError as err:
            self.fail(str(err), param, ctx)


def click_type(f):
    """The click type of a config field, from its metadata and annotation."""
    kind = f.metadata.get("kind")
    hint = typing.get_type_hints(_owner[f.name])[f.name]
    hint = next((h for h in getattr(hint, "__args__", ()) if h is not type(None)), hint)
    if kind and kind[0] == "choice":
        return NamedChoice(list(kind[1]))
    if kind and kind[0] == "duration":
        return Duration()
    if kind and kind[0] == "range":
        _, low, high, low_open, high_open = kind
        make = click.IntRange if hint is int else click.FloatRange
        return make(low, high, min_open=low_open, max_open=high_open)
    return hint


def flag(f):
    """A field's flag: its key with dashes."""
    return key_flag(f.name)


def show_default(f):
    """The default as the help shows it: 5, 0.002, off, "val"."""
    if f.metadata.get("show"):
        return f.metadata["show"]
    value = f.default
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value if value else '""'
    return str(value)


_owner = {}


def options():
    """(section, field, click option decorator) for every config key that is a flag."""
    out = []
    for section, cls in SECTIONS.items():
        for f in keys(cls):
            if (section, f.name) == ("data", "corpus"):
                continue                # the CORPUS argument
            _owner[f.name] = cls
            name = f"opt_{section}_{f.name}"
            aliases = list(f.metadata.get("aliases", ()))
            common = dict(cls=ConfigOption, default=f.default, help=f.metadata["help"],
                          show_default=True, default_text=show_default(f))
            if typing.get_type_hints(cls)[f.name] is bool:
                decls = [f"{flag(f)}/--no-{f.name.replace('_', '-')}", *aliases, name]
                option = click.option(*decls, **common)
            else:
                option = click.option(flag(f), *aliases, name, type=click_type(f), **common)
            out.append((section, f, option))
    return out


OPTIONS = options()


def _options(function):
    for _, _, option in reversed(OPTIONS):
        function = option(function)
    return function


@click.command("train")
@click.argument("corpus", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(file_okay=False),
              help="Run folder for checkpoints, metrics.jsonl and config.toml.")
@click.option("--resume", "resume_dir", type=click.Path(exists=True, file_okay=False),
              help="Continue the run in this folder exactly where it stopped.")
@click.option("--new-corpus", is_flag=True,
              help="With --resume and CORPUS: go on training on another corpus of the same "
                   "vocabulary, from its beginning (the best validation starts afresh).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="TOML file with [model] [data] [optim] [schedule] [train] tables (keys: "
                   "the flags' names); flags override it.")
@_options
@click.pass_context
def command(ctx, corpus, output, resume_dir, new_corpus, config_file, **flags):
    """Train a language model on CORPUS (made by `rnnkit preprocess`).

    Checkpoints go to RUN_DIR/latest.h5 and best.h5. Ctrl-C, SIGTERM, SIGHUP (the terminal
    closed) or SIGUSR1 finish the step, write latest.h5 and exit with code 75; --resume
    continues exactly from there.
    Every flag is also a key of a --config file: --max-steps is [train] max_steps.

    \b
    rnnkit train corpus.h5 -o runs/char --cell lstm --hidden 256 --max-time 30m
    rnnkit train corpus.h5 -o runs/ptb --optimizer sgd --lr 1 --clip-norm 5 --epochs 13
    rnnkit train --resume runs/char --max-time 2h
    rnnkit train more.h5 --resume runs/char --new-corpus
    rnnkit train more.h5 -o runs/tuned --init-from runs/char/best.h5 --lr 3e-4
    rnnkit train corpus.h5 -o runs/gpu --device cuda
    mpiexec -n 4 rnnkit train corpus.h5 -o runs/big --batch-size 128   # or srun
    """
    from rnnkit.api import train_config
    from rnnkit.training.train import EXIT_INTERRUPTED, resume, train

    overrides = {}
    for param, value in flags.items():
        if ctx.get_parameter_source(param) not in (ParameterSource.DEFAULT, None):
            _, section, key = param.split("_", 2)
            overrides.setdefault(section, {})[key] = value
    if corpus:
        overrides.setdefault("data", {})["corpus"] = corpus
    if resume_dir:
        if output or config_file:
            raise click.UsageError("--resume takes the run folder and its config; drop "
                                   "-o/--config")
        if new_corpus and not corpus:
            raise click.UsageError("--new-corpus takes the CORPUS to go on with: rnnkit train "
                                   "CORPUS --resume RUN_DIR --new-corpus")
        result = resume(resume_dir, overrides, new_corpus=new_corpus)
    else:
        if new_corpus:
            raise click.UsageError("--new-corpus goes with --resume")
        if not output:
            raise click.UsageError("give the run folder with -o/--output")
        cfg = train_config(overrides, config_file)
        if not cfg.data.corpus:
            raise click.UsageError("give a CORPUS (or [data] corpus in --config)")
        result = train(cfg, output)
    if result.interrupted:
        ctx.exit(EXIT_INTERRUPTED)


command.defers_signals = True       # rnnkit/training/stop_signals.py: see cli/main.py
command.reports_only = True         # its stdout lines are progress: see cli/main.py
