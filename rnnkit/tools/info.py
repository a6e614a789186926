"""`rnnkit info`: describe an rnnkit file, or a run folder, and verify checksums.

A file is dispatched on its root attribute `format`: a new kind of file adds one line to
DESCRIBERS (its format name and a function that takes the path and returns the text to show;
the module is imported only when such a file is shown). A run folder is summarised from its
latest.h5 and metrics.jsonl. `verify` reads every dataset so that HDF5 checks every checksum.
"""
import importlib
import json
import math
import os
import shlex

from rnnkit import h5
from rnnkit.errors import RnnkitError
from rnnkit.metrics import bits, perplexity, show_perplexity
from rnnkit.training.log import read_records

# format attribute -> "module:function(path) -> str"
DESCRIBERS = {
    "rnnkit-corpus": "rnnkit.corpus.reader:describe",
    "rnnkit-checkpoint": "rnnkit.training.checkpoint:describe",
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
    except json.JSONDecodeError as err:     # an attribute's JSON, damaged in place
        raise InfoError(f"{path}: damaged {kind} file (a stored JSON text cannot be read: "
                        f"{err})") from None
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
                        f"({with_sum} with a checksum: fletcher32, or sha256 for text)")
            datasets = h5.datasets(f)
            summed = sum(bool(d.fletcher32) or h5.DIGEST in d.attrs for d in datasets)
    except h5.DamagedFile as err:
        raise InfoError(str(err)) from None
    if not summed:
        return "checksums: none (made by rnnkit 0.1); --verify still reads every dataset"
    return (f"checksums: on {summed} of {len(datasets)} datasets (fletcher32, sha256 for text); "
            f"--verify checks them all")


def describe_run(run_dir, verify=False):
    """A run folder: its checkpoints and what they hold (metrics.jsonl past them is named),
    where it stands, its training time, its config as the command that makes it, then its
    latest.h5."""
    latest = os.path.join(run_dir, "latest.h5")
    metrics = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(latest) and not os.path.exists(metrics):
        raise InfoError(f"{run_dir} is a folder but not a run folder of rnnkit train "
                        f"(no latest.h5, no metrics.jsonl)")
    lines = [f"{run_dir}: run folder"]
    records = read_records(metrics)
    problems = []
    meta = _meta(latest, problems)
    best_meta = _meta(os.path.join(run_dir, "best.h5"), problems)
    saved = meta["step"] if meta else 0
    past = max([r["step"] for r in records if "step" in r and "event" not in r], default=0)
    lines.append(_checkpoints_line(run_dir, meta, best_meta))
    if problems:
        from rnnkit.training.checkpoint import kept_hint
        lines += [f"damaged: {p}" for p in problems]
        if not meta and os.path.exists(latest):
            lines.append("note: latest.h5 cannot be read: this folder cannot be resumed as it "
                         "is" + kept_hint(run_dir))
    elif past > saved and not meta:
        from rnnkit.training.checkpoint import kept_hint
        lines.append(f"note: metrics.jsonl runs to step {past:,} but there is no usable "
                     f"latest.h5: this folder cannot be resumed as it is" + kept_hint(run_dir))
    elif past > saved:
        lines.append(f"note: metrics.jsonl runs to step {past:,}, past latest.h5 (step "
                     f"{saved:,}): the run was stopped without a checkpoint, or is running; "
                     f"--resume continues from step {saved:,}")
    records = [r for r in records if r.get("step", 0) <= saved]     # what the checkpoints hold
    vals = [r for r in records if "val_loss" in r]
    events = [r for r in records if "event" in r]
    best = best_meta or meta
    if best and math.isfinite(best.get("best_val_loss", math.inf)):
        loss = best["best_val_loss"]
        at = f" at step {best['step']:,}" if best_meta else ""
        lines.append(f"best validation: {loss:.4f} nats/token{at} (perplexity {_ppl(loss)}, "
                     f"{bits(loss):.3f} bits)" + (f"; last: {vals[-1]['val_loss']:.4f} at step "
                                                  f"{vals[-1]['step']:,}" if vals else ""))
    else:
        lines.append("best validation: none yet")
    trains = [r for r in records if "train_loss" in r]
    elapsed = max([r.get("elapsed", 0.0) for r in records if "step" in r and "event" not in r]
                  + [meta.get("elapsed", 0.0) if meta else 0.0])
    if trains:
        last = trains[-1]
        at = meta["step"] if meta else last["step"]
        logged = (f"epoch {last['epoch']:.2f}, last loss {last['train_loss']:.4f}, "
                  f"{last.get('tokens_per_s', 0):,.0f} tokens/s")
        lines.append(f"training: step {at:,}, {logged}" if at == last["step"] else
                     f"training: step {at:,}; at the last logged step, {last['step']:,}: "
                     f"{logged}")
    elif meta:
        lines.append(f"training: step {meta['step']:,}")
    starts = [e for e in events if e["event"] in ("start", "resume")]
    # the last session's stop, if it wrote one (after a kill, the one before is not its)
    ends = [e for e in events if e["event"] in ("start", "resume", "stop")]
    time_line = f"training time: {clock(elapsed)}"
    if events:
        time_line += f" in {len(starts)} session{'s' if len(starts) != 1 else ''}"
        time_line += _ran_on(starts) + (
            f"; last stop: {ends[-1].get('reason')}" if ends and ends[-1]["event"] == "stop"
            else "; running or killed")
    lines.append(time_line)
    moved = [e for e in starts if str(e.get("reason", "")).startswith("new corpus ")]
    if moved:       # the config line trains on the last corpus alone
        lines.append("corpus: " + "; ".join(f"from step {e['step']:,} a {e['reason']}"
                                            for e in moved) + " (--new-corpus)")
    if meta:
        lines.append(f"config: {config_line(meta['config'], run_dir)}")
    if meta:
        try:
            described = describe(latest, verify)
            lines += ["", described]
        except InfoError as err:
            problems.append(str(err))
            lines.append(f"damaged: {err}")
    if verify:
        from rnnkit.training.checkpoint import step_files

        for path in [os.path.join(run_dir, "best.h5")] + list(map(str, step_files(run_dir))):
            if os.path.exists(path) and not (path.endswith("best.h5") and not best_meta):
                try:
                    lines.append(f"{path}: " + checksums(path, True))
                except InfoError as err:
                    problems.append(str(err))
                    lines.append(f"damaged: {err}")
    if problems:
        raise DamagedRun("\n".join(lines), problems)
    return "\n".join(lines)


