"""The CUDA backend: numba.cuda device arrays, the @cuda.jit kernels of rnnkit/kernels/cuda.

Parameters, gradients, optimizer state, activations and the carried state live on the GPU;
per step only the loss (with the gradient norm and the sampled tokens, when asked) comes back
to the host. Every reduction adds in a fixed order and the embedding's scatter-add is a
segmented sum, so a run repeats bit for bit on the same device, across a checkpoint too.

Randomness: a Philox4x32-10 stream (kernels/cuda/rng.py) whose state, {"bit_generator":
"Philox4x32-10", "key": int, "counter": int}, a checkpoint stores exactly. Given another
backend's state (the CPU's numpy PCG64), set_rng_state seeds a stream from it
(rnnkit.backends.derived_seed): deterministic, but a different sequence of numbers.

The recurrences run persistent where W_h fits on chip, else one launch per step
(kernels/cuda/recurrent.py); docs/cuda.md describes the design. Under Numba's CUDA simulator
(NUMBA_ENABLE_CUDASIM=1) the same code runs as Python, for the tests.
"""
import importlib.util
from types import SimpleNamespace

import numpy as np

from rnnkit.backends import BackendError, CellKernels, derived_seed
from rnnkit.kernels.cuda import buffers

PHILOX = "Philox4x32-10"
KEY_MASK = (1 << 63) - 1             # keys travel as int64 kernel arguments


def _cuda(index, local_rank=0):
    """numba.cuda and the index of the device it selected (`index`; None: `local_rank`
    modulo the devices seen); BackendError (one line) when it cannot run."""
    if importlib.util.find_spec("numba_cuda") is None:
        raise BackendError("--device cuda needs numba-cuda: pip install 'rnnkit[cuda]'")
    from numba import cuda
    from numba.core.config import ENABLE_CUDASIM
    if ENABLE_CUDASIM:
        return cuda, index or 0
    from numba.cuda.cudadrv import driver, nvvm
    if not driver.driver.is_available or not len(cuda.gpus):
        raise BackendError("--device cuda: no CUDA GPU found (no NVIDIA driver, or it sees no "
                           "device); use --device cpu")
    if not nvvm.is_available():
        raise BackendError("--device cuda: the CUDA compiler (NVVM) is missing: "
                           "pip install 'rnnkit[cuda]', or install the CUDA toolkit")
    if index is None:
        index = local_rank % len(cuda.gpus)
    if index >= len(cuda.gpus):
        raise BackendError(f"--device cuda:{index}: this machine has {len(cuda.gpus)} "
                           f"CUDA GPU(s), numbered from 0")
    cuda.select_device(index)
    return cuda, index


def _on_device(a):
    return hasattr(a, "copy_to_host")        # numba device arrays (and the simulator's)


class Philox:
    """A device RNG: the stream's key and the counter of its next draw."""

    def __init__(self, key, counter=0):
        self.key, self.counter = int(key) & KEY_MASK, int(counter)

    def take(self, n):
        """The counter of the first of n draws, moving the stream past them."""
        start, self.counter = self.counter, self.counter + int(n)
        return start


def _key(seed):
    words = np.random.SeedSequence(seed).generate_state(2, np.uint32)
    return (int(words[1]) << 32 | int(words[0])) & KEY_MASK


def _lstm_forward(b, cell, x, p, buf):
    b.k.lstm.lstm_forward(x, p["w_x"], p["w_h"], p["b"], buf["hs"], buf["c"], buf["gates"],
                          buf["cs"], buf["z"], b.rec)


def _lstm_backward(b, cell, x, p, g, buf, dhs, dh, dc, dx, s):
    b.k.lstm.lstm_backward(x, p["w_x"], p["w_h"], buf["hs"], buf["gates"], buf["cs"], buf["z"],
                           dhs, dh, dc, dx, g["w_x"], g["w_h"], g["b"], s["dg"], b.rec)


