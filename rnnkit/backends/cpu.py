"""The CPU backend: numpy arrays on the host, the Numba kernels of rnnkit/kernels/cpu.

Arrays start on a cache line (`zeros`): numpy puts large arrays 16 bytes past one, so where two
threads split a row at a multiple of 16 floats (the LSTM's rows by units, the GRU's and RNN's
feature-major scratch by streams) they would share the line at the cut. Threads: the
partition and the governor of rnnkit/threads.py. Sampling and dropout masks use numpy's
Generator (PCG64), whose state a checkpoint stores exactly; another backend's state (a
checkpoint written on a GPU) seeds a fresh stream (rnnkit.backends.derived_seed).
"""
import dataclasses

import numpy as np

from rnnkit import sampling, threads
from rnnkit.backends import CellKernels, derived_seed
from rnnkit.kernels.cpu import buffers, gru, jit, linear, loss, lstm, optim, rnn, step, warm

# Up to this many streams, a forward with T = 1 that keeps no caches (sampling) runs the
# per-unit step kernels (kernels/cpu/step.py), and an output projection of that many rows
# the per-row logits kernel.
STEP_MAX_N = 8



def _lstm_forward(b, cell, x, p, buf):
    lstm.lstm_forward(x, p["w_x"], p["w_h"], p["b"], buf["hs"], buf["c"], buf["gates"],
                      buf["cs"], buf["z"], buf["wt"])


def _lstm_backward(b, cell, x, p, g, buf, dhs, dh, dc, dx, s):
    lstm.lstm_backward(x, p["w_x"], p["w_h"], buf["hs"], buf["gates"], buf["cs"], dhs, dh, dc,
                       dx, g["w_x"], g["w_h"], g["b"], s["dg"], s["dht"], s["dct"], s["dwt"],
                       s["dxt"])


def _gru_forward(b, cell, x, p, buf):
    gru.gru_forward(x, p["w_x"], p["w_h"], p["b"], p["b_hn"], buf["gates"], buf["a"],
                    buf["hs"], buf["wp"])


def _gru_backward(b, cell, x, p, g, buf, dhs, dh, dc, dx, s):
    gru.gru_backward(x, p["w_x"], p["w_h"], buf["gates"], buf["a"], buf["hs"], dhs, dh, dx,
                     g["w_x"], g["w_h"], g["b"], g["b_hn"], s["dg"], s["dgh"], s["wt"])


def _rnn_forward(b, cell, x, p, buf):
    rnn.rnn_forward(x, p["w_x"], p["w_h"], p["b"], buf["hs"], buf["gates"], buf["wp"],
                    relu=cell.relu)


def _rnn_backward(b, cell, x, p, g, buf, dhs, dh, dc, dx, s):
    rnn.rnn_backward(x, p["w_x"], p["w_h"], buf["hs"], dhs, dh, dx, g["w_x"], g["w_h"], g["b"],
                     s["dg"], s["wt"], relu=cell.relu)


KERNELS = {
    "lstm": CellKernels(_lstm_forward, _lstm_backward, buffers.LSTM, ("lstm._forward",)),
    "gru": CellKernels(_gru_forward, _gru_backward, buffers.GRU, ("gru._forward",)),
    "rnn-tanh": CellKernels(_rnn_forward, _rnn_backward, buffers.RNN, ("rnn._forward",)),
    "rnn-relu": CellKernels(_rnn_forward, _rnn_backward, buffers.RNN, ("rnn._forward",)),
}


