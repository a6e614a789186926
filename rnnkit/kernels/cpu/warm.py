"""Compiling in other processes, so that a first run on a cold cache starts sooner.

    python -m rnnkit.kernels.cpu.warm '{"group": "backward", ...}'

A first training step on an empty cache waits for the compiler (tens of seconds; Numba
compiles one function at a time, holding the GIL). Two things make it shorter, both exact:
the step's backward kernels compile in a second process while this one compiles the forward
ones, and the threaded (parallel) builds, which take longest, compile in the background while
training starts on the serial builds: the partition fixes every number, so serial and parallel
builds give the same bits (rnnkit/threads.py), and the run switches when they are in the
cache. A worker writes to the on-disk cache and exits; the training process then loads what it
needs from there. Groups:
- "backward": each layer's BPTT, the output projection's and embedding's backward, the
  optimizer update and clipping, serial builds, as tasks that the training process may take
  instead (TASKS below);
- "parallel": a whole training step and a validation on the threaded builds;
- "sampling": what `rnnkit generate` runs, the prime as one short batch (its products through
  BLAS: another build of the cell's forward) and a sampling step (the step kernels), so that
  generating after the run needs no compiling;
- "step": the sampling step alone, while `rnnkit generate` on a cold cache runs its prime.
A worker runs the kernels on zeros of the run's shapes (the same types, so the same builds).
"""
import hashlib
import json
import signal
import subprocess
import sys


def spawn(spec):
    """Start a worker for `spec` (a dict: group, model, N, T, optimizer, partition)."""
    # nothing reads its output (a pipe nobody drains would stop a chatty worker when full);
    # a worker that fails leaves its kernels to this process
    return subprocess.Popen([sys.executable, "-m", "rnnkit.kernels.cpu.warm", json.dumps(spec)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _die_with_parent():
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def run(spec):
    import numba

    from rnnkit import threads

    threads.set_threads(spec["partition"], adaptive=False)
    if spec["group"] == "backward":
        numba.set_num_threads(1)        # the serial builds
        for name in TASKS:
            with turn(spec, name, wait=False) as mine:
                if mine:
                    task(spec, name)
        return
    import numpy as np

    from rnnkit.optim import clip_gradients, make_optimizer

    model = _model(spec)
    backend, N, T = model.backend, spec["N"], spec["T"]
    if spec["group"] == "step":
        model.step(np.zeros(1, np.int64), model.init_state(1))
        return
    if spec["group"] == "sampling":
        x = np.zeros((1, 2), np.int64)
        model.evaluate(x, x, model.init_state(1))
        model.step(np.zeros(1, np.int64), model.init_state(1))
        return
    x = np.zeros((N, T), np.int64)      # "parallel"
    model.forward_backward(x, x, model.init_state(N), backend.rng(0))
    clip_gradients(model.grads, 1.0, 1.0, backend)
    make_optimizer(spec["optimizer"], model.params, backend).step(model.grads)
    model.evaluate(x, x, model.init_state(N))


# The "backward" group's tasks, in the order the worker takes each that no process sharing
# the cache holds (a lock per task). "linear" first: it needs no leaf (kernels/cpu/leaf.py),
# which the training process is compiling meanwhile. That process, when its first step
# reaches the backward (CPUBackend), takes every task still free, then waits for the others:
# whichever of the two is free first takes what is left.
TASKS = ("linear", "cell", "rest")


def turn(spec, name, wait):
    """Hold task `name` of this spec (jit.cache_lock): True once held, with wait after any
    process holding it lets go (its kernels are then in the cache); False if another holds it."""
    from rnnkit.kernels.cpu.jit import cache_lock

    key = hashlib.sha256(_key(spec).encode()).hexdigest()[:12]
    return cache_lock(f"task-{name}-{key}.lock", wait)


_models = {}


def _key(spec):
    """The spec without its group: the same model and shapes, whichever worker."""
    return json.dumps({**spec, "group": None}, sort_keys=True)


def _model(spec):
    """A model of the spec's config on a CPU backend of this process (one per spec)."""
    key = _key(spec)
    if key not in _models:
        from rnnkit.backends.cpu import CPUBackend
        from rnnkit.config import ModelConfig
        from rnnkit.model import Model

        _models[key] = Model(ModelConfig(**spec["model"]), backend=CPUBackend())
    return _models[key]


def task(spec, name):
    """Run task `name`'s kernels on zeros of the spec's shapes (the same types, so the same
    builds as the run's): "cell", every layer's BPTT; "linear", the output projection's
    backward; "rest", the embedding's backward, clipping and the optimizer update."""
    import numpy as np

    from rnnkit.optim import clip_gradients, make_optimizer

    model = _model(spec)
    backend, N, T, H = model.backend, spec["N"], spec["T"], model.cfg.hidden
    ws = model.workspace(N, T)
    if name == "cell":
        for layer in range(model.cfg.layers):
            x_in = ws["emb"] if layer == 0 else ws["dtop"][0]
            backend.cell_backward(model.cell, x_in, model.lp[layer], model.lg[layer],
                                  ws["layers"][layer], ws["dtop"][1], ws["dh"], ws["dc"],
                                  ws["demb"] if layer == 0 else ws["dtop"][0],
                                  model._scratch(ws, T, N, x_in.shape[2]))
    elif name == "linear":
        backend.linear_backward(ws["dtop"][1].reshape(T * N, H), model.out_w, ws["logits"],
                                ws["dtop"][0].reshape(T * N, H),
                                model.g["embed"] if model.cfg.tie_weights else model.g["out.w"],
                                model.g["out.b"])
    else:
        backend.embed_backward(backend.ids(np.zeros((N, T), np.int64)), ws["demb"],
                               model.g["embed"])
        clip_gradients(model.grads, 1.0, 1.0, backend)
        make_optimizer(spec["optimizer"], model.params, backend).step(model.grads)
if __name__ == "__main__":
    _die_with_parent()
    run(json.loads(sys.argv[1]))
