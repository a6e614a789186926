"""Softmax cross-entropy fused with its gradient, one row at a time.

logits (M, V) -> sum over rows of log-sum-exp(row) - row[target], with the max subtracted
first so exp never overflows. With a gradient, the row is overwritten in place by
scale * (softmax(row) - onehot(target)): one pass finds the max, one writes the exponentials
and sums them, one normalises; the row stays in cache, and no (M, V) temporary exists.
"""
import math

from numba import njit, prange
import numpy as np

from rnnkit.config import JIT, serial_and_parallel
from rnnkit.kernels.activations import exp
from rnnkit.kernels.blocks import parts_for, span
from rnnkit.kernels.checks import check


@njit(**JIT)
def _xent_rows(logits, targets, scale, want_grad, lo, hi):
    V = logits.shape[1]
    total = 0.0
    for m in range(lo, hi):
        row = logits[m]
        mx = row[0]
        for v in range(1, V):
            mx = max(mx, row[v])
        target = row[targets[m]]
        s = row.dtype.type(0.0)
        if want_grad:
            for v in range(V):
                e = exp(row[v] - mx)
                row[v] = e
                s += e
            inv = scale / s
            for v in range(V):
                row[v] *= inv
            row[targets[m]] -= scale
        else:
            for v in range(V):
                s += exp(row[v] - mx)
        total += math.log(s) + mx - target
    return total


def _xent(logits, targets, scale, want_grad, parts):
    totals = np.zeros(parts)
    for i in prange(parts):
        lo, hi = span(logits.shape[0], parts, i)
        totals[i] = _xent_rows(logits, targets, scale, want_grad, lo, hi)
    return totals.sum()


_xent_serial, _xent_parallel = serial_and_parallel(_xent)


def softmax_xent(logits, targets, scale=1.0, grad=False):
    """Summed cross-entropy in nats. grad=True overwrites logits with scale * dloss/dlogits."""
    M, V = logits.shape
    check(dict(logits=logits), logits.dtype)
    if targets.shape != (M,):
        raise ValueError(f"targets: shape {targets.shape}, expected {(M,)}")
    if M and (targets.min() < 0 or targets.max() >= V):
        raise ValueError(f"targets must lie in [0, {V})")
    parts = parts_for(M // 64)
    run = _xent_parallel if parts > 1 else _xent_serial
    return run(logits, np.ascontiguousarray(targets, dtype=np.int64), logits.dtype.type(scale),
               bool(grad), parts)
