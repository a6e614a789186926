"""Optimizers on one flat parameter array, with PyTorch's defaults and update equations.

A model keeps all its parameters in one contiguous 1-D array and its gradients in another of
the same size, so an optimizer is one fused loop over P numbers (the backend's: on the CPU
rnnkit/kernels/cpu/optim.py) and its state is a few arrays of length P on the same backend.
The equations are those of torch.optim's SGD, Adam, AdamW, RMSprop and Adagrad (maximize=False,
no amsgrad), and each class's defaults are PyTorch's, so timings against torch.optim compare
like with like.

    opt = make_optimizer("adam", model.params, lr=2e-3, backend=model.backend)
    norm = clip_gradients(model.grads, max_norm=5.0, backend=model.backend)
    opt.step(model.grads)            # lr may be changed between steps: opt.lr = ...

`state_dict()` gives plain numbers and host numpy arrays (written to HDF5 by
rnnkit/training/checkpoint.py): {"name": str, "step": int, "hyper": {name: number}, "buffers":
{name: array}}.
"""
import math

import numpy as np

from rnnkit.backends import get_backend

# PyTorch 2.x defaults, per optimizer. Every accepted keyword is listed here.
DEFAULTS = {
    "sgd": dict(lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False),
    "adam": dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0),
    "adamw": dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-2),
    "rmsprop": dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0,
                    centered=False),
    "adagrad": dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0,
                    eps=1e-10),
}


class Optimizer:
    """Base: holds the parameters (updated in place), hyper-parameters, step count, buffers."""

    name = ""
    max_buffers = 0             # the most arrays of the parameters' size it keeps (_buffer)

    def __init__(self, params, backend=None, **hyper):
        if getattr(params, "ndim", 0) != 1 or params.dtype not in (np.float32, np.float64):
            raise ValueError("params must be a contiguous 1-D float32 or float64 array")
        self.backend = backend or get_backend()
        unknown = set(hyper) - set(DEFAULTS[self.name])
        if unknown:
            raise ValueError(f"{self.name}: unknown hyper-parameter(s) {sorted(unknown)}; "
                             f"known: {sorted(DEFAULTS[self.name])}")
        self.params = params
        self.hyper = {**DEFAULTS[self.name], **hyper}
        for key, value in self.hyper.items():
            if isinstance(DEFAULTS[self.name][key], bool):
                self.hyper[key] = bool(value)
            else:
                self.hyper[key] = float(value)
                if not math.isfinite(self.hyper[key]) or self.hyper[key] < 0:
                    raise ValueError(f"{self.name}: {key} must be a finite number >= 0, "
                                     f"got {value}")
        self.t = 0
        self.buffers = {}
        self._check()

    @property
    def lr(self):
        return self.hyper["lr"]

    @lr.setter
    def lr(self, value):
        self.hyper["lr"] = float(value)

    def _check(self):
        pass

    def _buffer(self, name, fill=0.0):
        self.buffers[name] = self.backend.zeros(self.params.shape, self.params.dtype)
        if fill:
            self.backend.fill(self.buffers[name], fill)
        return self.buffers[name]

    def _empty(self):
        """Stands in for a buffer a setting does not use."""
        if not hasattr(self, "_none"):
            self._none = self.backend.zeros((0,), self.params.dtype)
        return self._none

    def _s(self, x):
        """A scalar in the parameters' dtype, so float32 updates stay float32 (one too large
        for it is inf, and the step's divergence is caught as any other's)."""
        with np.errstate(over="ignore"):
            return self.params.dtype.type(x)

    def step(self, grads, ranges=None):
        """Update the parameters in place from `grads` (same shape and dtype). ranges: runs
        outside which grads is zero (Model.grad_ranges), or None."""
        if grads.shape != self.params.shape or grads.dtype != self.params.dtype:
            raise ValueError(f"grads must be contiguous {self.params.dtype} of shape "
                             f"{self.params.shape}, got {grads.dtype} {grads.shape}")
        self.t += 1
        self._update(grads, ranges)

    def state_dict(self, copy=True):
        """The state as host arrays; copy=False: views where the buffers are on the host
        (Backend.host_view), for a checkpoint written before the next step."""
        host = self.backend.to_host if copy else self.backend.host_view
        return {"name": self.name, "step": self.t, "hyper": dict(self.hyper),
                "buffers": {key: host(buf) for key, buf in self.buffers.items()}}

    def load_state_dict(self, state):
        """Restore from `state_dict()` output; buffers are copied into the existing arrays."""
        if state["name"] != self.name:
            raise ValueError(f"optimizer state is for {state['name']!r}, not {self.name!r}")
        if set(state["buffers"]) != set(self.buffers):
            raise ValueError(f"{self.name} state has buffers {sorted(state['buffers'])}, "
                             f"expected {sorted(self.buffers)} (different settings?)")
        for key, buf in state["buffers"].items():
            if buf.shape != self.buffers[key].shape:
                raise ValueError(f"{self.name} buffer {key!r} has shape {buf.shape}, "
                                 f"expected {self.buffers[key].shape}")
            self.backend.copy(self.buffers[key], np.asarray(buf, self.params.dtype))
        for key, value in state["hyper"].items():
            if key in self.hyper:
                self.hyper[key] = type(self.hyper[key])(value)
        self.t = int(state["step"])


