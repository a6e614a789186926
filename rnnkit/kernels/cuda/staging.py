"""The host's side of a GPU step, kept out of the GPU's way: uploads through pinned buffers
and one readback per step.

Uploads. A batch's ids (and, for a training step, the embedding gradient's plan) are written
into a pinned (page-locked) host buffer and copied by one asynchronous copy on the kernels'
stream: the host goes on launching while the copy runs, where a copy from ordinary memory
waits for the GPU. Buffers are preallocated and reused in a ring; before a slot is written
again, its last copy is waited for (an event), which has long finished in a training loop.

Readback. The loss kernel leaves (loss, bad targets, barrier timeout) in a small device array
and the gradient norm's kernel adds its sum of squares: one transfer brings all four. Until
then the loss is a `Deferred`, a float the device has computed but not sent, which resolves
at that transfer, or when first used as a number.
"""
import time

import numpy as np

RING = 4                               # upload slots (a step uploads two: ids and targets)


class Uploads:
    def __init__(self, cuda):
        self.cuda, self.stream = cuda, cuda.default_stream()
        self.slots = [None] * RING
        self.turn = 0

    def put(self, host):
        """A device copy of the 1-D int64 `host`, valid until RING more puts."""
        n = host.size
        i, self.turn = self.turn, (self.turn + 1) % RING
        slot = self.slots[i]
        if slot is None or slot[0].size < n:
            size = max(n, 1024)
            slot = (self.cuda.pinned_array(size, np.int64),
                    self.cuda.device_array(size, np.int64), self.cuda.event())
            self.slots[i] = slot
        else:
            slot[2].synchronize()       # its last copy has run
        pinned, dev, done = slot
        pinned[:n] = host
        if n:
            dev[:n].copy_to_device(pinned[:n], stream=self.stream)
        done.record(self.stream)
        return dev[:n]


class Readback:
    """The device's (loss, bad targets, barrier timeout, sum of squares), float64, and the one
    transfer that brings them to the host; `waited`: seconds the host spent in it."""

    def __init__(self, cuda):
        self.device = cuda.to_device(np.zeros(4, np.float64))
        self.host = cuda.pinned_array(4, np.float64)
        self.pending = None             # the Deferred loss not yet read
        self.reads, self.waited = 0, 0.0

    def fetch(self, dev, out=None):
        """dev's contents on the host: a transfer, counted and timed like the others."""
        started = time.perf_counter()
        out = dev.copy_to_host(out)
        self.waited += time.perf_counter() - started
        self.reads += 1
        return out

    def read(self):
        """One transfer (it waits for the GPU); resolves the pending loss."""
        values = self.fetch(self.device, self.host).copy()
        pending, self.pending = self.pending, None
        if pending is not None:
            pending.settle(values)
        return values


class Deferred:
    """A float the device has computed and not yet sent. `resolve()` returns it, reading the
    device if it has not come with an earlier transfer; as a number (float(), arithmetic,
    comparisons, formatting) it resolves itself. Division by a number stays deferred (the
    model's mean over tokens)."""

    __slots__ = ("_read", "_check", "_value", "_div")

    def __init__(self, read, check, div=1.0):
        self._read, self._check, self._value, self._div = read, check, None, div

    def settle(self, values):
        """The transfer came: check it (bad targets, a timed-out barrier raise) and keep it."""
        self._check(values)
        self._value = float(values[0])

    def resolve(self):
        if self._value is None:
            self._read()
        return self._value / self._div if self._div != 1.0 else self._value

    def __truediv__(self, other):
        return _Quotient(self, float(other))

    def __float__(self):
        return float(self.resolve())

    def __repr__(self):
        return repr(self.resolve())

    def __format__(self, spec):
        return format(self.resolve(), spec)

    def __hash__(self):
        return hash(self.resolve())

    def __bool__(self):
        return bool(self.resolve())

    def __round__(self, n=None):
        return round(self.resolve(), n)


class _Quotient(Deferred):
    __slots__ = ("_of",)

    def __init__(self, of, div):            # pylint: disable=super-init-not-called
        self._of, self._div = of, div

    def resolve(self):
        return self._of.resolve() / self._div


def _binary(name):
    op = getattr(float, name)
    return lambda self, other: op(self.resolve(), float(other) if isinstance(other, Deferred)
                                  else other)


for _name in ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
              "__rtruediv__", "__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__",
              "__pow__", "__rpow__"):
    setattr(Deferred, _name, _binary(_name))
for _name in ("__neg__", "__abs__", "__pos__", "__int__"):
    setattr(Deferred, _name, (lambda op: lambda self: op(self.resolve()))(getattr(float, _name)))
