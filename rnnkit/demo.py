"""`make demo` (python -m rnnkit.demo): watch a model learn to write Python, no download needed.

1. Preprocess a corpus that every machine has: the .py files of this interpreter's standard
   library, in sorted order, up to CORPUS_BYTES (test suites left out).
2. Compile the kernels the run needs (on a fresh machine; saying so), then train the model of
   data/demo.toml (a 2x256 LSTM) for two minutes of training on the CPU, progress bar on
   stderr: the clock starts once the kernels are ready.
3. Print text sampled from the best checkpoint to stdout.

Everything goes to runs/demo (a previous demo run there is replaced). Then try:
    rnnkit generate runs/demo/best.h5 --prime "def " --temperature 0.7
    rnnkit train --resume runs/demo --max-time 10m
"""
import os
import shutil
import sys
import sysconfig
import time
from importlib import resources
from pathlib import Path

CORPUS_BYTES = 4 << 20          # enough text for two minutes; a few seconds to preprocess
TRAIN_TIME = "2m"
SKIP = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}


def stdlib_files(limit=CORPUS_BYTES):
    """Standard-library .py files in sorted path order until `limit` bytes."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files, total = [], 0
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP and not d.startswith("."))
        for name in sorted(names):
            path = Path(folder) / name
            if name.endswith(".py") and path.is_file():
                files.append(str(path))
                total += path.stat().st_size
                if total >= limit:
                    return files
    return files


def say(text):
    print(text, file=sys.stderr, flush=True)


def main(out="runs/demo", train_time=TRAIN_TIME, corpus_bytes=CORPUS_BYTES, hidden=256,
         length=800):
    from rnnkit.tools.generate import generate
    from rnnkit.corpus.preprocess import preprocess
    from rnnkit.tools.load import load_model
    from rnnkit.training.folder import run_files
    from rnnkit.training.train import train
    from rnnkit.model.config_file import load_toml, parse_duration

    out = Path(out)
    if run_files(out):
        say(f"replacing the previous demo run in {out}")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)

    files = stdlib_files(corpus_bytes)
    if not files:
        sys.exit(f"no standard-library .py files under {sysconfig.get_paths()['stdlib']}")
    corpus = out / "stdlib.h5"
    say(f"1/3 preprocessing {len(files)} files of the Python standard library "
        f"({sum(os.path.getsize(f) for f in files) / 1e6:.1f} MB) into {corpus}")
    preprocess(files, str(corpus), level="char", errors="replace", val_frac=0.02, test_frac=0.0,
               force=True)

    with resources.as_file(resources.files("rnnkit.data") / "demo.toml") as settings:
        cfg = load_toml(settings)
    cfg.data.corpus, cfg.model.hidden = str(corpus), hidden
    cfg.train.max_time = parse_duration(train_time)
    say(f"2/3 training an LSTM (2 layers of {hidden}) for {train_time}")
    warm_up(cfg)
    train(cfg, out, start=time.monotonic())

    say(f"3/3 text sampled from {out / 'best.h5'} (prime 'def ', temperature 0.8):\n")
    model, codec, _ = load_model(out / "best.h5")
    for piece in generate(model, codec, length=length, prime="def ", temperature=0.8, seed=0):
        sys.stdout.write(piece)
        sys.stdout.flush()
    print()
    say(f"\nmore: rnnkit generate {out / 'best.h5'} --length 2000 --temperature 0.7\n"
        f"      rnnkit train --resume {out} --max-time 10m")


def warm_up(cfg):
    """Compile (or load from the cache) every kernel a training step and a validation of this
    config call, before the clock of --max-time starts: as `rnnkit train` does
    (rnnkit/training/runtime.py), on a throwaway model of the same shapes, saying so when that takes
    time."""
    import dataclasses

    import numpy as np

    from rnnkit.backends import get_backend
    from rnnkit.model.network import Model
    from rnnkit.model.optim import clip_gradients, make_optimizer
    from rnnkit.training.runtime import Runtime, kept

    backend = get_backend(cfg.train.device, cfg.train.threads)
    m = dataclasses.replace(cfg.model, vocab_size=8)
    model = Model(m, backend=backend)
    runtime = Runtime(backend)
    if runtime.compiling(model):
        say(f"    compiling the {m.cell} kernels for {backend.compiles_for()} first (this run "
            f"only: {kept()})")
    started = time.monotonic()
    N, T = cfg.data.batch_size, cfg.data.seq_len
    runtime.prepare(model, N, T, cfg.optim.optimizer)
    x = np.zeros((N, T), np.int64)
    model.forward_backward(x, x, model.init_state(N), backend.rng(0))
    clip_gradients(model.grads, cfg.optim.clip_norm, cfg.optim.clip_value, backend)
    make_optimizer(cfg.optim.optimizer, model.params, backend).step(model.grads)
    model.evaluate(x, x, model.init_state(N))
    runtime.end()       # the run's own runtime compiles the threaded builds meanwhile
    if time.monotonic() - started > 2:
        say(f"    compiled in {time.monotonic() - started:.0f} s; training starts now")


if __name__ == "__main__":
    main()
