"""`rnnkit info`."""
import click


@click.command("info")
@click.argument("path", type=click.Path(exists=True))
@click.option("--verify", is_flag=True,
              help="Read every dataset so that each checksum is checked (slower on big files).")
def command(path, verify):
    """Describe an rnnkit corpus, checkpoint or run folder.

    A corpus: its splits, token counts, vocabulary and sources. A checkpoint (latest.h5,
    best.h5, step-00000080.h5): the model, training progress, optimizer and vocabulary. A run
    folder: its checkpoints and what they hold, progress and sessions, then its latest.h5.
    --verify reads every dataset (of every checkpoint of a run folder), so a damaged file is
    named with the dataset that fails.

    \b
    rnnkit info corpus.h5
    rnnkit info runs/char
    rnnkit info runs/char/best.h5 --verify
    """
    from rnnkit.tools.info import DamagedRun, describe

    try:
        click.echo(describe(path, verify))
    except DamagedRun as err:       # the rest of the folder described, then each damaged file
        click.echo(err.text)
        raise click.ClickException(str(err)) from None
