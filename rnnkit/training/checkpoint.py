"""Checkpoints: one HDF5 file holds everything a run needs to continue or to be used.

Layout (read it with plain h5py or h5dump; no pickle anywhere):

    /                attrs: format='rnnkit-checkpoint', format_version, rnnkit_version, created,
                            step, epoch, batch (next batch index within the epoch), elapsed
                            (training seconds so far), best_val_loss, config (the full resolved
                            training config as a JSON string), level and encoding (of the
                            corpus), and the trainer's counters bad_evals, last_eval_step and best_scheduled
    /weights/NAME    one dataset per named parameter ('embed', 'l0.w_x', ..., 'out.b')
    /optimizer       attrs name, step; /optimizer/hyper attrs; /optimizer/buffers/NAME datasets
    /schedule        attrs: the schedule's state_dict
    /rng             attrs: bit_generator, state (numpy's bit_generator.state as JSON: PCG64's
                     128-bit integers survive exactly, JSON integers have no size limit)
    /state/NAME      the hidden state carried between batches ('h', and 'c' for an LSTM)
    /vocab           the corpus vocabulary, stored as the corpus stores it (rnnkit.corpus.tokenize:
                     code points for char, byte values for byte, UTF-8 strings for word), with
                     the root attribute level ('char', 'byte', 'word' or 'bpe')
    /tokenizer       bpe level: the Hugging Face tokenizer's JSON (rnnkit/corpus/bpe.py)

The file is built in memory and written atomically (rnnkit/files.py): under a temporary name in
the same folder, fsynced, renamed over the final name, the folder fsynced. A kill -9 at any
moment, or a full disk, leaves the previous checkpoint of that name intact. Every dataset
carries HDF5's fletcher32 checksum and the metadata HDF5's own checksums (libver v110), so a
damaged file is found when read (`rnnkit info --verify`).
"""
import dataclasses
import json
import math
import os
import time
from pathlib import Path

import h5py
import numpy as np

from rnnkit import files, h5
from rnnkit.model import softmax
from rnnkit.version import __version__
from rnnkit.checkpoint_format import (  # noqa: F401  (read from here too)
    FORMAT, FORMAT_VERSION, CheckpointError, open_checkpoint)
from rnnkit.metrics import bits, perplexity, show_perplexity
from rnnkit.corpus.bpe import load_vocabulary
from rnnkit.corpus.tokenize import Vocabulary

LEGACY_TMP = ".tmp-"             # temporaries of rnnkit 0.1


@dataclasses.dataclass
class Checkpoint:
    config: dict                  # resolved training config (TrainConfig as a nested dict)
    weights: dict                 # parameter name -> array
    optimizer: dict = None        # Optimizer.state_dict(); None in a weights-only file
    schedule: dict = None         # Schedule.state_dict()
    rng: dict = None              # np.random.Generator.bit_generator.state
    state: dict = None            # carried hidden state: name -> array
    vocab: Vocabulary = None      # the corpus vocabulary (rnnkit.corpus.tokenize.Vocabulary)
    encoding: str = "utf-8"       # the corpus text encoding (byte-level models decode with it)
    step: int = 0                 # optimizer updates done
    epoch: int = 0                # full passes over the training split done
    batch: int = 0                # batches of the current epoch done (where to resume)
    elapsed: float = 0.0          # training wall time so far, seconds
    best_val_loss: float = math.inf
    meta: dict = dataclasses.field(default_factory=dict)  # other root attrs: counters, version


# ---------------------------------------------------------------------------------- writing

def _write_attrs(obj, values):
    for key, value in values.items():
        if value is None:
            continue
        obj.attrs[key] = value


def _dataset(group, name, value):
    """Every array with HDF5's fletcher32 checksum (which needs a chunked layout), so a
    flipped bit is found when the file is read, by rnnkit or any HDF5 reader."""
    value = np.asarray(value)
    if value.ndim and value.size:
        group.create_dataset(name, data=value, fletcher32=True)
    else:
        group.create_dataset(name, data=value)


def _write_group(parent, name, values):
    """A dict of arrays (datasets) and scalars (attrs); nested dicts become subgroups."""
    group = parent.create_group(name)
    for key, value in values.items():
        if isinstance(value, dict):
            _write_group(group, key, value)
        elif isinstance(value, np.ndarray):
            _dataset(group, key, value)
        elif value is not None:
            group.attrs[key] = value
    return group


RESERVED = {"format", "format_version", "rnnkit_version", "created", "level", "encoding"}


