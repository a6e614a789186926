"""`rnnkit train`: flags and a TOML file into a TrainConfig, then rnnkit.train does the work."""
import click
from click.core import ParameterSource

from rnnkit.train_config import TrainConfig, parse_duration

D = TrainConfig()


class Duration(click.ParamType):
    name = "DURATION"

    def convert(self, value, param, ctx):
        try:
            return parse_duration(value)
        except ValueError as err:
            self.fail(str(err), param, ctx)


# (flag, section, key, type, help); the default shown is the config's.
OPTIONS = [
    ("--model", "model", "cell", click.Choice(["rnn-tanh", "rnn-relu", "lstm", "gru"]),
     "Recurrent cell."),
    ("--layers", "model", "layers", click.IntRange(1), "Recurrent layers (L)."),
    ("--hidden", "model", "hidden", click.IntRange(1), "State size of each layer (H)."),
    ("--embed", "model", "embed", click.IntRange(1), "Token embedding size (E)."),
    ("--dropout", "model", "dropout", click.FloatRange(0, 1, max_open=True),
     "Dropout between layers and on the embedding and output."),
    ("--tie-weights/--no-tie-weights", "model", "tie_weights", bool,
     "Share the embedding and output matrix (needs --embed = --hidden)."),
    ("--dtype", "model", "dtype", click.Choice(["float32", "float64"]), "Parameter type."),
    ("--batch-size", "data", "batch_size", click.IntRange(1), "Parallel streams per batch (N)."),
    ("--seq-len", "data", "seq_len", click.IntRange(1), "Steps of truncated BPTT (T)."),
    ("--optimizer", "optim", "name", click.Choice(["sgd", "adam", "adamw", "rmsprop", "adagrad"]),
     "Optimizer (PyTorch's equations and defaults)."),
    ("--lr", "optim", "lr", click.FloatRange(0, min_open=True), "Learning rate."),
    ("--momentum", "optim", "momentum", click.FloatRange(0), "Momentum (sgd, rmsprop)."),
    ("--nesterov/--no-nesterov", "optim", "nesterov", bool, "Nesterov momentum (sgd)."),
    ("--weight-decay", "optim", "weight_decay", click.FloatRange(0),
     "Weight decay (L2 added to the gradient; decoupled for adamw)."),
    ("--beta1", "optim", "beta1", click.FloatRange(0, 1, max_open=True), "Adam's beta1."),
    ("--beta2", "optim", "beta2", click.FloatRange(0, 1, max_open=True), "Adam's beta2."),
    ("--clip-norm", "optim", "clip_norm", click.FloatRange(0),
     "Clip the gradient's global L2 norm to this (0: off)."),
    ("--clip-value", "optim", "clip_value", click.FloatRange(0),
     "Clip each gradient element to [-v, v] (0: off)."),
    ("--schedule", "schedule", "name", click.Choice(["constant", "step", "cosine", "plateau"]),
     "Learning-rate schedule."),
    ("--lr-decay-every", "schedule", "every", click.IntRange(1),
     "step: decay every this many epochs."),
    ("--lr-decay-start", "schedule", "start", click.IntRange(-1),
     "step: first decay after this many epochs (-1: --lr-decay-every)."),
    ("--lr-decay-factor", "schedule", "factor", click.FloatRange(0, 1, min_open=True),
     "step, plateau: multiply the lr by this."),
    ("--warmup", "schedule", "warmup", click.IntRange(0), "cosine: warm-up steps."),
    ("--decay-steps", "schedule", "total", click.IntRange(0),
     "cosine: steps to reach --min-lr (0: the run's step budget)."),
    ("--min-lr", "schedule", "min_lr", click.FloatRange(0), "cosine: final learning rate."),
    ("--plateau-threshold", "schedule", "threshold", click.FloatRange(0),
     "plateau: decay when validation improves by less than this fraction."),
    ("--max-decays", "schedule", "max_halvings", click.IntRange(0),
     "plateau: stop at the plateau after this many decays."),
    ("--epochs", "train", "epochs", click.IntRange(0), "Passes over the data (0: no limit)."),
    ("--max-steps", "train", "max_steps", click.IntRange(0), "Stop after this many updates."),
    ("--max-time", "train", "max_time", Duration(),
     "Stop this session after this long, e.g. 90s, 30m, 2h (0: no limit)."),
    ("--eval-every", "train", "eval_every", click.IntRange(0),
     "Validate every this many steps (0: after each epoch)."),
    ("--eval-batches", "train", "eval_batches", click.IntRange(0),
     "Validation batches per evaluation (0: the whole split)."),
    ("--patience", "train", "patience", click.IntRange(0),
     "Early stop after this many validations without a new best (0: off)."),
    ("--checkpoint-every", "train", "checkpoint_every", click.IntRange(0),
     "Also checkpoint every this many steps (0: only at validations)."),
    ("--keep", "train", "keep", click.IntRange(0),
     "Keep this many step-N.h5 checkpoints besides latest.h5 and best.h5."),
    ("--log-every", "train", "log_every", click.IntRange(1), "Steps per line of metrics.jsonl."),
    ("--seed", "train", "seed", click.IntRange(0), "Seed for weights and dropout."),
    ("--threads", "train", "threads", click.IntRange(0), "Threads for the kernels (0: all cores; SLURM_CPUS_PER_TASK under SLURM)."),
]


