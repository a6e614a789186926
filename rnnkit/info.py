"""`rnnkit info`: describe an rnnkit file, or a run folder, and verify checksums.

A file is dispatched on its root attribute `format`: a new kind of file adds one line to
DESCRIBERS (its format name and a function that takes the path and returns the text to show;
the module is imported only when such a file is shown). A run folder is summarised from its
latest.h5 and metrics.jsonl. `verify` reads every dataset so that HDF5 checks every checksum.
"""
import importlib
import os

from rnnkit import h5
from rnnkit.errors import RnnkitError
from rnnkit.metrics import perplexity, show_perplexity
from rnnkit.train_log import read_records

# format attribute -> "module:function(path) -> str"
DESCRIBERS = {
    "rnnkit-corpus": "rnnkit.corpus:describe",
    "rnnkit-checkpoint": "rnnkit.checkpoint:describe",
}


class InfoError(RnnkitError, ValueError):
    """The file cannot be described; the message is one line."""


def file_format(path):
    """The `format` attribute of the HDF5 file at `path` (None when it has none)."""
    try:
        with h5.open_file(path) as f:
            value = f.attrs.get("format")
    except h5.DamagedFile as err:
        raise InfoError(str(err)) from None
    except OSError as err:
        raise InfoError(h5.describe_error(path, err)) from None
    return value.decode() if isinstance(value, bytes) else value


def describe(path, verify=False):
    """Text describing the rnnkit file or run folder at `path`; with verify, after reading
    every dataset of the file(s) to check their checksums."""
    if os.path.isdir(path):
        return describe_run(path, verify)
    kind = file_format(path)
    if kind is None:
        raise InfoError(f"{path} is an HDF5 file but not an rnnkit file (no 'format' attribute)")
    if kind not in DESCRIBERS:
        known = ", ".join(sorted(DESCRIBERS))
        raise InfoError(f"{path} has format {kind!r}, which this rnnkit cannot show ({known})")
    module, function = DESCRIBERS[kind].split(":")
    try:
        text = getattr(importlib.import_module(module), function)(path)
    except RnnkitError as err:
        raise InfoError(str(err)) from None
    except ValueError as err:  # e.g. a newer format version
        raise InfoError(str(err)) from None
    except (KeyError, OSError) as err:  # a damaged or half-written file
        raise InfoError(f"{path}: cannot read this {kind} file: {err}") from None
    return text + "\n" + checksums(path, verify)


def checksums(path, verify):
    """One line on the file's checksums; with verify, after checking them all."""
    try:
        with h5.open_file(path) as f:
            if verify:
                count, with_sum = h5.verify(f)
                return (f"checksums: verified, {count} datasets read without error "
                        f"({with_sum} with a fletcher32 checksum)")
            datasets = []
            f.visititems(lambda n, obj: datasets.append(obj) if hasattr(obj, "fletcher32")
                         else None)
    except h5.DamagedFile as err:
        raise InfoError(str(err)) from None
    summed = sum(bool(d.fletcher32) for d in datasets)
    if not summed:
        return "checksums: none (made by rnnkit 0.1); --verify still reads every dataset"
    return (f"checksums: fletcher32 on {summed} of {len(datasets)} datasets; --verify checks "
            f"them all")


def describe_run(run_dir, verify=False):
    """A run folder: where it stands (latest.h5), its best validation, and its time."""
    latest = os.path.join(run_dir, "latest.h5")
    metrics = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(latest) and not os.path.exists(metrics):
        raise InfoError(f"{run_dir} is a folder but not a run folder of rnnkit train "
                        f"(no latest.h5, no metrics.jsonl)")
    lines = [f"{run_dir}: run folder"]
    records = read_records(metrics)
    vals = [r for r in records if "val_loss" in r]
    events = [r for r in records if "event" in r]
    if vals:
        best = min(vals, key=lambda r: r["val_loss"])
        lines.append(f"best validation: {best['val_loss']:.4f} nats/token at step {best['step']}"
                     f" (perplexity {_ppl(best['val_loss'])}); last: {vals[-1]['val_loss']:.4f} "
                     f"at step {vals[-1]['step']}")
    trains = [r for r in records if "train_loss" in r]
    if trains:
        last = trains[-1]
        lines.append(f"training: step {last['step']:,}, epoch {last['epoch']:.2f}, "
                     f"{last.get('elapsed', 0):.0f} s, last loss {last['train_loss']:.4f}, "
                     f"{last.get('tokens_per_s', 0):,.0f} tokens/s")
    if events:
        stop = [e for e in events if e["event"] == "stop"]
        sessions = sum(e["event"] in ("start", "resume") for e in events)
        lines.append(f"sessions: {sessions}" +
                     (f"; last stop: {stop[-1].get('reason')}" if stop else "; running or killed"))
    if os.path.exists(latest):
        lines.append("")
        lines.append(describe(latest, verify))
    best_file = os.path.join(run_dir, "best.h5")
    if verify and os.path.exists(best_file):
        lines.append(f"{best_file}: " + checksums(best_file, True))
    return "\n".join(lines)


def _ppl(loss):
    return show_perplexity(perplexity(loss))