def _write(f, ck):
    _write_attrs(f, {k: v for k, v in ck.meta.items() if k not in RESERVED})
    _write_attrs(f, {
        "format": FORMAT, "format_version": FORMAT_VERSION, "rnnkit_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "step": int(ck.step), "epoch": int(ck.epoch), "batch": int(ck.batch),
        "elapsed": float(ck.elapsed), "best_val_loss": float(ck.best_val_loss),
        "config": json.dumps(ck.config, sort_keys=True),
    })
    weights = f.create_group("weights")
    for name, array in ck.weights.items():
        _dataset(weights, name, array)
    if ck.optimizer is not None:
        _write_group(f, "optimizer", ck.optimizer)
    if ck.schedule is not None:
        _write_group(f, "schedule", ck.schedule)
    if ck.rng is not None:
        _write_group(f, "rng", {"bit_generator": ck.rng["bit_generator"],
                                "state": json.dumps(ck.rng)})
    if ck.state is not None:
        _write_group(f, "state", ck.state)
    if ck.vocab is not None:
        f.attrs["level"] = ck.vocab.level
        f.attrs["encoding"] = ck.encoding
        ck.vocab.save(f)


def _arrays(tree):
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _arrays(value)
    elif isinstance(tree, np.ndarray):
        yield tree


def file_bytes(ck):
    """About the bytes of `ck`'s file: its arrays, their chunks' checksums and index (~0.1%),
    each vocabulary entry's share (a BPE tokenizer's too), and HDF5's other metadata."""
    trees = (ck.weights, ck.optimizer, ck.state)
    vocab = len(ck.vocab) * 64 if ck.vocab is not None else 0
    return int(sum(a.nbytes for t in trees for a in _arrays(t)) * 1.002) + vocab + (64 << 10)


def to_bytes(ck):
    """The checkpoint as the bytes of an HDF5 file, built in memory: writing those is then one
    plain write that fails cleanly on a full disk (HDF5 writing to a full disk itself, at once
    or at close, left its file open: disk space held, and a crash when it was collected).
    libver v110: HDF5's metadata carries checksums too."""
    with h5py.File(f"rnnkit-checkpoint-{id(ck)}", "w", driver="core", backing_store=False,
                   libver="v110") as f:
        _write(f, ck)
        f.flush()
        return f.id.get_file_image()


def save(path, ck):
    """Write checkpoint `ck` to `path` atomically (rnnkit/files.py), refusing at once where
    file_bytes cannot fit."""
    files.check_space(path, file_bytes(ck))
    files.write_bytes(path, to_bytes(ck))


def link(src, dst):
    """Make `dst` the same checkpoint as `src` (a hard link, else a copy), atomically."""
    try:
        size = os.path.getsize(src)
    except OSError as err:      # the run folder removed under the run
        raise files.write_error(dst, err) from None
    with files.atomic(dst, needed=size) as tmp:
        try:
            os.link(src, tmp)
        except OSError:
            import shutil
            shutil.copyfile(src, tmp)


# ---------------------------------------------------------------------------------- reading

def _read_attrs(obj):
    """Attributes as plain Python numbers and strings (h5py gives numpy scalars)."""
    return {key: (bool(v) if isinstance(v, np.bool_) else
                  int(v) if isinstance(v, np.integer) else
                  float(v) if isinstance(v, np.floating) else
                  v.decode() if isinstance(v, bytes) else v)
            for key, v in obj.attrs.items()}


def _read_group(group):
    out = _read_attrs(group)
    for key, item in h5.members(group):
        out[key] = _read_group(item) if isinstance(item, h5py.Group) else h5.read(item)
    return out


def load(path, weights_only=False):
    """Read a whole checkpoint (or, with weights_only, everything but optimizer and RNG)."""
    with open_checkpoint(path) as f:
        try:
            meta = _read_attrs(f)
            ck = Checkpoint(
                config=json.loads(meta.pop("config")),
                weights={name: h5.read(ds) for name, ds in h5.members(f["weights"])},
                step=meta.pop("step"), epoch=meta.pop("epoch"), batch=meta.pop("batch"),
                elapsed=meta.pop("elapsed"), best_val_loss=meta.pop("best_val_loss"),
                meta=meta)
            if "vocab" in f:
                ck.vocab = load_vocabulary(f, meta.pop("level"))
                ck.encoding = meta.pop("encoding", "utf-8")
            if "state" in f:
                ck.state = _read_group(f["state"])
            if not weights_only:
                for key in ("optimizer", "schedule"):
                    if key in f:
                        setattr(ck, key, _read_group(f[key]))
                if "rng" in f:
                    ck.rng = json.loads(_read_group(f["rng"])["state"])
        except h5.DamagedFile as err:
            raise CheckpointError(str(err)) from None
        except (KeyError, ValueError, OSError) as err:
            raise CheckpointError(f"{path}: damaged checkpoint ({err})") from None
    return ck


