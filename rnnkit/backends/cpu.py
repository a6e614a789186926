"""The CPU backend: numpy arrays on the host, the Numba kernels of rnnkit/kernels/cpu.

Arrays start on a cache line (`zeros`): numpy puts large arrays 16 bytes past one, so where two
threads split a row at a multiple of 16 floats (the LSTM's rows by units, the GRU's and RNN's
feature-major scratch by streams) they would share the line at the cut. Threads: the
partition and the governor of rnnkit/backends/threads.py. Sampling and dropout masks use numpy's
Generator (PCG64), whose state a checkpoint stores exactly; another backend's state (a
checkpoint written on a GPU) seeds a fresh stream (rnnkit.backends.derived_seed).
"""
import os
import resource
import threading

import numpy as np

from rnnkit.backends import sampling, threads
from rnnkit.cores import cgroup_folders
from rnnkit.backends.cpu_cells import KERNELS
from rnnkit.backends.interface import derived_seed
from rnnkit.kernels import cache
from rnnkit.kernels.cpu import adaptive, linear, loss, optim, sampling_step, target

# Up to this many streams, a forward with T = 1 that keeps no caches (sampling, beam search)
# runs the step kernels (kernels/cpu/sampling_step.py), and an output projection of that many
# rows the per-row logits kernel: both read each row of the weights once for all the streams,
# and beat the batched kernels up to about 16 (bench/RESULTS.md, stop 38).
STEP_MAX_N = 16

FINITE_BLOCK = 1 << 16          # all_finite's numbers at a time

_NO_BIAS = {np.dtype(t): np.zeros(0, t) for t in (np.float32, np.float64)}   # b of length 0



