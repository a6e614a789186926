"""Softmax cross-entropy fused with its gradient, one row at a time.

logits (M, V) -> sum over rows of log-sum-exp(row) - row[target], with the max subtracted
first so exp never overflows. The logits are scratch: each row is overwritten by its
exponentials and, with a gradient, then by scale * (softmax(row) - onehot(target)). One pass
finds the max, one writes the exponentials, one sums them (kernels/lanes.py), one normalises;
the row stays in cache, and no (M, V) temporary exists.
"""
import math

from numba import njit, prange
import numpy as np

from rnnkit.kernels.cpu.jit import JIT, Twin
from rnnkit.kernels.cpu.activations import exp
from rnnkit.kernels.cpu.blocks import parts_for, span
from rnnkit.kernels.checks import check
from rnnkit.kernels.cpu.lanes import vmax, vsum


@njit(**JIT)
def _xent_rows(logits, targets, scale, want_grad, lo, hi):
    V = logits.shape[1]
    total = 0.0
    for m in range(lo, hi):
        row = logits[m]
        mx = vmax(row, 0, V)
        target = row[targets[m]]
        for v in range(V):
            row[v] = exp(row[v] - mx)
        s = vsum(row, 0, V)
        if want_grad:
            inv = scale / s
            for v in range(V):
                row[v] *= inv
            row[targets[m]] -= scale
        total += math.log(s) + mx - target
    return total


def _xent(logits, targets, scale, want_grad, parts):
    totals = np.zeros(parts)
    for i in prange(parts):
        lo, hi = span(logits.shape[0], parts, i)
        totals[i] = _xent_rows(logits, targets, scale, want_grad, lo, hi)
    return totals.sum()


_xent = Twin(_xent)


def softmax_xent(logits, targets, scale=1.0, grad=False):
    """Summed cross-entropy in nats. Overwrites logits: with grad=True by scale *
    dloss/dlogits, else by scratch."""
    M, V = logits.shape
    check(dict(logits=logits), logits.dtype)
    if targets.shape != (M,):
        raise ValueError(f"targets: shape {targets.shape}, expected {(M,)}")
    if M and (targets.min() < 0 or targets.max() >= V):
        raise ValueError(f"targets must lie in [0, {V})")
    parts = parts_for(M // 64)
    return _xent(parts, logits, np.ascontiguousarray(targets, dtype=np.int64), logits.dtype.type(scale),
               bool(grad), parts)
