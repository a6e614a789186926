"""Options shared by the commands that run a model (eval, generate, score), and an option
that shows its default as written."""
import click

from rnnkit.corpus.sources import InputError, check_encoding


class ConfigOption(click.Option):
    """An option that shows its default as written (5, 0.002, off, "val"): default_text."""

    def __init__(self, *args, default_text=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.default_text = default_text

    def get_help_extra(self, ctx):
        extra = super().get_help_extra(ctx)
        if self.default_text is not None:
            extra["default"] = self.default_text
        return extra


def placement(command):
    """--device and --threads."""
    command = click.option("--threads", type=click.IntRange(0), default=0, show_default=True,
                           help="Threads for the kernels (0: the cores this process may use)."
                           )(command)
    return click.option("--device", default="cpu", show_default=True,
                        help="Where the model runs: cpu, cuda or cuda:N.")(command)


def unknown_applies(level, unknown):
    """A usage error for an --unknown given that the model's level does not do: a word model
    maps unknown words to <unk> (replace) or leaves them out (skip), never stops; a BPE
    model encodes any text."""
    ctx = click.get_current_context()
    if ctx.get_parameter_source("unknown") is click.core.ParameterSource.DEFAULT:
        return
    if level == "bpe":
        raise click.UsageError("--unknown does not apply at bpe level: any text encodes")
    if level == "word" and unknown == "error":
        raise click.UsageError("--unknown error does not apply at word level: unknown words "
                               "become <unk> (--unknown replace) or are left out (skip)")


def text_encoding(ctx, param, value):
    """Check --encoding when it is given (a codec that turns bytes into text), so that a
    wrong one stops at once, whichever input it would have applied to."""
    if value is None:
        return None
    try:
        check_encoding(value)
    except InputError as err:
        raise click.BadParameter(str(err)) from None
    return value