def read_meta(path):
    """Root attributes only (cheap): step, epoch, config (parsed), best_val_loss, ..."""
    with open_checkpoint(path) as f:
        try:
            meta = _read_attrs(f)
            meta["config"] = json.loads(meta.get("config", "{}"))
            meta["parameters"] = {name: ds.shape for name, ds in h5.members(f["weights"])}
            meta["has_optimizer"] = "optimizer" in f
        except h5.DamagedFile as err:
            raise CheckpointError(str(err)) from None
        except (KeyError, ValueError, OSError) as err:
            raise CheckpointError(f"{path}: damaged checkpoint ({err})") from None
    return meta


# ------------------------------------------------------------------------ a run's folder

def step_name(step):
    return f"step-{step:08d}.h5"


def step_files(run_dir):
    return sorted(Path(run_dir).glob("step-*.h5"))


def kept_hint(run_dir):
    """For a run folder without latest.h5: how its newest kept checkpoint can take its place
    (the end of a message), or ""."""
    kept = step_files(run_dir)
    if not kept:
        return ""
    return (f"; its newest kept checkpoint can take its place: cp {kept[-1]} "
            f"{Path(run_dir) / 'latest.h5'}")


def save_run(run_dir, ck, keep=0, best=False):
    """Save `ck` as the run's latest.h5 (and best.h5 when `best`). With keep > 0 it is also
    kept as step-NNNNNNNN.h5 and only the `keep` newest of those remain."""
    run_dir = Path(run_dir)
    latest = run_dir / "latest.h5"
    if keep > 0:
        first = run_dir / step_name(ck.step)
        save(first, ck)
        link(first, latest)
    else:
        save(latest, ck)
    if best:
        link(latest, run_dir / "best.h5")
    if keep > 0:
        for old in step_files(run_dir)[:-keep]:
            old.unlink()


def clean_temporaries(run_dir):
    """Remove the temporaries that killed writers left behind (and those of rnnkit 0.1,
    named .tmp-*); returns (path, bytes) of each removed. Call it holding the run's lock."""
    removed = [(path, size) for path, size, _ in files.clean_stale(run_dir)]
    for tmp in Path(run_dir).glob(LEGACY_TMP + "*"):
        try:
            size = tmp.stat().st_size
            tmp.unlink()
            removed.append((tmp, size))
        except OSError:
            pass
    return removed


def _softmax(model):
    text = softmax.describe(model)
    return f"{text}, " if text else ""


def describe(path):
    """Lines for `rnnkit info`: the model, training progress, optimizer and vocabulary."""
    from rnnkit.model.config import ConfigError
    from rnnkit.model.config_file import from_dict

    meta = read_meta(path)
    try:
        cfg = from_dict(meta["config"]).to_dict()     # the keys of today, whatever version
    except ConfigError as err:
        raise CheckpointError(f"{path}: the stored config is not usable: {err}") from None
    model, optim = cfg["model"], cfg["optim"]
    size = sum(int(np.prod(shape)) for shape in meta["parameters"].values())
    lines = [f"{path}: rnnkit checkpoint, format version {meta.get('format_version')}, "
             f"made by rnnkit {meta.get('rnnkit_version', '?')} at {meta.get('created', '?')}",
             f"model: {model.get('cell')} {model.get('layers')}x{model.get('hidden')}, "
             f"embed {model.get('embed')}, dropout {model.get('dropout')}, "
             f"{'tied, ' if model.get('tie_weights') else ''}"
             f"{_softmax(model)}{size:,} parameters ({model.get('dtype', 'float32')})"]
    best = meta.get("best_val_loss", math.inf)
    best_text = (f"{best:.4f} nats/token (perplexity {show_perplexity(perplexity(best))}, "
                 f"{bits(best):.3f} bits)" if math.isfinite(best) else "none yet")
    lines.append(f"progress: step {meta['step']:,}, epoch {meta['epoch']} + {meta['batch']} "
                 f"batches, {meta['elapsed']:.0f} s of training; best validation loss "
                 f"{best_text}")
    if meta["has_optimizer"]:
        lines.append(f"optimizer: {optim['optimizer']}, lr {optim['lr']}, clip-norm "
                     f"{optim['clip_norm']}; schedule {cfg['schedule']['schedule']}")
    data = cfg.get("data", {})
    from rnnkit.training.paths import locate

    corpus = locate(data.get("corpus"), os.path.dirname(os.path.abspath(path)))
    with open_checkpoint(path) as f:
        vocab = f["vocab"].shape[0] if "vocab" in f else 0
        level = f.attrs.get("level", "?")
    lines.append(f"vocabulary: {vocab:,} tokens, level {level}; " + (
        f"trained on {corpus} (N={data.get('batch_size')}, T={data.get('seq_len')})" if corpus
        else "no corpus recorded (an imported model)"))
    return "\n".join(lines)
