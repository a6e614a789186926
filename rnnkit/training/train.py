"""Training runs: start one, or resume one, in a run folder; the loop itself is
rnnkit/training/loop.py.

    from rnnkit.training.train import train, resume
    from rnnkit.model.config import TrainConfig
    cfg = TrainConfig()
    cfg.data.corpus = "corpus.h5"
    result = train(cfg, "runs/x")
    result = resume("runs/x", {"train": {"epochs": 100}})

A run folder is used by one process at a time (rnnkit/training/folder.py); a run that fails before
its first checkpoint leaves no folder behind. SIGINT, SIGTERM, SIGHUP and SIGUSR1 (which SLURM sends
before the time limit), from the moment training starts setting up, let the current step finish,
write latest.h5 and return a result with `interrupted` set; `rnnkit train` then exits with
EXIT_INTERRUPTED (75, sysexits' EX_TEMPFAIL: "try again"), and `rnnkit train --resume RUN_DIR`
continues exactly where it stopped. A second SIGINT stops at once (the last checkpoint is
intact). `--max-time` bounds the whole process, from its launch (rnnkit/training/clock.py).
"""
import contextlib
import copy
import dataclasses
import json
import math
import os

from rnnkit.training import checkpoint
from rnnkit.backends import get_backend
from rnnkit.training.clock import Deadline
from rnnkit.corpus.reader import Corpus, CorpusError, changes
from rnnkit.training.distributed import agreed, communicator
from rnnkit.files import human
from rnnkit.training.loop import Diverged, Loop, TrainError, TrainResult
from rnnkit.model.memory import memory_bytes
from rnnkit.model.network import WeightsMismatch
from rnnkit.model.optim import OPTIMIZERS
from rnnkit.training.run import Run, config_from_checkpoint, unused_settings
from rnnkit.training.paths import located
from rnnkit.training.folder import METRICS, RunFolder, run_files, unstarted_log
from rnnkit.training.stop_signals import StopSignals
from rnnkit.model.config import ConfigError, flag
from rnnkit.model.config_file import from_dict

EXIT_INTERRUPTED = 75
# the model settings that give its weights their shapes (--init-from must keep them)
SHAPE = ("cell", "embed", "hidden", "layers", "tie_weights", "softmax", "cutoffs", "div_value",
         "head_bias")
RESUMABLE = {"train"}            # config sections a resumed run may change (limits, not the math)
FIXED = {("train", "seed")}     # but not these: the run's random streams are in the checkpoint


def train(cfg, run_dir, comm=None, stream=None, start=None):
    """Train a new run in `run_dir` (created if needed; refused if it holds a run already).
    `start`: the time.monotonic() from which --max-time counts (default: process launch)."""
    comm = comm or communicator()
    with StopSignals() as signals, contextlib.ExitStack() as stack:
        folder = agreed(comm, lambda: stack.enter_context(
            RunFolder(run_dir, new=True, main=comm.rank == 0)))

        def fresh():
            latest = folder.path / "latest.h5"
            if latest.exists():
                folder.new = False      # someone else's run: leave it as it is
                step = checkpoint.read_meta(latest)["step"]
                raise TrainError(f"{folder.path} already holds a run (latest.h5 at step "
                                 f"{step}); continue it with --resume {folder.path} or choose "
                                 f"another output folder")
            found = run_files(folder.path)
            if unstarted:       # removed, as a killed run's temporaries are
                log, found = folder.path / METRICS, [n for n in found if n != METRICS]
                if folder.main:
                    folder.removed.append((log, log.stat().st_size))
                    log.unlink()
            if found:
                folder.new = False      # not ours to overwrite, nor to remove on the way out
                raise TrainError(f"{folder.path} holds files of an earlier run "
                                 f"({', '.join(found)}) but no latest.h5 to resume from; "
                                 f"choose another output folder, or move those files away")
        # a log of a start alone, left by a run killed before its first checkpoint: rank 0
        # looks (the others would race its removal), every rank is told
        unstarted = comm.decide(folder.main and unstarted_log(folder.path))
        agreed(comm, fresh)
        return _session(cfg, folder, None, comm, stream, signals, start)


