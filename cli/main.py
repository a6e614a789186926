"""The `rnnkit` command group. Each command lives in its own module of this package."""
import difflib
import importlib
import os
import sys

import click

from rnnkit import console
from rnnkit.cli import foreign
from rnnkit.training import stop_signals
from rnnkit.version import __version__
from rnnkit.errors import RnnkitError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# command name -> module in this package; imported on use so `rnnkit -h` stays quick.
COMMANDS = {
    "preprocess": "preprocess",
    "info": "info",
    "train": "train",
    "generate": "generate",
    "eval": "evaluate",
    "score": "score",
    "plot": "plot",
    "export": "export",
    "import": "import_",
}


# the world size that mpiexec sets (Open MPI, MPICH's hydra; srun with PMI too); a batch
# script's own environment has none of them
MPI_SIZE = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


class LazyGroup(click.Group):
    def __call__(self, *args, **kwargs):
        """The program (click's test runner calls main instead). Once a signal has unwound
        the stack (temporaries removed, files closed) or stopped a run, leave without the
        interpreter's teardown (rnnkit/training/stop_signals.py). A rank of an MPI job that
        stopped alone mid-run has said why: the others leave with its exit code."""
        console.fill_closed(("stdin", "stdout", "stderr"))  # closed at launch: cron, 2>&-
        sys.stderr = console.Diagnostics(sys.stderr)
        if not isinstance(sys.stdout, console.ClosedOutput):
            sys.stdout = console.Product(sys.stdout)
        threads = os.environ.get("NUMBA_NUM_THREADS")
        if threads is not None and not (threads.strip().isdigit() and int(threads) > 0):
            print(f"Error: NUMBA_NUM_THREADS={threads!r} must be a whole number above 0 (or "
                  f"unset: as many as the cores this process may use)", file=sys.stderr)
            raise SystemExit(1)
        try:
            return super().__call__(*args, **kwargs)
        except OSError as err:      # writing --version or the help: click lets it through
            if console.reader_gone(err):
                console.silence(sys.stdout)
            else:
                where = f"{err.filename}: " if getattr(err, "filename", None) else ""
                print(f"Error: {where}{err.strerror or err}", file=sys.stderr)
            raise SystemExit(1) from None
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else 1
            distributed = sys.modules.get("rnnkit.training.distributed")
            if distributed is not None:
                distributed.leave_alone(code)
            if not (stop_signals.stopping or stop_signals.taken):
                raise
            if distributed is not None and not stop_signals.stopping:
                distributed.finish()    # every rank stopped at the same step, after a checkpoint
            stop_signals.leave(code)

    def parse_args(self, ctx, args):
        if args and args[0] == "help":      # `rnnkit help [COMMAND]`: that command's -h
            args = [*args[1:2], "-h"]
        self.argv = list(args)
        try:
            return super().parse_args(ctx, args)
        except click.exceptions.NoArgsIsHelpError:
            raise                   # `rnnkit` alone: the help
        except click.UsageError as err:     # `rnnkit --bogus`: one line, as in a command
            raise click.UsageError(f"{err.format_message()} (see 'rnnkit -h')") from None

    def resolve_command(self, ctx, args):
        if args and args[0] in COMMANDS:   # before the command's imports: rnnkit/blas_start.py
            from rnnkit import blas_start

            blas_start.load(scipy=args[0] in ("train", "generate", "eval", "score"))
        try:
            name, command, rest = super().resolve_command(ctx, args)
        except click.UsageError:
            close = difflib.get_close_matches(args[0], list(COMMANDS), n=1) if args else []
            close = [foreign.COMMANDS[args[0]]] if args and args[0] in foreign.COMMANDS \
                else close
            if not close:
                raise
            raise click.UsageError(f"No such command {args[0]!r}; did you mean {close[0]!r}?",
                                   ctx) from None
        ranks = max([int(os.environ[v]) for v in MPI_SIZE
                     if os.environ.get(v, "").isdigit()], default=1)
        if name != "train" and ranks > 1:
            raise click.UsageError(f"only rnnkit train runs as an MPI job: run rnnkit {name} "
                                   f"as one process (the launcher started {ranks})")
        if isinstance(sys.stdout, console.ClosedOutput):   # its lines are progress only
            helps = any(a in CONTEXT["help_option_names"] for a in rest)    # the product
            sys.stdout.strict = helps or not getattr(command, "reports_only", False)
            if not helps and any("-o" in p.opts for p in command.params):
                sys.stdout.hint = " (write to a file with -o)"
        if getattr(command, "defers_signals", False):
            stop_signals.defer()        # train: a signal in its set-up stops it after a step
        else:
            stop_signals.undefer()      # the others: a signal stops them at once
        return name, command, rest

    def invoke(self, ctx):
        # A bad flag or value in a command: one line that says where help is, no usage block.
        try:
            return super().invoke(ctx)
        except click.UsageError as err:
            from rnnkit.training.distributed import world_rank

            hint = foreign.option_hint(err.option_name, getattr(self, "argv", [])) \
                if isinstance(err, click.NoSuchOption) else None
            if hint:
                err = click.UsageError(f"No such option: {hint[0]}; {hint[1]}", err.ctx)
            if err.ctx is not None:
                err = click.UsageError(f"{err.format_message()} "
                                       f"(see '{err.ctx.command_path} -h')")
            _join_to_fail(ctx, err.format_message())
            if world_rank():        # MPI: rank 0 says it, for every rank
                ctx.exit(err.exit_code)
            raise err from None
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except RnnkitError as err:
            from rnnkit.training.distributed import world_rank

            if _join_to_fail(ctx, str(err)):
                err.quiet = world_rank() != 0
            if err.quiet:           # MPI: rank 0 says it, for every rank
                ctx.exit(1)
            raise click.ClickException(str(err)) from None
        except BrokenPipeError:     # `rnnkit generate | head`: the reader left; so do we
            for stream in (sys.stdout, sys.stderr):
                console.silence(stream)     # nothing more, not even Python's flush at exit
            ctx.exit(1)
        except KeyboardInterrupt:   # Ctrl-C: what was written stays, temporaries are gone
            # a terminal echoed ^C where the cursor was (a prompt, a bar): a line of its own
            click.echo(("\n" if sys.stderr.isatty() else "") + "interrupted", err=True)
            ctx.exit(130)
        except MemoryError:
            raise click.ClickException(
                "out of memory; try a smaller model" + (", --batch-size or --seq-len"
                if ctx.invoked_subcommand in ("train", "eval", "score") else "")) from None
        except OSError as err:
            where = f"{err.filename}: " if getattr(err, "filename", None) else ""
            raise click.ClickException(f"{where}{err.strerror or err}") from None
        except Exception as err:
            if os.environ.get("RNNKIT_DEBUG"):
                raise
            raise click.ClickException(
                f"internal error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                f" (a bug in rnnkit; RNNKIT_DEBUG=1 shows the traceback; please report it)") \
                from None

    def list_commands(self, ctx):
        return [name for name in COMMANDS if self._module(name) is not None]

    def get_command(self, ctx, name):
        module = self._module(name)
        return None if module is None else getattr(module, "command")

    @staticmethod
    def _module(name):
        if name not in COMMANDS:
            return None
        try:
            return importlib.import_module(f"{__package__}.{COMMANDS[name]}")
        except ModuleNotFoundError as err:
            if err.name == f"{__package__}.{COMMANDS[name]}":
                return None  # command not built yet
            raise


def _join_to_fail(ctx, message):
    """`rnnkit train` in an MPI job: an error before its ranks met is handed to their first
    agreement, so that no rank waits for this one (rnnkit/training/distributed.py)."""
    if ctx.invoked_subcommand != "train":
        return False
    from rnnkit.training.distributed import join_to_fail

    return join_to_fail(message)


@click.group(cls=LazyGroup, context_settings=CONTEXT)
@click.version_option(__version__, "-V", "--version", prog_name="rnnkit")
def main():
    """Train recurrent language models (RNN, LSTM, GRU) on text and sample from them.

    \b
    rnnkit preprocess shakespeare.txt -o corpus.h5
    rnnkit train corpus.h5 -o runs/shakespeare
    rnnkit generate runs/shakespeare/best.h5 --length 500
    """
