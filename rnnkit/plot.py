"""Training curves from a run's metrics.jsonl: train and validation loss against the step.

matplotlib is an optional extra (`pip install 'rnnkit[plot]'`); reading the metrics is not.
"""
import os

from rnnkit.errors import RnnkitError
from rnnkit.train_log import read_records


class PlotError(RnnkitError, ValueError):
    """Nothing to plot, or no matplotlib; the message is one line."""


def read_metrics(run_dir):
    """{'train': [(step, loss)], 'val': [(step, loss)]} from RUN_DIR/metrics.jsonl. A step seen
    twice (a run rolled back and redid it) keeps its last value."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise PlotError(f"{run_dir} has no metrics.jsonl (is it a run folder of rnnkit train?)")
    curves = {"train": {}, "val": {}}
    for record in read_records(path):
        for name in curves:
            if f"{name}_loss" in record:
                curves[name][record["step"]] = record[f"{name}_loss"]
    return {name: sorted(points.items()) for name, points in curves.items()}


def plot_run(run_dir, output):
    """Draw the curves of `run_dir` into the image file `output` (PNG, SVG, PDF by suffix)."""
    curves = read_metrics(run_dir)
    if not curves["train"] and not curves["val"]:
        raise PlotError(f"{run_dir}/metrics.jsonl has no losses yet")
    try:
        import matplotlib
    except ImportError:
        raise PlotError("plotting needs matplotlib: pip install 'rnnkit[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name, style in (("train", "-"), ("val", "o-")):
        if curves[name]:
            steps, losses = zip(*curves[name])
            ax.plot(steps, losses, style, label=f"{name} loss", markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats/token)")
    ax.set_title(os.path.basename(os.path.abspath(run_dir)))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(output)
    plt.close(fig)
