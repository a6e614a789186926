"""The CUDA backend: numba.cuda device arrays, the @cuda.jit kernels of rnnkit/kernels/cuda.

Parameters, gradients, optimizer state, activations and the carried state live on the GPU;
per step only the loss (with the gradient norm and the sampled tokens, when asked) comes back
to the host. Every reduction adds in a fixed order and the embedding's scatter-add is a
segmented sum, so a run repeats bit for bit on the same device, across a checkpoint too.

Randomness: a Philox4x32-10 stream (backends/cuda_device.py); given another backend's state
(the CPU's numpy PCG64), set_rng_state seeds a stream from it (rnnkit.backends.derived_seed):
deterministic, but a different sequence of numbers.

The recurrences run persistent where W_h fits on chip, else one launch per step
(kernels/cuda/recurrent.py); docs/cuda.md describes the design. Under Numba's CUDA simulator
(NUMBA_ENABLE_CUDASIM=1) the same code runs as Python, for the tests.
"""
from types import SimpleNamespace

import numpy as np

from rnnkit.backends.cuda_device import KEY_MASK, PHILOX, Philox, key, on_device, select
from rnnkit.backends.cuda_cells import KERNELS
from rnnkit.backends.interface import BackendError, derived_seed

NO_TABLES = "input tables: not on the GPU backend (table_inputs is False)"


