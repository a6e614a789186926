"""`rnnkit info`."""
import click


@click.command("info")
@click.argument("path", type=click.Path(dir_okay=False))
def command(path):
    """Describe an rnnkit file: a corpus (splits, token counts, dtype, vocabulary, sources).

    \b
    rnnkit info corpus.h5
    """
    from rnnkit.info import InfoError, describe

    try:
        click.echo(describe(path))
    except InfoError as err:
        raise click.ClickException(str(err)) from None