def _gru_forward(b, cell, x, p, buf):
    b.k.gru.gru_forward(x, p["w_x"], p["w_h"], p["b"], p["b_hn"], buf["gates"], buf["a"],
                        buf["hs"], b.rec)


def _gru_backward(b, cell, x, p, g, buf, dhs, dh, dc, dx, s):
    b.k.gru.gru_backward(x, p["w_x"], p["w_h"], buf["gates"], buf["a"], buf["hs"], dhs, dh, dx,
                         g["w_x"], g["w_h"], g["b"], g["b_hn"], s["dg"], s["dgh"], b.rec)


def _rnn_forward(b, cell, x, p, buf):
    b.k.rnn.rnn_forward(x, p["w_x"], p["w_h"], p["b"], buf["hs"], buf["gates"], b.rec,
                        relu=cell.relu)


def _rnn_backward(b, cell, x, p, g, buf, dhs, dh, dc, dx, s):
    b.k.rnn.rnn_backward(x, p["w_x"], p["w_h"], buf["hs"], dhs, dh, dx, g["w_x"], g["w_h"],
                         g["b"], s["dg"], b.rec, relu=cell.relu)


# Each cell's kernels here; `cached`: what its first step would otherwise compile longest.
KERNELS = {
    "lstm": CellKernels(_lstm_forward, _lstm_backward, buffers.LSTM,
                        ("lstm.forward_steps", "gemm.gemm")),
    "gru": CellKernels(_gru_forward, _gru_backward, buffers.GRU,
                       ("gru.forward_steps", "gemm.gemm")),
    "rnn-tanh": CellKernels(_rnn_forward, _rnn_backward, buffers.RNN,
                            ("rnn.forward_steps", "gemm.gemm")),
    "rnn-relu": CellKernels(_rnn_forward, _rnn_backward, buffers.RNN,
                            ("rnn.forward_steps", "gemm.gemm")),
}


