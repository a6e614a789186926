"""Options shared by the commands that run a model (eval, generate, score)."""
import click


def placement(command):
    """--device and --threads."""
    command = click.option("--threads", type=click.IntRange(0), default=0, show_default=True,
                           help="Threads for the kernels (0: the cores this process may use)."
                           )(command)
    return click.option("--device", default="cpu", show_default=True,
                        help="Where the model runs: cpu, cuda or cuda:N.")(command)