def resume(run_dir, overrides=None, comm=None, stream=None, start=None, new_corpus=False):
    """Continue the run in `run_dir` from latest.h5. `overrides` may change the [train] section
    (limits, evaluation, logging) and [data] corpus: the same corpus moved, or with
    `new_corpus` another one with the same vocabulary (read from its beginning, the best
    validation starting afresh). A corpus whose fingerprint (Corpus.fingerprint) differs from
    the checkpoint's is refused without `new_corpus`, with a line saying what differs."""
    comm = comm or communicator()
    with StopSignals() as signals, contextlib.ExitStack() as stack:
        folder = agreed(comm, lambda: stack.enter_context(
            RunFolder(run_dir, new=False, main=comm.rank == 0)))

        def load():
            latest = folder.path / "latest.h5"
            if not latest.exists():
                raise TrainError(f"{folder.path} has no latest.h5 to resume from" +
                                 checkpoint.kept_hint(folder.path))
            ck = checkpoint.load(latest)
            stored = config_from_checkpoint(ck)
            if comm.rank == 0:
                folder.check_config(stored)
            stored = located(stored, folder.path)
            cfg = from_dict(overrides or {}, stored)
            if (overrides or {}).get("train", {}).get("init_from"):
                raise TrainError("--init-from starts a new run from a checkpoint's weights and "
                                 "--resume continues a run: give one of them")
            for section, values in (overrides or {}).items():
                for key in values:
                    allowed = (section in RESUMABLE and (section, key) not in FIXED) or \
                        (section, key) == ("data", "corpus")
                    if not allowed and getattr(getattr(cfg, section), key) != \
                            getattr(getattr(stored, section), key):
                        raise TrainError(f"[{section}] {key} comes from the checkpoint when "
                                         f"resuming and cannot change; start a new run to "
                                         f"change it")
            return cfg, ck
        cfg, ck = agreed(comm, load)
        return _session(cfg, folder, ck, comm, stream, signals, start, new_corpus)


def _storable(cfg):
    """TrainError for a path the run's config.toml (UTF-8) cannot hold: a name with bytes that
    no character encodes (it crashed at the first checkpoint)."""
    for what, path in (("the corpus", cfg.data.corpus), ("--init-from", cfg.train.init_from)):
        try:
            str(path).encode("utf-8")
        except UnicodeEncodeError:
            raise TrainError(f"{what} {path!r}: its name is not UTF-8 text, which the run's "
                             f"config.toml holds; rename it or link it under a UTF-8 "
                             f"name") from None


def _session(cfg, folder, ck, comm, stream, signals, start, new_corpus=False):
    """Set up on every rank (an error on one is an error on all), then run the loop."""
    agreed(comm, lambda: _storable(cfg))
    cfg = copy.deepcopy(cfg)        # resolved below; the caller's stays as it was
    deadline = Deadline(cfg.train.max_time, start)
    backend, corpus, batches, budget, init = agreed(
        comm, lambda: _open(cfg, folder, ck, comm, new_corpus))
    notes = [backend.describe() + (f"; {comm.size} ranks" if comm.size > 1 else "")]
    notes += [f"removed {p.name} ({human(size)}), left by a killed process"
              for p, size in folder.removed]
    with corpus:
        prints = comm.gather(corpus.fingerprint())
        agreed(comm, lambda: _same_corpus(prints))
        run = agreed(comm, lambda: _build(cfg, ck, init, comm, backend, corpus,
                                          prints[comm.rank], notes, new_corpus))
        try:
            loop = Loop(run, corpus, batches, folder, comm, stream, budget, deadline)
            for note in notes:
                loop.say(note)
            return loop.go(signals, resumed=ck is not None)
        except BaseException as err:
            comm.alone = not getattr(err, "shared", False)   # the others may wait for this rank
            raise


def _open(cfg, folder, ck, comm, new_corpus=False):
    """The backend, the corpus, this rank's batches, the step budget and --init-from's
    checkpoint (None without it), checked; cfg resolved in place."""
    backend = get_backend(cfg.train.device, cfg.train.threads, comm.local_size, comm.local_rank,
                          cfg.train.precision)
    if not cfg.data.corpus:
        raise TrainError("no corpus given")
    if ck is not None and not os.path.exists(cfg.data.corpus):
        raise TrainError(f"cannot find the run's corpus {ck.config['data']['corpus']!r} (from "
                         f"{folder.path}: {cfg.data.corpus}); give its path: rnnkit train "
                         f"CORPUS --resume {folder.path}")
    try:
        corpus = Corpus(cfg.data.corpus)
    except (CorpusError, OSError) as err:
        raise TrainError(str(err)) from None
    try:
        return (backend, corpus, *_checked(cfg, folder, ck, comm, new_corpus, backend, corpus))
    except BaseException:
        # closed now, not when collected: HDF5 can crash reading a table of variable-length
        # strings through one handle after another on the same file closed (h5py#2920)
        corpus.close()
        raise