def _ran_on(starts):
    """What the sessions ran on, as their start events recorded it (older runs' did not):
    " on cpu (avx2: haswell)", or how many ran on each (": 2 on ..., 1 on ...")."""
    targets = [e["target"] for e in starts if isinstance(e.get("target"), str)]
    if not targets:
        return ""
    if len(set(targets)) == 1 and len(targets) == len(starts):
        return f" on {targets[0]}"
    return ": " + ", ".join(f"{targets.count(t)} on {t}" for t in dict.fromkeys(targets))


def _checkpoints_line(run_dir, meta, best_meta):
    """Which checkpoints the folder holds, and the step of each."""
    from rnnkit.training.checkpoint import step_files

    def damaged(name):
        return os.path.exists(os.path.join(run_dir, name))

    parts = [f"latest.h5 (step {meta['step']:,})" if meta else
             "latest.h5 damaged" if damaged("latest.h5") else "no usable latest.h5",
             f"best.h5 (step {best_meta['step']:,})" if best_meta else
             "best.h5 damaged" if damaged("best.h5") else "no best.h5 yet"]
    kept = step_files(run_dir)
    if kept:
        parts.append(f"{len(kept)} kept: {', '.join(p.name for p in kept[:3])}"
                     + (", ..." if len(kept) > 3 else ""))
    return "checkpoints: " + "; ".join(parts)


def _meta(path, problems):
    """The root attributes of a checkpoint of the run, or None when it is missing or
    damaged (what is wrong then goes in `problems`)."""
    from rnnkit.training.checkpoint import read_meta

    if not os.path.exists(path):
        return None
    try:
        return read_meta(path)
    except RnnkitError as err:
        problems.append(str(err))
        return None


class DamagedRun(InfoError):
    """A run folder with damaged checkpoints: `text` describes the rest; the message names
    each damaged file."""

    def __init__(self, text, problems):
        super().__init__(f"{len(problems)} damaged: " + "; ".join(problems))
        self.text = text


def config_line(config, folder="."):
    """A checkpoint's config as the command that trains it, here: CORPUS (its path stored
    relative to the run `folder`), -o the folder, and the flags whose values differ from the
    defaults."""
    from rnnkit.model.config import ConfigError, TrainConfig, flag
    from rnnkit.model.config_file import from_dict
    from rnnkit.training.paths import located

    try:
        values = located(from_dict(config), folder).to_dict()
    except ConfigError as err:
        return f"not usable ({err})"
    defaults = TrainConfig().to_dict()
    flags = []
    for section, keys in values.items():
        for key, value in keys.items():
            if (section, key) == ("data", "corpus") or value is None or \
                    value == defaults[section][key]:
                continue
            name = flag(key)
            if isinstance(value, bool):
                flags.append(name if value else f"--no-{name[2:]}")
            else:
                # the float itself (6 digits trained another run), shortest: 1800, not 1800.0
                shown = str(value) if not isinstance(value, float) else \
                    f"{value:g}" if float(f"{value:g}") == value else repr(value)
                flags.append(f"{name} {shlex.quote(shown)}")
    corpus = values["data"]["corpus"] or "CORPUS"
    return " ".join(["rnnkit train", shlex.quote(corpus), "-o", shlex.quote(str(folder)),
                     *flags])


def clock(seconds):
    """Seconds as 45 s, 12 min 5 s, or 3 h 02 min."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds // 60 % 60:02d} min"


def _ppl(loss):
    return show_perplexity(perplexity(loss))
