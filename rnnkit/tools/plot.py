"""Training curves of one or more runs, from their metrics.jsonl, in one image.

One panel per quantity a run logs (PANELS: train and validation loss, learning rate, gradient
norm, tokens/s), one colour per run, labelled with its folder's name; the x axis is the step
or the training time. matplotlib is an optional extra (`pip install 'rnnkit[plot]'`); reading
the metrics is not. The image is written under a temporary name and renamed into place.
"""
import os

from rnnkit import files
from rnnkit.errors import RnnkitError
from rnnkit.training.log import read_records

# metrics.jsonl key -> panel title
PANELS = {"train_loss": "train loss (nats/token)", "val_loss": "validation loss (nats/token)",
          "lr": "learning rate", "grad_norm": "gradient norm (before clipping)",
          "tokens_per_s": "tokens/s"}
X_AXES = ("step", "time")


class PlotError(RnnkitError, ValueError):
    """Nothing to plot, or no matplotlib; the message is one line."""


def read_metrics(run_dir):
    """{key of PANELS: [(step, elapsed seconds, value)]} from RUN_DIR/metrics.jsonl, by step.
    A step seen twice (a run rolled back and redid it) keeps its last value; the learning
    rate is read from the training lines (validation lines repeat it)."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise PlotError(f"{run_dir} has no metrics.jsonl (is it a run folder of rnnkit train?)")
    curves = {key: {} for key in PANELS}
    for record in read_records(path):
        if "step" not in record or "event" in record:
            continue
        for key in PANELS:
            if key in record and (key != "lr" or "train_loss" in record):
                curves[key][record["step"]] = (record.get("elapsed", 0.0), record[key])
    return {key: [(step, t, v) for step, (t, v) in sorted(points.items())]
            for key, points in curves.items()}


def labels(run_dirs):
    """Each run's folder name, or its path where two share a name."""
    names = [os.path.basename(os.path.abspath(d)) for d in run_dirs]
    return [n if names.count(n) == 1 else os.path.normpath(d) for n, d in zip(names, run_dirs)]


def _time_axis(seconds):
    """(divisor, label) for the training time: seconds, minutes or hours."""
    if seconds < 600:
        return 1.0, "training time (s)"
    if seconds < 3 * 3600:
        return 60.0, "training time (min)"
    return 3600.0, "training time (h)"


def plot_runs(run_dirs, output, x="step", notes=None):
    """Draw the curves of `run_dirs` into the image file `output` (PNG, SVG or PDF by its
    suffix). `notes` (a list) gets a line for each run that has nothing to show yet."""
    if x not in X_AXES:
        raise PlotError(f"x must be one of {', '.join(X_AXES)}, not {x!r}")
    runs = [read_metrics(d) for d in run_dirs]
    notes = [] if notes is None else notes
    for d, curves in zip(run_dirs, runs):
        if not any(curves.values()):
            notes.append(f"{d}/metrics.jsonl has no metrics yet")
    shown = [key for key in PANELS if any(curves[key] for curves in runs)]
    if not shown:
        raise PlotError(f"{', '.join(map(str, run_dirs))}: no metrics to plot yet")
    try:
        import matplotlib
    except ImportError:
        raise PlotError("plotting needs matplotlib: pip install 'rnnkit[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kind = os.path.splitext(str(output))[1][1:].lower()
    from matplotlib.backend_bases import FigureCanvasBase

    if kind not in FigureCanvasBase.get_supported_filetypes():
        types = ", ".join(sorted(FigureCanvasBase.get_supported_filetypes()))
        raise PlotError(f"{output}: unknown image type {kind!r}; use .png, .svg or .pdf (or "
                        f"another of {types})")
    files.check_output(output, True, inputs=[os.path.join(d, "metrics.jsonl")
                                             for d in run_dirs])
    cols = 1 if len(shown) == 1 else 2
    rows = -(-len(shown) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 3.6 * rows), squeeze=False)
    last = max((t for curves in runs for points in curves.values() for _, t, _ in points),
               default=0.0)
    scale, time_label = _time_axis(last)
    # matplotlib's ten colours, or as many as the runs from a continuous map
    colors = [f"C{i}" for i in range(len(runs))] if len(runs) <= 10 else \
        [plt.cm.turbo(i / (len(runs) - 1)) for i in range(len(runs))]
    for ax, key in zip(axes.flat, shown):
        for i, (curves, name) in enumerate(zip(runs, labels(run_dirs))):
            if curves[key]:
                steps, times, values = zip(*curves[key])
                xs = steps if x == "step" else [t / scale for t in times]
                # a point alone: a marker (a line of one point draws nothing)
                ax.plot(xs, values, "o-" if key == "val_loss" or len(xs) == 1 else "-",
                        color=colors[i], label=name, markersize=3, linewidth=1.2)
        ax.set_title(PANELS[key], fontsize=10)
        ax.set_xlabel("step" if x == "step" else time_label)
        if x == "step":
            ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(shown):]:
        ax.set_visible(False)
    # one legend for the figure with every run that drew anything (a run without training
    # lines was in no panel's legend when the first panel's was the figure's)
    handles = {}
    for ax in axes.flat:
        for line in ax.get_lines():
            handles.setdefault(line.get_label(), line)
    axes.flat[0].legend(list(handles.values()), list(handles), fontsize=8)
    fig.tight_layout()
    with files.atomic(output) as tmp:
        fig.savefig(tmp, format=kind)
    plt.close(fig)