class CPUBackend:
    name = "cpu"

    def __init__(self, threads_=None, local_ranks=1):
        self.threads_why = "as set for this process"
        if threads_ is not None:
            _, self.threads_why = threads.set_threads(threads_, local_ranks)
        threads.limit_blas()
        self._step_scratch = {}
        self._workers = {}          # compile workers by group (prepare)
        self._later = []            # groups for workers after the backward one, in turn
        self._spec = None           # the backward worker's spec, while tasks remain
        self._tasks = set()         # its tasks that this process has not run yet
        self._capped = False        # prepare() capped the process's threads

    def describe(self):
        """What the first line of a run says about where it runs."""
        n = threads.partition()
        busy = "; fewer while other work slows them" if n > 1 else ""
        return f"cpu, threads: {n} ({self.threads_why}){busy}"

    def available_bytes(self):
        """Memory this process may still take: the kernel's MemAvailable, within any cgroup
        limit (None where unknown)."""
        found = []
        try:
            with open("/proc/meminfo", encoding="ascii") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        found.append(int(line.split()[1]) * 1024)
        except OSError:
            pass
        for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
            try:
                with open(path, encoding="ascii") as f:
                    text = f.read().strip()
                if text.isdigit() and int(text) < 1 << 60:
                    found.append(int(text))
            except OSError:
                pass
        return min(found) if found else None

    def compiled(self, cell):
        """Whether the first step needs no compiling, whatever build (serial or threaded) it
        runs."""
        return (threads.partition() > 1 and self.cached(cell, parallel=True)) or \
            self.cached(cell, parallel=False)

    def cached(self, cell, parallel):
        """Whether this cell's serial or threaded (parallel) builds load from the cache."""
        return all(jit.in_cache(name + ("_parallel" if parallel else ""))
                   for name in KERNELS[cell.name].cached)

    def buffers(self, cell, T, N, D, H):
        return KERNELS[cell.name].layout.buffers(T, N, D, H)

    def scratch(self, cell, T, N, D, H):
        return KERNELS[cell.name].layout.scratch(T, N, D, H)

    def prepare(self, model, N, T, optimizer):
        """Before a first step on a cold cache (rnnkit/kernels/cpu/warm.py): the backward
        kernels compile in a worker process while this one compiles the forward ones; with
        several threads the run starts on the serial builds while another worker compiles the
        threaded ones; then one compiles what sampling will need (generate after training)."""
        if not jit.CACHE:
            return
        spec = self._spec_for(model, N, T, optimizer)
        if threads.partition() > 1:
            if self.cached(model.cell, parallel=True):
                return              # the first step runs the threaded builds, all cached
            threads.cap(1)
            self._capped = True
            self._later.append({**spec, "group": "parallel"})
        if not self.cached(model.cell, parallel=False):
            self._spec, self._tasks = {**spec, "group": "backward"}, set(warm.TASKS)
            self._workers["backward"] = warm.spawn(self._spec)
        if self._workers or self._later:
            self._later.append({**spec, "group": "sampling"})

    def prepare_sampling(self, model):
        """Before generating on a cold cache: a worker compiles the sampling step's kernels
        (rnnkit/kernels/cpu/warm.py, "step") while this process runs the prime."""
        if jit.CACHE and not (jit.in_cache("step._layer_step") or
                              jit.in_cache("step._layer_step_parallel")):
            self._workers["step"] = warm.spawn({**self._spec_for(model, 1, 1, "sgd"),
                                                "group": "step"})

    @staticmethod
    def _spec_for(model, N, T, optimizer):
        """What a compile worker needs to build the kernels of this model and shapes."""
        return {"model": dataclasses.asdict(model.cfg) | {"dtype": str(model.dtype)},
                "N": N, "T": T, "optimizer": optimizer, "partition": threads.partition()}

    def _await(self, group):
        """Wait for a worker's builds (rather than compile them here too)."""
        worker = self._workers.pop(group, None)
        if worker is not None:
            worker.wait()           # it failed? then this process compiles what it lacks

    def end(self):
        """The run is over (or its threaded builds are cached): lift prepare()'s cap on threads,
        which is the process's, not this backend's. A worker still compiling goes on (its
        builds serve the next run) and ends with this process."""
        if self._capped:
            self._capped = False
            threads.cap(None)

    def _backward_tasks(self):
        """At the first step's first backward call (the output layer's, then the cells' and the
        embedding's; clipping and the update come after them) on a cold cache: run every
        backward task
        (warm.TASKS) that no other process holds, compiling it here, then wait for those that
        another process is compiling; after that their kernels load from the cache."""
        if not self._tasks:
            return
        for wait in (False, True):
            for name in warm.TASKS:
                if name in self._tasks:
                    with warm.turn(self._spec, name, wait) as mine:
                        if mine:
                            warm.task(self._spec, name)
                            self._tasks.discard(name)

    def _tend_workers(self):
        """After a step: start the later workers one at a time once the backward one is done;
        when the threaded builds' worker is done, let the governor run more threads."""
        for group, worker in list(self._workers.items()):
            if worker.poll() is not None:
                del self._workers[group]
                if group == "parallel":
                    self.end()
        if self._later and not self._workers:
            spec = self._later.pop(0)
            self._workers[spec["group"]] = warm.spawn(spec)

    # -- pacing (rnnkit/threads.py) ----------------------------------------------------------
    def begin(self):
        threads.begin()

    def observe(self, work, seconds):
        if self._workers or self._later:
            self._tend_workers()
        threads.observe(work, seconds)

    # -- arrays ------------------------------------------------------------------------------
    def zeros(self, shape, dtype):
        """Zeros whose first byte starts a cache line."""
        dtype = np.dtype(dtype)
        shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(n) for n in shape)
        size = int(np.prod(shape)) * dtype.itemsize
        raw = np.zeros(size + 64, np.uint8)
        start = -raw.ctypes.data % 64
        return raw[start:start + size].view(dtype).reshape(shape)

    def from_host(self, host):
        out = self.zeros(np.shape(host), np.asarray(host).dtype)
        out[...] = host
        return out

    def to_host(self, a):
        return np.array(a)

    def clone(self, a):
        """A new array on the backend with a's contents."""
        return self.from_host(a)

    def copy(self, dst, src):
        dst[...] = src

    def fill(self, a, value):
        a[...] = value

    def mul(self, a, b):
        """a *= b, in place."""
        a *= b

    def all_finite(self, a):
        return bool(np.isfinite(a).all())

    def ids(self, x):
        """(N, T) host token ids -> (T, N) int64 ids on the backend."""
        return np.ascontiguousarray(np.asarray(x).T, dtype=np.int64)

    # -- layers ------------------------------------------------------------------------------
    def cell_forward(self, cell, x, p, buf, train=True):
        """Without train, T = 1 with few streams (sampling) takes the step kernels."""
        T, N, _ = x.shape
        if not train and T == 1 and N <= STEP_MAX_N:
            self._await("step")
            H = buf["hs"].shape[2]
            key = (N, H, cell.gates, x.dtype)
            if key not in self._step_scratch:
                self._step_scratch[key] = step.step_scratch(N, H, cell.gates, x.dtype)
            c = buf["c"] if "c" in buf else buf["hs"][0]
            step.layer_step(cell.name, x[0], p["w_x"], p["w_h"], p["b"],
                            p.get("b_hn", p["b"]), buf["hs"][0], c, buf["hs"][1], c,
                            self._step_scratch[key])
            return
        KERNELS[cell.name].forward(self, cell, x, p, buf)

    def cell_backward(self, cell, x, p, g, buf, dhs, dh, dc, dx, scratch):
        self._backward_tasks()
        KERNELS[cell.name].backward(self, cell, x, p, g, buf, dhs, dh, dc, dx, scratch)

    def embed_forward(self, table, ids, out):
        linear.embed_forward(table, ids, out)

    def embed_backward(self, ids, dout, dtable):
        self._backward_tasks()
        linear.embed_backward(ids, dout, dtable)

    def linear_forward(self, x, w, b, y):
        """y (M, V) = x (M, H) @ w.T + b."""
        if x.shape[0] <= STEP_MAX_N:
            self._await("step")
            step.logits_step(x, w, b, y)
        else:
            linear.linear_forward(x, w, b, y)

    def linear_backward(self, x, w, dy, dx, dw, db):
        self._backward_tasks()
        linear.linear_backward(x, w, dy, dx, dw, db)

    def softmax_xent(self, logits, targets, scale=1.0, grad=False):
        """Summed cross-entropy in nats, a host float; overwrites logits (with grad: by
        scale * dloss/dlogits)."""
        return float(loss.softmax_xent(logits, targets, scale, grad))

    def softmax_xent_rows(self, logits, targets):
        """Each row's cross-entropy in nats, a host float64 array (M,); overwrites logits."""
        return loss.softmax_xent_rows(logits, targets)

    # -- randomness --------------------------------------------------------------------------
    def rng(self, seed):
        return np.random.default_rng(seed)

    def rng_state(self, rng):
        return rng.bit_generator.state

    def set_rng_state(self, rng, state):
        """Restore numpy's state exactly; another backend's (the GPU's Philox) seeds a fresh
        stream from it, the same for the same state."""
        if state.get("bit_generator") != rng.bit_generator.state["bit_generator"]:
            state = np.random.default_rng(derived_seed(state)).bit_generator.state
        rng.bit_generator.state = state

    def dropout(self, x, p, rng, mask, out):
        """Inverted dropout: mask = keep / (1 - p) with keep drawn from rng; out = x * mask."""
        dtype = x.dtype
        keep = rng.random(x.shape, dtype=dtype) >= p
        mask[...] = keep.astype(dtype) * dtype.type(1.0 / (1.0 - p))
        np.multiply(x, mask, out=out)

    def sample(self, logits, rng, temperature=1.0, top_k=0, top_p=1.0, greedy=False):
        """Next token of each of the N rows of (N, V) logits, as host ints."""
        return sampling.sample(np.asarray(logits), rng, temperature, top_k, top_p, greedy)

    # -- optimizers and clipping (the equations: rnnkit/kernels/cpu/optim.py) ----------------
    def sgd_update(self, p, g, buf, lr, momentum, one_minus_damp, weight_decay, nesterov,
                   first):
        optim.sgd_update(p, g, buf, lr, momentum, one_minus_damp, weight_decay, nesterov, first)

    def adam_update(self, p, g, m, v, step_size, beta1c, beta2, beta2c, bc2_sqrt, eps,
                    weight_decay, shrink):
        optim.adam_update(p, g, m, v, step_size, beta1c, beta2, beta2c, bc2_sqrt, eps,
                          weight_decay, shrink)

    def rmsprop_update(self, p, g, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps,
                       weight_decay, momentum, centered):
        optim.rmsprop_update(p, g, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps,
                             weight_decay, momentum, centered)

    def adagrad_update(self, p, g, state_sum, clr, eps, weight_decay):
        optim.adagrad_update(p, g, state_sum, clr, eps, weight_decay)

    def sum_squares(self, g):
        return float(optim.sum_squares(g))

    def scale(self, g, factor):
        optim.scale(g, factor)

    def clamp(self, g, low, high):
        optim.clamp(g, low, high)