def _checked(cfg, folder, ck, comm, new_corpus, backend, corpus):
    """_open's checks of the corpus against the run and the settings; (this rank's batches,
    the step budget, --init-from's checkpoint)."""
    if ck is not None and (ck.vocab.tokens != corpus.vocab or ck.vocab.level != corpus.level):
        raise TrainError(f"{cfg.data.corpus} has another vocabulary than the run in "
                         f"{folder.path}")
    if ck is not None and _corpus_changes(ck, corpus) and not new_corpus:
        raise TrainError(f"{cfg.data.corpus} is not the corpus this run trained on "
                         f"({'; '.join(_corpus_changes(ck, corpus))}); to go on training on it, "
                         f"add --new-corpus")
    for key in ("train_split", "val_split"):
        name = getattr(cfg.data, key)
        if name and name not in corpus.splits and (key, name) != ("val_split", "val"):
            raise TrainError(f"{flag(key)} {name!r}: {cfg.data.corpus} has no "
                             f"such split (it has {', '.join(corpus.splits) or 'none'})"
                             + ("; --val-split '' validates on none" if key == "val_split"
                                else ""))
    # --init-from's vocabulary before the model's settings (which come from it) meet this one
    init = _load_init(cfg.train.init_from, corpus) if ck is None and cfg.train.init_from \
        else None
    if init is not None:
        _same_shape(cfg.train.init_from, init, cfg.model)
    if ck is None:
        try:
            unused_settings(cfg, validates=cfg.data.val_split in corpus.splits)
        except ConfigError as err:
            raise TrainError(str(err)) from None
    elif cfg.data.val_split not in corpus.splits:     # --new-corpus: the run's rules stay
        rules = [r for r, on in (("early stopping (--patience)", cfg.train.patience),
                                 ("the plateau schedule", cfg.schedule.schedule == "plateau"))
                 if on]
        if rules:
            raise TrainError(f"{cfg.data.corpus} has no {cfg.data.val_split!r} split, and "
                             f"this run's {' and '.join(rules)} decides on validation: give "
                             f"a corpus with one")
    N, T = cfg.data.batch_size, cfg.data.seq_len
    if ck is not None and N % comm.size:    # the run's N is fixed: the ranks must fit it
        fit = [r for r in range(1, N + 1) if N % r == 0]
        raise TrainError(f"the run's N={N} streams cannot be shared evenly by {comm.size} "
                         f"ranks; resume it on {' or '.join(map(str, fit[-3:]))} ranks, or "
                         f"start a new run with --init-from for another batch size")
    try:
        corpus.check_fit(cfg.data.train_split, N, T, comm.size)
    except ValueError as err:
        raise TrainError(f"--batch-size/--seq-len: {err}") from None
    batches = corpus.batches(cfg.data.train_split, N, T, rank=comm.rank, world=comm.size)
    limits = cfg.train
    if limits.epochs < 1 and limits.max_steps < 1 and limits.max_time <= 0:
        raise TrainError("set at least one limit: --epochs, --max-steps or --max-time "
                         "([train] epochs, max_steps, max_time)")
    budget = min([n for n in (limits.max_steps, limits.epochs * batches.num_batches)
                  if n > 0], default=None)
    if cfg.schedule.schedule == "cosine" and not cfg.schedule.decay_steps:
        if not budget:
            raise TrainError("the cosine schedule needs a length: set --decay-steps, "
                             "--max-steps or --epochs")
        # resolved now and saved, so that a resumed run with other limits keeps its curve
        cfg.schedule = dataclasses.replace(cfg.schedule, decay_steps=budget)
    if cfg.schedule.schedule == "cosine" and cfg.schedule.warmup >= cfg.schedule.decay_steps:
        raise TrainError(f"--warmup {cfg.schedule.warmup} must be less than the cosine "
                         f"schedule's length, {cfg.schedule.decay_steps} steps (--decay-steps, "
                         f"else --max-steps or --epochs)")
    s = cfg.schedule
    if ck is not None and s.schedule == "cosine" and not s.min_lr and \
            ck.step >= s.decay_steps and (budget is None or budget > ck.step):  # a step to take
        raise TrainError(f"the run's cosine schedule ended at step {s.decay_steps} (its length, "
                         f"fixed when the run started): every further step would run at "
                         f"learning rate 0 (--min-lr) and change nothing; to train on, start a "
                         f"new run from it: rnnkit train CORPUS -o NEW_RUN --init-from "
                         f"{folder.path / 'latest.h5'} --schedule cosine --max-steps K")
    _check_memory(cfg, len(corpus.vocabulary), N // comm.size, T, backend)
    return batches, budget, init


def _build(cfg, ck, init, comm, backend, corpus, fingerprint, notes, new_corpus=False):
    """The run: restored from `ck`, or new (from the weights of `init`, --init-from's, if
    given)."""
    run = Run.build(cfg, corpus.vocabulary, corpus.encoding, backend, comm)
    run.corpus = fingerprint
    if ck is not None:
        run.restore(ck)
        changed = _corpus_changes(ck, corpus)
        if changed and new_corpus:      # its streams, and its validation losses, start afresh
            c = run.counters
            c.batch, c.best_val_loss, c.best_scheduled, c.bad_evals = 0, math.inf, math.inf, 0
            run.schedule.afresh()       # the plateau's best, as early stopping's
            run.new_corpus = True
            run.state = run.model.init_state(cfg.data.batch_size // comm.size)
            notes.append(f"a new corpus ({'; '.join(changed)}): training starts at its "
                         f"beginning, the best validation afresh")
    else:
        if init is not None:
            _init_from(run, cfg.train.init_from, init)
            notes.append(f"weights from {cfg.train.init_from}")
        run.state = run.model.init_state(cfg.data.batch_size // comm.size)
    return run


def _same_corpus(prints):
    """TrainError unless every rank's corpus has rank 0's fingerprint (`prints`, in rank
    order): the ranks read shares of one corpus's streams."""
    for rank, other in enumerate(prints[1:], 1):
        if changes(prints[0], other):
            raise TrainError(f"rank {rank} reads another corpus than rank 0 "
                             f"({'; '.join(changes(prints[0], other))}); every rank needs the "
                             f"same corpus")


def _corpus_changes(ck, corpus):
    """What differs between the corpus of checkpoint `ck` and `corpus` (nothing is known for
    a checkpoint made before fingerprints)."""
    stored = ck.meta.get("corpus")
    return changes(json.loads(stored), corpus.fingerprint()) if stored else []


def _load_init(path, corpus):
    """Checkpoint `path` (--init-from), or one line when its vocabulary is not the corpus's."""
    init = checkpoint.load(path, weights_only=True)
    if init.vocab is None or init.vocab.tokens != corpus.vocab or \
            init.vocab.level != corpus.level:
        raise TrainError(f"--init-from {path}: its vocabulary differs from {corpus.path}'s; "
                         f"make the corpus with rnnkit preprocess --vocab-from (the corpus "
                         f"{path} was trained on)")
    return init


def _same_shape(path, init, mine):
    """One line naming what differs where checkpoint `init`'s (from `path`) model shape is not
    the new run's `mine` (before other checks of the settings: --softmax full from an adaptive
    checkpoint is this mismatch, not cutoffs without the adaptive softmax)."""
    stored = config_from_checkpoint(init).model
    for key in SHAPE:
        if getattr(stored, key) != getattr(mine, key):
            raise TrainError(f"--init-from {path}: {flag(key)} "
                             f"{getattr(mine, key)} does not match its {getattr(stored, key)}; "
                             f"a run that starts from its weights needs its model shape")


def _init_from(run, path, init):
    """The weights of checkpoint `init` (from `path`) into a new run's model."""
    try:
        run.model.load_weights(init.weights)
    except WeightsMismatch as err:
        raise TrainError(f"--init-from {path}: parameter {err.name} is missing or has another "
                         f"shape") from None


def _check_memory(cfg, vocab_size, N, T, backend):
    """A one-line error, before anything is allocated, for a model that cannot fit."""
    available = backend.available_bytes()
    if available is None:
        return
    try:
        model = dataclasses.replace(cfg.model, vocab_size=vocab_size)
    except ValueError as err:
        raise TrainError(str(err)) from None
    need = memory_bytes(model, N, T, model.dtype, backend,
                        OPTIMIZERS[cfg.optim.optimizer].max_buffers)
    if need > 0.9 * available:
        raise TrainError(f"this model needs about {human(need)} for its parameters, gradients, "
                         f"optimizer state, activations and checkpoint (N={N}, T={T}); "
                         f"{human(available)} is available: lower --hidden, --layers, "
                         f"--batch-size or --seq-len")


__all__ = ["EXIT_INTERRUPTED", "Diverged", "TrainError", "TrainResult", "train", "resume"]