def _options(function):
    for flag, section, key, kind, text in reversed(OPTIONS):
        default = getattr(getattr(D, section), key)
        extra = dict(is_flag=True) if kind is bool else dict(type=kind)
        show = "0 (0.01 for adamw)" if key == "weight_decay" else True
        function = click.option(flag, f"opt_{section}_{key}", default=default, help=text,
                                show_default=show, **extra)(function)
    return function


@click.command("train")
@click.argument("corpus", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", type=click.Path(file_okay=False),
              help="Run folder for checkpoints, metrics.jsonl and config.toml.")
@click.option("--resume", "resume_dir", type=click.Path(exists=True, file_okay=False),
              help="Continue the run in this folder exactly where it stopped.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False),
              help="TOML file with [model] [data] [optim] [schedule] [train] tables; flags "
                   "override it.")
@_options
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def command(ctx, corpus, output, resume_dir, config_file, quiet, **flags):
    """Train a language model on CORPUS (made by `rnnkit preprocess`).

    Checkpoints go to RUN_DIR/latest.h5 and best.h5. Ctrl-C, SIGTERM or SIGUSR1 finish the
    step, write latest.h5 and exit with code 75; --resume continues exactly from there.

    \b
    rnnkit train corpus.h5 -o runs/char --model lstm --hidden 256 --max-time 30m
    rnnkit train corpus.h5 -o runs/ptb --optimizer sgd --lr 1 --clip-norm 5 --epochs 13
    rnnkit train --resume runs/char --max-time 2h
    """
    from rnnkit import stop_signals

    stop_signals.defer()            # a signal from here on stops the run as after a step
    from rnnkit.checkpoint import CheckpointError
    from rnnkit.train import EXIT_INTERRUPTED, TrainError, resume, train
    from rnnkit.train_config import ConfigError, from_dict, load_toml

    overrides = {}
    for param, value in flags.items():
        if ctx.get_parameter_source(param) not in (ParameterSource.DEFAULT, None):
            _, section, key = param.split("_", 2)
            overrides.setdefault(section, {})[key] = value
    if quiet:
        overrides.setdefault("train", {})["progress"] = False
    if corpus:
        overrides.setdefault("data", {})["corpus"] = corpus
    try:
        if resume_dir:
            if output or config_file:
                raise click.UsageError("--resume takes the run folder and its config; drop "
                                       "-o/--config")
            result = resume(resume_dir, overrides)
        else:
            if not output:
                raise click.UsageError("give the run folder with -o/--output")
            cfg = load_toml(config_file) if config_file else TrainConfig()
            cfg = from_dict(overrides, cfg)
            if not cfg.data.corpus:
                raise click.UsageError("give a CORPUS (or [data] corpus in --config)")
            result = train(cfg, output)
    except (TrainError, ConfigError, CheckpointError) as err:
        raise click.ClickException(str(err)) from None
    if result.interrupted:
        ctx.exit(EXIT_INTERRUPTED)