class SGD(Optimizer):
    name = "sgd"
    max_buffers = 1

    def _check(self):
        h = self.hyper
        if h["nesterov"] and (h["momentum"] <= 0 or h["dampening"] != 0):
            raise ValueError("sgd: nesterov needs momentum > 0 and dampening 0")
        if h["momentum"] != 0:
            self._buffer("momentum_buffer")

    def _update(self, g, ranges):
        h = self.hyper
        buf = self.buffers.get("momentum_buffer", self._empty())
        # where g is zero, only p - lr * 0 leaves p as it is
        plain = h["momentum"] == 0 and h["weight_decay"] == 0
        self.backend.sgd_update(self.params, g, buf, self._s(h["lr"]), self._s(h["momentum"]),
                     self._s(1.0 - h["dampening"]), self._s(h["weight_decay"]),
                     h["nesterov"], self.t == 1, ranges if plain else None)


class Adam(Optimizer):
    name = "adam"
    max_buffers = 2
    decoupled = False

    def _check(self):
        for beta in ("beta1", "beta2"):
            if not self.hyper[beta] < 1:
                raise ValueError(f"{self.name}: {beta} must be in [0, 1)")
        self._buffer("exp_avg")
        self._buffer("exp_avg_sq")

    def _update(self, g, ranges):
        h = self.hyper
        b1, b2, t = h["beta1"], h["beta2"], self.t
        wd = h["weight_decay"]
        shrink = 1.0 - h["lr"] * wd if self.decoupled else 1.0
        self.backend.adam_update(self.params, g, self.buffers["exp_avg"], self.buffers["exp_avg_sq"],
                      self._s(h["lr"] / (1 - b1 ** t)), self._s(1 - b1), self._s(b2),
                      self._s(1 - b2), self._s(math.sqrt(1 - b2 ** t)), self._s(h["eps"]),
                      self._s(0.0 if self.decoupled else wd), self._s(shrink))


class AdamW(Adam):
    name = "adamw"
    decoupled = True


class RMSprop(Optimizer):
    name = "rmsprop"
    max_buffers = 3

    def _check(self):
        self._buffer("square_avg")
        if self.hyper["centered"]:
            self._buffer("grad_avg")
        if self.hyper["momentum"] > 0:
            self._buffer("momentum_buffer")

    def _update(self, g, ranges):
        h = self.hyper
        empty = self._empty()
        self.backend.rmsprop_update(self.params, g, self.buffers["square_avg"],
                         self.buffers.get("grad_avg", empty),
                         self.buffers.get("momentum_buffer", empty), self._s(h["lr"]),
                         self._s(h["alpha"]), self._s(1.0 - h["alpha"]), self._s(h["eps"]),
                         self._s(h["weight_decay"]), self._s(h["momentum"]), h["centered"])


class Adagrad(Optimizer):
    name = "adagrad"
    max_buffers = 1

    def _check(self):
        self._buffer("sum", self.hyper["initial_accumulator_value"])

    def _update(self, g, ranges):
        h = self.hyper
        clr = h["lr"] / (1 + (self.t - 1) * h["lr_decay"])
        self.backend.adagrad_update(self.params, g, self.buffers["sum"], self._s(clr), self._s(h["eps"]),
                         self._s(h["weight_decay"]))


OPTIMIZERS = {cls.name: cls for cls in (SGD, Adam, AdamW, RMSprop, Adagrad)}


def make_optimizer(name, params, backend=None, **hyper):
    """An optimizer by name ('sgd', 'adam', 'adamw', 'rmsprop', 'adagrad') on `params`, whose
    buffers and updates live on `backend` (default: the CPU)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name](params, backend, **hyper)


def clip_gradients(grads, max_norm=0.0, max_value=0.0, backend=None, ranges=None):
    """Clip a flat gradient in place and return its global L2 norm before any clipping.

    max_value > 0 clamps every element to [-max_value, max_value] (torch's clip_grad_value_);
    max_norm > 0 then scales the whole gradient by max_norm / (norm + 1e-6) when that is below
    one (torch's clip_grad_norm_). A NaN or inf norm is returned as is and nothing is scaled,
    so the caller sees the bad gradient. ranges: runs outside which grads is zero
    (Model.grad_ranges; the same results, faster), or None.
    """
    b = backend or get_backend()
    norm = math.sqrt(b.sum_squares(grads, ranges))
    if not math.isfinite(norm):
        return norm
    clipped = norm
    if max_value > 0:
        b.clamp(grads, grads.dtype.type(-max_value), grads.dtype.type(max_value), ranges)
        clipped = math.sqrt(b.sum_squares(grads, ranges))
    if max_norm > 0:
        coef = max_norm / (clipped + 1e-6)
        if coef < 1:
            b.scale(grads, grads.dtype.type(coef), ranges)
    return norm
