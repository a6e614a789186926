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
  optimizer update and clipping, serial builds;
- "parallel": a whole training step and a validation on the threaded builds;
- "sampling": what `rnnkit generate` runs, the prime as one short batch (its products through
  BLAS: another build of the cell's forward) and a sampling step (the step kernels), so that
  generating after the run needs no compiling.
A worker runs the kernels on zeros of the run's shapes (the same types, so the same builds).
"""
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
    import numpy as np
    import numba

    from rnnkit import threads
    from rnnkit.backends.cpu import CPUBackend
    from rnnkit.config import ModelConfig
    from rnnkit.model import Model
    from rnnkit.optim import clip_gradients, make_optimizer

    threads.set_threads(spec["partition"], adaptive=False)
    backend = CPUBackend()
    model = Model(ModelConfig(**spec["model"]), backend=backend)
    N, T = spec["N"], spec["T"]
    opt = make_optimizer(spec["optimizer"], model.params, backend)
    if spec["group"] == "sampling":
        x = np.zeros((1, 2), np.int64)
        model.evaluate(x, x, model.init_state(1))
        model.step(np.zeros(1, np.int64), model.init_state(1))
        return
    if spec["group"] == "parallel":
        x = np.zeros((N, T), np.int64)
        model.forward_backward(x, x, model.init_state(N), backend.rng(0))
        clip_gradients(model.grads, 1.0, 1.0, backend)
        opt.step(model.grads)
        model.evaluate(x, x, model.init_state(N))
        return
    numba.set_num_threads(1)        # the serial builds
    ws = model.workspace(N, T)
    H = model.cfg.hidden
    # First what needs no leaf (kernels/cpu/leaf.py): meanwhile the training process compiles
    # the leaves, which this one then loads.
    backend.linear_backward(ws["dtop"][1].reshape(T * N, H), model.out_w, ws["logits"],
                            ws["dtop"][0].reshape(T * N, H),
                            model.g["embed"] if model.cfg.tie_weights else model.g["out.w"],
                            model.g["out.b"])
    backend.embed_backward(backend.ids(np.zeros((N, T), np.int64)), ws["demb"], model.g["embed"])
    clip_gradients(model.grads, 1.0, 1.0, backend)
    opt.step(model.grads)
    for layer in range(model.cfg.layers):
        x_in = ws["emb"] if layer == 0 else ws["dtop"][0]
        scratch = model._scratch(ws, T, N, x_in.shape[2])
        backend.cell_backward(model.cell, x_in, model.lp[layer], model.lg[layer],
                              ws["layers"][layer], ws["dtop"][1], ws["dh"], ws["dc"],
                              ws["demb"] if layer == 0 else ws["dtop"][0], scratch)


if __name__ == "__main__":
    _die_with_parent()
    run(json.loads(sys.argv[1]))