class CUDABackend:
    name = "cuda"
    range_align = 0                 # every number is zeroed, clipped, updated
    on_host = False

    def __init__(self, index=None, local_rank=0, precision="fp32"):
        self.cuda, index = select(index, local_rank)
        from rnnkit.kernels.cuda import (adaptive, elementwise, embed, gemm, gru, launch, loss,
                                         lstm, optim, products, recurrent, rnn, rng, sample,
                                         staging, streams)
        self.k = SimpleNamespace(adaptive=adaptive, elementwise=elementwise, embed=embed,
                                 gemm=gemm, gru=gru, launch=launch, loss=loss, lstm=lstm,
                                 optim=optim, products=products, recurrent=recurrent, rnn=rnn,
                                 rng=rng, sample=sample, staging=staging, streams=streams)
        self.index = index
        self.simulator = bool(launch.SIMULATOR)
        if self.simulator:
            self.gpu, sms, shared = "Numba's CUDA simulator (kernels run as Python)", 1, \
                recurrent.SHARED
        else:
            dev = self.cuda.get_current_device()
            name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
            sms = dev.MULTIPROCESSOR_COUNT
            shared = max(recurrent.SHARED, dev.MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
            self.gpu = f"{name}, {sms} SMs"
        self.precision = precision
        self.blas = products.make_blas(precision)
        self.rec = recurrent.Recurrence(sms, shared, self._resident, self.blas)
        self._partial = self.zeros((launch.REDUCE_BLOCKS,), np.float64)
        self._flag = self.zeros((1,), np.int64)
        self._tickets = self.zeros((2,), np.int64)        # the last-block counters
        self._kept_arrays = {}
        self.readback = staging.Readback(self.cuda)
        self._uploads = staging.Uploads(self.cuda)

    def counters(self):
        """(kernel launches and library calls, readbacks, seconds waited in them) so far: a
        step's difference is what the bench reports."""
        return self.k.launch.COUNT[0], self.readback.reads, self.readback.waited

    def describe(self):
        """What the first line of a run says about where it runs; after a step, the plan of
        each recurrence that ran (path, units per block, blocks, shared memory)."""
        products = (f"cuBLAS ({self.precision})" if self.blas is not None else
                    "rnnkit's tiled kernel")
        plans = self.rec.plans()
        if not plans:
            rec = "one persistent kernel where W_h fits on chip, else a launch per step"
        else:
            rec = "; ".join(f"{name} H={H} N={N} {dt}: {p.describe()}"
                            for (name, H, N, dt), p in plans.items())
        return f"{self.target()}; products: {products}; recurrence: {rec}"

    def target(self):
        where = "cuda" if self.simulator else f"cuda:{self.index}"
        return f"{where}, {self.gpu}"

    def compiles_for(self):
        return "this machine"

    def available_bytes(self):
        """Free memory on this GPU (None under the simulator)."""
        if self.simulator:
            return None
        free, _ = self.cuda.current_context().get_memory_info()
        return int(free)

    def compiled(self, cell, dtype=None):
        """Whether this cell's kernels load from the cache (else the first step compiles)."""
        if self.simulator:
            return True
        from rnnkit.kernels.cache import in_cache
        return all(in_cache(name, dtype) for name in KERNELS[cell.name].cached)

    def buffers(self, cell, T, N, D, H):
        return KERNELS[cell.name].layout.buffers(T, N, D, H)

    def scratch(self, cell, T, N, D, H):
        return KERNELS[cell.name].layout.scratch(T, N, D, H)

    # -- arrays ------------------------------------------------------------------------------
    def zeros(self, shape, dtype):
        dtype = np.dtype(dtype)
        shape = (int(shape),) if np.ndim(shape) == 0 else tuple(int(n) for n in shape)
        a = self.cuda.device_array(shape, dtype)
        if dtype.kind == "f" and a.size:
            self.fill(a, 0.0)
        elif a.size:
            a.copy_to_device(np.zeros(shape, dtype))
        return a

    def from_host(self, host):
        return self.cuda.to_device(np.ascontiguousarray(host))

    def to_host(self, a):
        return a.copy_to_host() if on_device(a) else np.array(a)

    def host_view(self, a):
        return a.copy_to_host() if on_device(a) else np.asarray(a)

    def clone(self, a):
        """A new device array with a's contents."""
        out = self.cuda.device_array(a.shape, a.dtype)
        if a.size:
            out.copy_to_device(a)
        return out

    def copy(self, dst, src):
        """dst[...] = src; src a device array of dst's dtype or a host array."""
        if tuple(src.shape) != tuple(dst.shape):
            raise ValueError(f"copy: shape {tuple(src.shape)} into {tuple(dst.shape)}")
        if on_device(src):
            if src.dtype != dst.dtype:
                raise TypeError(f"copy: {src.dtype} into {dst.dtype} on the device")
        else:
            src = np.ascontiguousarray(src, dtype=dst.dtype)
        if dst.size:
            dst.copy_to_device(src)

    def fill(self, a, value, ranges=None):
        flat = a.reshape(a.size)
        self.k.elementwise.run(self.k.elementwise.fill, a.size, flat, a.dtype.type(value))

    def gather_streams(self, dst, src, rows):
        """dst[:, n] = src[:, rows[n]] for (L, N, H) states (beam search's reorder); rows: host
        int64 (N,), each < src's N (src may have another N); dst must not be src."""
        L, N, H = dst.shape
        rows = self.cuda.to_device(np.ascontiguousarray(rows, np.int64))
        self.k.streams.gather(dst.reshape(dst.size), src.reshape(src.size), rows, L, N,
                              src.shape[1], H)

    def mul(self, a, b):
        """a *= b, in place."""
        self.k.elementwise.run(self.k.elementwise.mul, a.size, a.reshape(a.size),
                               b.reshape(b.size))

    def all_finite(self, a):
        self._flag.copy_to_device(np.zeros(1, np.int64))
        self.k.elementwise.run(self.k.elementwise.nonfinite, a.size, a.reshape(a.size), self._flag)
        return not self.readback.fetch(self._flag)[0]

    def empty(self, shape, dtype):
        """A device array whose contents are not set (every entry is written before use)."""
        return self.cuda.device_array(tuple(int(n) for n in np.atleast_1d(shape)), dtype)

    def ids(self, x, plan=False):
        """(N, T) host token ids -> (T, N) int64 ids on the device, through a pinned buffer
        and an asynchronous copy (kernels/cuda/staging.py). plan: also the embedding
        gradient's plan (a training step's inputs), computed on the host and sent in the
        same copy."""
        host = np.ascontiguousarray(np.asarray(x).T, dtype=np.int64).reshape(-1)
        T_N = np.asarray(x).T.shape
        if not plan:
            return self._uploads.put(host).reshape(T_N)
        steps, S = self.k.embed.segments(host)
        both = self._uploads.put(np.concatenate([host, steps]))
        ids = both[:host.size].reshape(T_N)
        ids.plan, ids.S = both[host.size:], S
        return ids

    def indices(self, host):
        """A device copy of the 1-D host int64 `host` through the pinned ring (valid until
        staging.RING more uploads: for the step that made it)."""
        return self._uploads.put(np.ascontiguousarray(host, dtype=np.int64).reshape(-1))

    def _kept(self, name, shape, dtype):
        """A device array kept between calls (loss rows, sampled tokens)."""
        key = (name, tuple(shape), np.dtype(dtype))
        if key not in self._kept_arrays:
            self._kept_arrays[key] = self.zeros(shape, dtype)
        return self._kept_arrays[key]

    # -- layers ------------------------------------------------------------------------------
    def cell_forward(self, cell, x, p, buf, train=True, table=None):
        """Caches are written with or without train. No tables here (table_inputs)."""
        if table is not None:
            raise BackendError(NO_TABLES)
        KERNELS[cell.name].forward(self, cell, x, p, buf)

    def cell_backward(self, cell, x, p, g, buf, dhs, dh, dc, dx, scratch, table=None):
        if table is not None:
            raise BackendError(NO_TABLES)
        KERNELS[cell.name].backward(self, cell, x, p, g, buf, dhs, dh, dc, dx, scratch)

    def table_inputs(self, cell):
        return False        # cuBLAS's products; a GPU step waits on the recurrence

    def input_table(self, embed, rows, w_x, b, out):
        raise BackendError(NO_TABLES)

    def input_table_backward(self, embed, rows, w_x, gt, dw_x, dembed):
        raise BackendError(NO_TABLES)

    def embed_forward(self, table, ids, out):
        self.k.embed.embed_forward(table, ids, out)

    def embed_backward(self, ids, dout, dtable):
        """dtable[ids] += dout, a segmented sum by id in a fixed order (no atomics); the plan
        came with ids(x, plan=True), else it is made and sent now."""
        if getattr(ids, "plan", None) is None:
            ids = self.ids(ids.copy_to_host().T, plan=True)
        self.k.embed.embed_backward(ids.plan, ids.S, dout, dtable)

    def linear_forward(self, x, w, b, y):
        """y (M, V) = x (M, H) @ w.T + b (b None: no bias)."""
        self.k.products.matmul(self.blas, y, x, w, trans_b=True, bias=b)

    def linear_backward(self, x, w, dy, dx, dw, db):
        """dw += dy.T @ x; db += the sum of dy's rows (db None: no bias); dx = dy @ w
        (overwritten)."""
        M, V = dy.shape
        self.k.products.matmul(self.blas, dw, dy, x, trans_a=True, accumulate=True)
        if db is not None:
            self.k.gemm.row_sums(dy, db, V, 1, M, 0, 1, 0, V)
        self.k.products.matmul(self.blas, dx, dy, w)

    def gather_rows(self, src, rows, out):
        self.k.adaptive.gather_rows(src, rows, out)

    def scatter_add_rows(self, src, rows, dst):
        self.k.adaptive.scatter_add_rows(src, rows, dst)

    def adaptive_log_probs(self, flat, bounds, out):
        self.k.adaptive.adaptive_log_probs(flat, bounds, out)

    def softmax_xent(self, logits, targets, scale=1.0, grad=False):
        """Summed cross-entropy in nats, overwriting logits (with grad: by scale *
        dloss/dlogits): a staging.Deferred float that comes with the step's one readback
        (the gradient norm's, sum_squares), or when first used as a number."""
        M, V = logits.shape
        return self._deferred_loss(V, lambda rows, rb: self.k.loss.softmax_xent(
            logits, targets, scale, grad, rows, self.rec.bar, rb.device, self._tickets[0:1]),
            M)

    def ragged_xent(self, flat, plan, R, scale=1.0, grad=False):
        """softmax_xent over the rows of a ragged plan (the adaptive softmax's); a Deferred
        float as softmax_xent's."""
        return self._deferred_loss("its row's width", lambda rows, rb: self.k.loss.ragged_xent(
            flat, plan, R, scale, grad, rows, self.rec.bar, rb.device, self._tickets[0:1]), R)

    def ragged_xent_rows(self, flat, plan, R):
        """Each ragged row's loss, a host float64 array (R,); the rows are left as scratch."""
        rows = self._kept("xent", (R,), np.float64)
        self.k.loss.ragged_xent(flat, plan, R, 1.0, False, rows, self.rec.bar,
                                self.readback.device, self._tickets[0:1], totals=False)
        out = self.readback.fetch(rows)
        self._barrier_check(self.readback.fetch(self.rec.bar)[1])
        if (out < 0).any():
            raise ValueError("targets must lie in [0, its row's width)")
        return out

    def _deferred_loss(self, V, launch, M):
        """The loss of launch(rows, readback) as a staging.Deferred (module docstring)."""
        rb = self.readback
        if rb.pending is not None:      # an earlier loss, not read yet: before it is lost
            rb.read()
        launch(self._kept("xent", (M,), np.float64), rb)

        def check(values):
            self._barrier_check(values[2])
            if values[1]:
                raise ValueError(f"targets must lie in [0, {V})")

        rb.pending = self.k.staging.Deferred(rb.read, check)
        return rb.pending

    def softmax_xent_rows(self, logits, targets):
        """Per-row losses -log softmax(row)[target], a host float64 array (M,); the logits
        are left as scratch."""
        M, V = logits.shape
        rows = self._kept("xent", (M,), np.float64)
        self.k.loss.softmax_xent(logits, targets, 1.0, False, rows, self.rec.bar,
                                 self.readback.device, self._tickets[0:1], totals=False)
        out = self.readback.fetch(rows)
        self._barrier_check(self.readback.fetch(self.rec.bar)[1])
        if (out < 0).any():
            raise ValueError(f"targets must lie in [0, {V})")
        return out

    def _barrier_check(self, timed_out):
        if timed_out:
            self.rec.reset(mode="steps")
            raise BackendError("the persistent recurrence timed out waiting for its blocks "
                               "(another process on this GPU?); this step is void; run again "
                               "(this process now runs one launch per step)")

    def _resident(self, kernel, argtypes, threads, shared):
        """How many blocks of kernel with `shared` bytes of dynamic shared memory can be
        resident at once (the persistent kernel's grid barrier needs all of them), after
        opting the kernel in to more than 48 KB. A refusal of the driver is one line on
        stderr and 0 (the recurrence then runs a launch per step)."""
        if self.simulator:
            return 1                    # the simulator runs blocks one after another
        from numba.cuda.cudadrv.driver import CudaAPIError
        compiled = kernel.compile(argtypes)
        step = "opting in to shared memory"
        try:
            if shared > self.k.recurrent.SHARED:
                self.k.launch.opt_in(compiled, shared)
            step = "the occupancy query"
            return compiled.max_cooperative_grid_blocks(threads, shared)
        except (CudaAPIError, AttributeError, TypeError) as err:   # driver or binding refused
            self.k.recurrent.say(f"{kernel.__name__}: {step} ({shared} B) failed: {err}; "
                                 f"the recurrence runs one launch per step")
            return 0

    # -- randomness --------------------------------------------------------------------------
    def rng(self, seed):
        return Philox(key(seed))

    def rng_state(self, rng):
        return {"bit_generator": PHILOX, "key": rng.key, "counter": rng.counter}

    def set_rng_state(self, rng, state):
        """Restore a state of this backend exactly; another backend's (the CPU's PCG64)
        seeds a fresh stream from it, the same for the same state."""
        if state.get("bit_generator") == PHILOX:
            rng.key, rng.counter = int(state["key"]) & KEY_MASK, int(state["counter"])
        else:
            rng.key, rng.counter = key(derived_seed(state)), 0

    def dropout(self, x, p, rng, mask, out):
        """Inverted dropout: mask = keep / (1 - p), keep drawn from rng; out = x * mask."""
        dt = x.dtype.type
        self.k.rng.run_dropout(x.reshape(x.size), dt(p), dt(1.0 / (1.0 - p)), rng.key,
                                  rng.take(x.size), mask.reshape(mask.size),
                                  out.reshape(out.size))

    def sample(self, logits, rng, temperature=1.0, top_k=0, top_p=1.0, greedy=False):
        """Next token of each of the N rows of (N, V) logits, as host ints."""
        M = logits.shape[0]
        out = self._kept("tokens", (M,), np.int64)
        counter = rng.counter if greedy else rng.take(M)
        self.k.sample.sample(logits, temperature, top_k, top_p, greedy, rng.key, counter,
                                out)
        return self.readback.fetch(out)

    # -- optimizers and clipping (the equations: rnnkit/kernels/cpu/optim.py) ----------------
    def sgd_update(self, p, g, buf, lr, momentum, one_minus_damp, weight_decay, nesterov,
                   first, ranges=None):
        self.k.optim.update(self.k.optim.sgd_update, p, g, buf, lr, momentum, one_minus_damp,
                            weight_decay, nesterov, first)

    def adam_update(self, p, g, m, v, step_size, beta1c, beta2, beta2c, bc2_sqrt, eps,
                    weight_decay, shrink):
        self.k.optim.update(self.k.optim.adam_update, p, g, m, v, step_size, beta1c, beta2,
                            beta2c, bc2_sqrt, eps, weight_decay, shrink)

    def rmsprop_update(self, p, g, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps,
                       weight_decay, momentum, centered):
        self.k.optim.update(self.k.optim.rmsprop_update, p, g, square_avg, grad_avg, buf, lr,
                            alpha, one_minus_alpha, eps, weight_decay, momentum, centered)

    def adagrad_update(self, p, g, state_sum, clr, eps, weight_decay):
        self.k.optim.update(self.k.optim.adagrad_update, p, g, state_sum, clr, eps,
                            weight_decay)

    def sum_squares(self, g, ranges=None):
        """sum(g^2) accumulated in float64 in a fixed order, as a host float. Its transfer is
        the step's one readback: the loss (and its checks) come with it."""
        rb = self.readback
        self.k.elementwise.sum_squares(g.reshape(g.size), self._partial, self.rec.bar,
                                       rb.device, self._tickets[1:2])
        values = rb.read()
        self._barrier_check(values[2])
        return float(values[3])

    def scale(self, g, factor, ranges=None):
        self.k.elementwise.run(self.k.elementwise.scale, g.size, g.reshape(g.size),
                                  g.dtype.type(factor))

    def clamp(self, g, low, high, ranges=None):
        self.k.elementwise.run(self.k.elementwise.clamp, g.size, g.reshape(g.size),
                                  g.dtype.type(low), g.dtype.type(high))
