"""`rnnkit plot`: training and validation curves of a run as an image."""
import click


@click.command("plot")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="curves.png",
              show_default=True, help="Image to write (.png, .svg or .pdf).")
def command(run_dir, output):
    """Plot the train and validation loss of RUN_DIR (from its metrics.jsonl).

    Needs matplotlib: pip install 'rnnkit[plot]'.

    \b
    rnnkit plot runs/char -o curves.png
    """
    from rnnkit.plot import PlotError, plot_run

    try:
        plot_run(run_dir, output)
    except (PlotError, OSError) as err:
        raise click.ClickException(str(err)) from None
    click.echo(f"wrote {output}", err=True)