def _status_bytes(field):
    """A size from /proc/self/status (VmSize: the address space in use), 0 where unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))
    except (OSError, StopIteration, ValueError, IndexError):
        return 0


def _read_int(path):
    """The number in a /sys file; 0 where it cannot be read (a limit's usage unknown)."""
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return 0


class CPUBackend:
    name = "cpu"
    range_align = optim.ALIGN
    on_host = True

    def __init__(self, threads_=None, local_ranks=1):
        if threads_ is not None:
            threads.set_threads(threads_, local_ranks)
        threads.partition()         # the kernels' blocks: the budget, unless set before
        threads.limit_blas()
        self._local = threading.local()     # the sampling step's scratch: each thread's own

    def __getstate__(self):             # copy, pickle: a thread-local of its own
        return {k: v for k, v in self.__dict__.items() if k != "_local"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._local = threading.local()

    def describe(self):
        """What the first line of a run says about where it runs."""
        n = threads.partition()
        busy = "; fewer while other work slows them" if n > 1 else ""
        return f"{self.target()}, threads: {n} ({threads.reason()}){busy}"

    def target(self):
        return f"cpu ({target.ISA}: {target.CPU})"

    def compiles_for(self):
        return target.CHOSEN or "this machine"

    def available_bytes(self):
        """Memory this process may still take: the kernel's MemAvailable, within what is left
        of the cgroup limits of this process's cgroup and those above it (a limit less its
        usage) and of its address-space limit (ulimit -v); None where unknown."""
        found = []
        try:
            with open("/proc/meminfo", encoding="ascii") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        found.append(int(line.split()[1]) * 1024)
        except OSError:
            pass
        for folder, v2 in cgroup_folders("memory") or [("/sys/fs/cgroup", True),
                                                        ("/sys/fs/cgroup/memory", False)]:
            limit, usage = ("memory.max", "memory.current") if v2 else \
                ("memory.limit_in_bytes", "memory.usage_in_bytes")
            try:
                with open(os.path.join(folder, limit), encoding="ascii") as f:
                    text = f.read().strip()
                if text.isdigit() and int(text) < 1 << 60:
                    found.append(int(text) - _read_int(os.path.join(folder, usage)))
            except OSError:
                pass
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]    # ulimit -v: on the address space
        if soft != resource.RLIM_INFINITY:
            found.append(soft - _status_bytes("VmSize"))
        return max(0, min(found)) if found else None

    def compiled(self, cell, dtype=None):
        """Whether the first step needs no compiling, whatever build (serial or threaded) it
        runs."""
        return (threads.partition() > 1 and self.cached(cell, True, dtype)) or \
            self.cached(cell, False, dtype)

    def cached(self, cell, parallel, dtype=None):
        """Whether this cell's serial or threaded (parallel) builds (for arrays of `dtype`)
        load from the cache."""
        return all(cache.in_cache(name + ("_parallel" if parallel else ""), dtype)
                   for name in KERNELS[cell.name].cached)

    def sampling_cached(self, dtype=None):
        """Whether the sampling step's kernels (either build) load from the cache."""
        return cache.in_cache("sampling_step._layer_step", dtype) or \
            cache.in_cache("sampling_step._layer_step_parallel", dtype)

    def buffers(self, cell, T, N, D, H):
        return KERNELS[cell.name].layout.buffers(T, N, D, H)

    def scratch(self, cell, T, N, D, H):
        return KERNELS[cell.name].layout.scratch(T, N, D, H)

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

    def host_view(self, a):
        return np.asarray(a)

    def clone(self, a):
        """A new array on the backend with a's contents."""
        return self.from_host(a)

    def copy(self, dst, src):
        dst[...] = src

    def fill(self, a, value, ranges=None):
        if ranges is None:
            a[...] = value
        else:
            optim.fill_in(a, a.dtype.type(value), ranges)

    def gather_streams(self, dst, src, rows):
        """dst[:, n] = src[:, rows[n]] for (L, N, H) states (beam search's reorder); rows: host
        int64 (N,), each < src's N (src may have another N)."""
        np.take(src, rows, axis=1, out=dst)

    def mul(self, a, b):
        """a *= b, in place."""
        a *= b

    def all_finite(self, a):
        flat = a.reshape(-1)
        return all(np.isfinite(flat[i:i + FINITE_BLOCK]).all()     # no a-sized temporary
                   for i in range(0, flat.size, FINITE_BLOCK))

    def empty(self, shape, dtype):
        """An array every entry of which the caller writes (here: zeros, as cheap)."""
        return self.zeros(shape, dtype)

    def ids(self, x, plan=False):
        """(N, T) host token ids -> (T, N) int64 ids on the backend (plan: the GPU's
        embedding-gradient plan, nothing to do here)."""
        return np.ascontiguousarray(np.asarray(x).T, dtype=np.int64)

    def indices(self, host):
        """A 1-D host int64 array (a step's plan) as the kernels take it."""
        return np.ascontiguousarray(host, dtype=np.int64)

    # -- layers ------------------------------------------------------------------------------
    def cell_forward(self, cell, x, p, buf, train=True, table=None):
        """Without train, T = 1 with few streams (sampling) takes the step kernels."""
        T, N, _ = x.shape
        if not train and T == 1 and N <= STEP_MAX_N and table is None:
            H = buf["hs"].shape[2]
            key = (N, H, cell.gates, x.dtype)
            scratch = self._local.__dict__.setdefault("step_scratch", {})
            if key not in scratch:
                scratch[key] = sampling_step.step_scratch(N, H, cell.gates, x.dtype)
            c = buf["c"] if "c" in buf else buf["hs"][0]
            sampling_step.layer_step(cell.name, x[0], p["w_x"], p["w_h"], p["b"],
                            p.get("b_hn", p["b"]), buf["hs"][0], c, buf["hs"][1], c,
                            scratch[key])
            return
        KERNELS[cell.name].forward(self, cell, x, p, buf, table)

    def cell_backward(self, cell, x, p, g, buf, dhs, dh, dc, dx, scratch, table=None):
        KERNELS[cell.name].backward(self, cell, x, p, g, buf, dhs, dh, dc, dx, scratch, table)

    def table_inputs(self, cell):
        return True                 # every cell's kernels (kernels/cpu/table.py)

    def input_table(self, embed, rows, w_x, b, out):
        np.matmul(embed[rows], w_x, out=out)
        out += b

    def input_table_backward(self, embed, rows, w_x, gt, dw_x, dembed):
        dw_x += embed[rows].T @ gt
        dembed[rows] += gt @ w_x.T

    def embed_forward(self, table, ids, out):
        linear.embed_forward(table, ids, out)

    def embed_backward(self, ids, dout, dtable):
        linear.embed_backward(ids, dout, dtable)

    def linear_forward(self, x, w, b, y):
        """y (M, V) = x (M, H) @ w.T + b (b None: no bias)."""
        b = _NO_BIAS[x.dtype] if b is None else b
        if x.shape[0] <= STEP_MAX_N:
            sampling_step.logits_step(x, w, b, y)
        else:
            linear.linear_forward(x, w, b, y)

    def linear_backward(self, x, w, dy, dx, dw, db):
        linear.linear_backward(x, w, dy, dx, dw, _NO_BIAS[x.dtype] if db is None else db)

    def gather_rows(self, src, rows, out):
        adaptive.gather_rows(src, rows, out)

    def scatter_add_rows(self, src, rows, dst):
        adaptive.scatter_add_rows(src, rows, dst)

    def ragged_xent(self, flat, plan, R, scale=1.0, grad=False):
        return float(adaptive.ragged_xent(flat, plan, R, scale, grad))

    def ragged_xent_rows(self, flat, plan, R):
        return adaptive.ragged_xent_rows(flat, plan, R)

    def adaptive_log_probs(self, flat, bounds, out):
        adaptive.log_probs(flat, bounds, out)

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
                   first, ranges=None):
        if ranges is None:
            optim.sgd_update(p, g, buf, lr, momentum, one_minus_damp, weight_decay, nesterov,
                             first)
        else:
            optim.sgd_in(p, g, lr, ranges)

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

    def sum_squares(self, g, ranges=None):
        if ranges is None:
            return float(optim.sum_squares(g))
        # its blocks start at the runs' starts: one off the grid would read past g's end
        if ranges.size and (ranges.min() < 0 or ranges.max() > g.size or
                            (ranges[:, 0] % self.range_align).any()):
            raise ValueError(f"ranges must lie in [0, {g.size}] and start on multiples of "
                             f"{self.range_align}")
        return float(optim.sum_squares_in(g, ranges))

    def scale(self, g, factor, ranges=None):
        if ranges is None:
            optim.scale(g, factor)
        else:
            optim.scale_in(g, factor, ranges)

    def clamp(self, g, low, high, ranges=None):
        if ranges is None:
            optim.clamp(g, low, high)
        else:
            optim.clamp_in(g, low, high, ranges)
