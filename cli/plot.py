"""`rnnkit plot`: training curves of one or more runs in one image."""
import click

from rnnkit.tools.plot import X_AXES


@click.command("plot")
@click.argument("run_dirs", metavar="RUN_DIR...", nargs=-1, required=True,
                type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="curves.png",
              show_default=True,
              help="Image to write (.png, .svg, .pdf, or another type matplotlib writes).")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--x", "x_axis", type=click.Choice(X_AXES), default="step", show_default=True,
              help="The x axis: optimizer steps, or training time (runs of different batch "
                   "sizes compare better by time).")
def command(run_dirs, output, force, x_axis):
    """Plot the curves of one or more runs (from each RUN_DIR's metrics.jsonl): train and
    validation loss, learning rate, gradient norm and tokens/s, a panel each, a colour per
    run labelled with its folder's name.

    Needs matplotlib: pip install 'rnnkit[plot]'.

    \b
    rnnkit plot runs/char -o curves.png
    rnnkit plot runs/lstm runs/gru runs/rnn --x time -o compare.svg
    """
    from rnnkit.files import check_output
    from rnnkit.tools.plot import plot_runs

    check_output(output, force)
    notes = []
    plot_runs(run_dirs, output, x_axis, notes)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote {output}", err=True)

command.reports_only = True       # its stdout lines are progress: see cli/main.py
