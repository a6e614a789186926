"""Compile workers: other processes that compile kernels, so that a first run on a cold cache
starts sooner (rnnkit/training/runtime.py decides when; bench/startup.py measures what they save).

    python -m rnnkit.training.compile_workers '{"group": "backward", ...}'      # what spawn() runs

A first training step on an empty cache waits for the compiler (Numba compiles one function at
a time, holding the GIL). Two things make it shorter, both exact: the step's backward kernels
compile in a worker while the run compiles the forward ones, and the threaded (parallel)
builds, which take longest, compile in a worker while training starts on the serial builds:
the partition fixes every number, so serial and parallel builds give the same bits
(rnnkit/backends/threads.py), and the run switches when they are in the cache. A worker writes to
the on-disk cache and exits; the run then loads what it needs from there. Groups:
- "backward": each layer's BPTT, the output projection's and embedding's backward, the
  optimizer update and clipping, serial builds, as tasks that the run takes too (TASKS);
- "parallel": a whole training step and a validation on the threaded builds;
- "sampling": what `rnnkit generate` runs, the prime as one short batch (another build of the
  cell's forward) and a sampling step (the step kernels), so that generating after the run
  needs no compiling;
- "step": the sampling step alone, while `rnnkit generate` on a cold cache runs its prime.
A worker runs the kernels on zeros of the run's shapes (the same types, so the same builds).
"""
import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys

import numpy as np

from rnnkit.backends import threads
from rnnkit.kernels.cache import cache_lock


def spec(model, N, T, optimizer, group, partition=None):
    """What a worker of `group` needs to build the kernels of this model, shapes and optimizer
    for a partition (default: this process's) of the work (a dict: group, model, N, T,
    optimizer, partition)."""
    return {"group": group, "model": dataclasses.asdict(model.cfg) | {"dtype": str(model.dtype)},
            "N": N, "T": T, "optimizer": optimizer,
            "partition": partition or threads.partition()}


def spawn(spec):
    """Start a worker for `spec`."""
    # nothing reads its output (a pipe nobody drains would stop a chatty worker when full);
    # a worker that fails leaves its kernels to the run
    return subprocess.Popen([sys.executable, "-m", "rnnkit.training.compile_workers",
                             json.dumps(spec), str(os.getpid())],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


# The "backward" group's tasks, in the order a worker takes each that no process sharing the
# cache holds (a lock per task). "linear" first: it needs no leaf (kernels/cpu/leaf.py), which
# the run is compiling meanwhile. The run, once it has compiled the forward kernels, takes
# every task still free, then waits for the others (rnnkit/training/runtime.py): whichever of the
# two is free first takes what is left.
TASKS = ("linear", "cell", "rest")


def turn(spec, name, wait):
    """Hold task `name` of this spec (a lock in the kernel cache): True once held, with wait
    after any process holding it lets go (its kernels are then in the cache); False if another
    holds it."""
    key = hashlib.sha256(json.dumps({**spec, "group": None}, sort_keys=True).encode())
    return cache_lock(f"task-{name}-{key.hexdigest()[:12]}.lock", wait)


def forward(model, N, T):
    """Compile (or load) the forward kernels of a training step: a forward on zeros."""
    x = np.zeros((N, T), np.int64)
    model.evaluate(x, x, model.init_state(N))


def task(model, spec, name):
    """Run task `name`'s kernels on zeros of the spec's shapes, on `model`'s arrays (writing
    its workspace and gradients, never its parameters): "cell", every layer's BPTT;
    "linear", the output layer's forward and backward; "rest", the embedding's backward, clipping
    and the optimizer update (on arrays of its own)."""
    from rnnkit.model import tables
    from rnnkit.model.optim import clip_gradients, make_optimizer

    backend, N, T, H = model.backend, spec["N"], spec["T"], model.cfg.hidden
    ws = model.workspace(N, T)
    table = None
    if ws["tt"] is not None:        # the first layer reads a table of one id (model/tables.py)
        table = (np.zeros((T, N), np.int64), ws["gt"][:ws["gt"].size // model.cfg.vocab_size]
                 .reshape(1, -1))
    if name == "cell":
        for layer in range(model.cfg.layers):
            x_in, first = (ws["emb"], table) if layer == 0 else (ws["dtop"][0], None)
            backend.cell_backward(model.cell, x_in, tables.layer(model.lp[layer], first),
                                  tables.layer(model.lg[layer], first), ws["layers"][layer],
                                  ws["dtop"][1], ws["dh"], ws["dc"],
                                  ws["demb"] if layer == 0 else ws["dtop"][0],
                                  model._scratch(ws, T, N, x_in.shape[2]), first)
    elif name == "linear":
        model.output.compile_backward(ws["dtop"][1].reshape(T * N, H),
                                      ws["dtop"][0].reshape(T * N, H))
    else:
        if table is None:
            backend.embed_backward(backend.ids(np.zeros((N, T), np.int64)), ws["demb"],
                                   model.g["embed"])
        one = model.dtype.type(1.0)
        clip_gradients(model.grads, 1.0, 1.0, backend)
        backend.scale(model.grads, one)     # a zero gradient is never scaled by clipping
        params = backend.zeros(model.params.shape, model.dtype)
        make_optimizer(spec["optimizer"], params, backend).step(model.grads)
        model.sparse_embedding = True
        if model.skips_rows():
            # a step that skips the embedding rows its ids leave at zero (model/sparse_rows.py)
            ranges = np.zeros((1, 2), np.int64)
            backend.fill(model.grads, 0.0, ranges)
            clip_gradients(model.grads, 1.0, 1.0, backend, ranges)
            backend.scale(model.grads, one, ranges)
            make_optimizer(spec["optimizer"], params, backend).step(model.grads, ranges)


def run(spec):
    """A worker's work: the kernels of its group on a model of the spec's config."""
    import numba

    from rnnkit.backends.cpu import CPUBackend
    from rnnkit.model.config import ModelConfig
    from rnnkit.model.network import Model
    from rnnkit.model.optim import clip_gradients, make_optimizer

    threads.set_threads(spec["partition"], adaptive=False)
    model = Model(ModelConfig(**spec["model"]), backend=CPUBackend())
    backend, N, T = model.backend, spec["N"], spec["T"]
    if spec["group"] == "backward":
        numba.set_num_threads(1)        # the serial builds
        for name in TASKS:
            with turn(spec, name, wait=False) as mine:
                if mine:
                    task(model, spec, name)
    elif spec["group"] == "step":
        model.step(np.zeros(1, np.int64), model.init_state(1))
    elif spec["group"] == "sampling":
        forward(model, 1, 2)
        model.step(np.zeros(1, np.int64), model.init_state(1))
    else:                               # "parallel"
        x = np.zeros((N, T), np.int64)
        model.forward_backward(x, x, model.init_state(N), backend.rng(0))
        clip_gradients(model.grads, 1.0, 1.0, backend)
        make_optimizer(spec["optimizer"], model.params, backend).step(model.grads)
        model.evaluate(x, x, model.init_state(N))


def _die_with_parent(parent):
    """End with `parent`, the process that spawned this one. PR_SET_PDEATHSIG covers a parent
    that ends from now on; one that ended before (a run of two steps ends while its worker is
    still importing) left this process to init, which the check of the parent's pid then sees:
    without it such workers went on compiling for tens of seconds beside the next run."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if parent is not None and os.getppid() != parent:
        sys.exit(0)


if __name__ == "__main__":
    _die_with_parent(int(sys.argv[2]) if len(sys.argv) > 2 else None)
    run(json.loads(sys.argv[1]))