class CUDABackend:
    name = "cuda"

    def __init__(self, index=None, local_rank=0):
        self.cuda, index = _cuda(index, local_rank)
        from rnnkit.kernels.cuda import (elementwise, embed, gemm, gru, launch, loss, lstm,
                                         optim, recurrent, rnn, rng, sample)
        self.k = SimpleNamespace(elementwise=elementwise, embed=embed, gemm=gemm, gru=gru,
                                 loss=loss, lstm=lstm, optim=optim, recurrent=recurrent,
                                 rnn=rnn, rng=rng, sample=sample)
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
        self.rec = recurrent.Recurrence(sms, shared, self._resident)
        self._partial = self.zeros((launch.REDUCE_BLOCKS,), np.float64)
        self._sums = self.zeros((3,), np.float64)
        self._flag = self.zeros((1,), np.int64)
        self._kept_arrays = {}

    def describe(self):
        """What the first line of a run says about where it runs."""
        where = "cuda" if self.simulator else f"cuda:{self.index}"
        return (f"{where}, {self.gpu}; recurrence: one persistent kernel where W_h fits on "
                f"chip, else a launch per step")

    def available_bytes(self):
        """Free memory on this GPU (None under the simulator)."""
        if self.simulator:
            return None
        free, _ = self.cuda.current_context().get_memory_info()
        return int(free)

    def compiled(self, cell):
        """Whether this cell's kernels load from the cache (else the first step compiles)."""
        if self.simulator:
            return True
        from rnnkit.kernels.cpu.jit import in_cache
        return all(in_cache(name) for name in KERNELS[cell.name].cached)

    def buffers(self, cell, T, N, D, H):
        return KERNELS[cell.name].layout.buffers(T, N, D, H)

    def scratch(self, cell, T, N, D, H):
        return KERNELS[cell.name].layout.scratch(T, N, D, H)

    def prepare(self, model, N, T, optimizer):
        """Cold-cache compiling ahead of the first step is the CPU's concern (its compile
        workers); the GPU kernels compile at their first launch."""

    def end(self):
        """See prepare()."""

    def prepare_sampling(self, model):
        """See prepare()."""

    def begin(self):
        """Pacing is the CPU's concern (its thread governor); nothing to do here."""

    def observe(self, work, seconds):
        """See begin()."""

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
        return a.copy_to_host() if _on_device(a) else np.array(a)

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
        if _on_device(src):
            if src.dtype != dst.dtype:
                raise TypeError(f"copy: {src.dtype} into {dst.dtype} on the device")
        else:
            src = np.ascontiguousarray(src, dtype=dst.dtype)
        if dst.size:
            dst.copy_to_device(src)

    def fill(self, a, value):
        flat = a.reshape(a.size)
        self.k.elementwise.run(self.k.elementwise.fill, a.size, flat, a.dtype.type(value))

    def mul(self, a, b):
        """a *= b, in place."""
        self.k.elementwise.run(self.k.elementwise.mul, a.size, a.reshape(a.size),
                                  b.reshape(b.size))

    def all_finite(self, a):
        self._flag.copy_to_device(np.zeros(1, np.int64))
        self.k.elementwise.run(self.k.elementwise.nonfinite, a.size, a.reshape(a.size),
                                  self._flag)
        return not self._flag.copy_to_host()[0]

    def ids(self, x):
        """(N, T) host token ids -> (T, N) int64 ids on the device; the host copy rides along
        for the embedding's gradient (embed_backward sorts it)."""
        host = np.ascontiguousarray(np.asarray(x).T, dtype=np.int64)
        ids = self.cuda.to_device(host)
        ids.host = host
        return ids

    def _kept(self, name, shape, dtype):
        """A device array kept between calls (loss rows, sampled tokens)."""
        key = (name, tuple(shape), np.dtype(dtype))
        if key not in self._kept_arrays:
            self._kept_arrays[key] = self.zeros(shape, dtype)
        return self._kept_arrays[key]

    # -- layers ------------------------------------------------------------------------------
    def cell_forward(self, cell, x, p, buf, train=True):
        """Caches are written with or without train."""
        KERNELS[cell.name].forward(self, cell, x, p, buf)

    def cell_backward(self, cell, x, p, g, buf, dhs, dh, dc, dx, scratch):
        KERNELS[cell.name].backward(self, cell, x, p, g, buf, dhs, dh, dc, dx, scratch)

    def embed_forward(self, table, ids, out):
        self.k.embed.embed_forward(table, ids, out)

    def embed_backward(self, ids, dout, dtable):
        """dtable[ids] += dout, a segmented sum by id in a fixed order (no atomics)."""
        host = getattr(ids, "host", None)
        plan, S = self.k.embed.segments(host if host is not None else ids.copy_to_host())
        self.k.embed.embed_backward(self.cuda.to_device(plan), S, dout, dtable)

    def linear_forward(self, x, w, b, y):
        """y (M, V) = x (M, H) @ w.T + b, the bias added as each tile is stored."""
        g = self.k.gemm
        M, H = x.shape
        V = w.shape[0]
        g.product(g.View(y, 0, 0, V, 1), g.View(x, 0, 0, H, 0, 1), g.View(w, 0, 0, 0, 1, H),
                  1, M, V, H, bias=b, bias_ij=(0, 1))

    def linear_backward(self, x, w, dy, dx, dw, db):
        """dw += dy.T @ x; db += the sum of dy's rows; dx = dy @ w (overwritten)."""
        g = self.k.gemm
        M, H = x.shape
        V = w.shape[0]
        g.product(g.View(dw, 0, 0, H, 1), g.View(dy, 0, 0, 1, 0, V), g.View(x, 0, 0, 0, H, 1),
                  1, V, H, M, accumulate=True)
        g.row_sums(dy, db, V, 1, M, 0, 1, 0, V)
        g.product(g.View(dx, 0, 0, H, 1), g.View(dy, 0, 0, V, 0, 1), g.View(w, 0, 0, 0, H, 1),
                  1, M, H, V)

    def softmax_xent(self, logits, targets, scale=1.0, grad=False):
        """Summed cross-entropy in nats, a host float; overwrites logits (with grad: by
        scale * dloss/dlogits). The one transfer also brings the barrier's timeout flag."""
        M, V = logits.shape
        rows = self._kept("xent", (M,), np.float64)
        self.k.loss.softmax_xent(logits, targets, scale, grad, rows, self._sums,
                                    self.rec.bar)
        total, bad, timeout = self._sums.copy_to_host()
        self._barrier_check(timeout)
        if bad:
            raise ValueError(f"targets must lie in [0, {V})")
        return float(total)

    def softmax_xent_rows(self, logits, targets):
        """Per-row losses -log softmax(row)[target], a host float64 array (M,); the logits
        are left as scratch."""
        M, V = logits.shape
        rows = self._kept("xent", (M,), np.float64)
        self.k.loss.softmax_xent(logits, targets, 1.0, False, rows)
        out = rows.copy_to_host()
        self._barrier_check(self.rec.bar.copy_to_host()[1])
        if (out < 0).any():
            raise ValueError(f"targets must lie in [0, {V})")
        return out

    def _barrier_check(self, timed_out):
        if timed_out:
            self.rec.reset(mode="steps")
            raise BackendError("the persistent recurrence timed out waiting for its blocks "
                               "(another process on this GPU?); this step is void; run again "
                               "(this process now runs one launch per step)")

    def _resident(self, kernel, argtypes, threads, blocks, shared):
        """Whether `blocks` blocks of kernel can all be resident at once (the persistent
        kernel's grid barrier needs that), opting in to more than 48 KB of shared memory."""
        if self.simulator:
            return blocks == 1          # the simulator runs blocks one after another
        try:
            compiled = kernel.compile(argtypes)
            if shared > self.k.recurrent.SHARED:
                from numba.cuda.cudadrv.driver import binding, driver
                fn = compiled._codelibrary.get_cufunc()
                attrs = binding.CUfunction_attribute
                driver.cuKernelSetAttribute(attrs.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                            int(shared), fn.handle, fn.device.id)
            return compiled.max_cooperative_grid_blocks(threads, shared) >= blocks
        except Exception:               # noqa: BLE001  (no occupancy answer: per step)
            return False

    # -- randomness --------------------------------------------------------------------------
    def rng(self, seed):
        return Philox(_key(seed))

    def rng_state(self, rng):
        return {"bit_generator": PHILOX, "key": rng.key, "counter": rng.counter}

    def set_rng_state(self, rng, state):
        """Restore a state of this backend exactly; another backend's (the CPU's PCG64)
        seeds a fresh stream from it, the same for the same state."""
        if state.get("bit_generator") == PHILOX:
            rng.key, rng.counter = int(state["key"]) & KEY_MASK, int(state["counter"])
        else:
            rng.key, rng.counter = _key(derived_seed(state)), 0

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
        return out.copy_to_host()

    # -- optimizers and clipping (the equations: rnnkit/kernels/cpu/optim.py) ----------------
    def sgd_update(self, p, g, buf, lr, momentum, one_minus_damp, weight_decay, nesterov,
                   first):
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

    def sum_squares(self, g):
        """sum(g^2) accumulated in float64 in a fixed order, as a host float."""
        self.k.elementwise.sum_squares(g.reshape(g.size), self._partial, self._sums)
        return float(self._sums.copy_to_host()[0])

    def scale(self, g, factor):
        self.k.elementwise.run(self.k.elementwise.scale, g.size, g.reshape(g.size),
                                  g.dtype.type(factor))

    def clamp(self, g, low, high):
        self.k.elementwise.run(self.k.elementwise.clamp, g.size, g.reshape(g.size),
                                  g.dtype.type(low), g.dtype.type(high))
