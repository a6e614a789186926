"""Softmax cross-entropy fused with its gradient, one row at a time.

logits (M, V) -> sum over rows of log-sum-exp(row) - row[target], with the max subtracted
first so exp never overflows. The logits are scratch: each row is overwritten by its
exponentials and, with a gradient, then by scale * (softmax(row) - onehot(target)). One pass
finds the max, one writes the exponentials, one sums them (kernels/cpu/lanes.py), one normalises;
the row stays in cache, and no (M, V) temporary exists.

softmax_xent_rows gives each row's loss instead of their sum (rnnkit score's per-token
surprisal); both call the same row worker, so a row's loss has the same bits in either.
"""
import math

from numba import njit, prange
import numpy as np

from rnnkit.kernels.cpu.compile import JIT, Twin
from rnnkit.kernels.cpu.activations import exp
from rnnkit.kernels.cpu.blocks import parts_for, span
from rnnkit.kernels.checks import check
from rnnkit.kernels.cpu.lanes import vmax, vsum


@njit(**JIT)
def _xent_row(row, target_id, scale, want_grad):
    """-log softmax(row)[target_id]; the row becomes its exponentials (with want_grad: scale *
    (softmax - onehot))."""
    V = row.shape[0]
    mx = vmax(row, 0, V)
    target = row[target_id]
    for v in range(V):
        row[v] = exp(row[v] - mx)
    s = vsum(row, 0, V)
    if want_grad:
        inv = scale / s
        for v in range(V):
            row[v] *= inv
        row[target_id] -= scale
    return math.log(s) + mx - target


@njit(**JIT)
def _xent_rows(logits, targets, scale, want_grad, lo, hi):
    total = 0.0
    for m in range(lo, hi):
        total += _xent_row(logits[m], targets[m], scale, want_grad)
    return total


@njit(**JIT)
def _xent_each_rows(logits, targets, one, out, lo, hi):
    for m in range(lo, hi):
        out[m] = _xent_row(logits[m], targets[m], one, False)


def _xent(logits, targets, scale, want_grad, totals, parts):
    """totals (parts,): scratch, from the caller (np.zeros and .sum() here would compile
    numpy's implementations, a second of a first run's compiling)."""
    for i in prange(parts):
        lo, hi = span(logits.shape[0], parts, i)
        totals[i] = _xent_rows(logits, targets, scale, want_grad, lo, hi)
    total = 0.0
    for i in range(parts):
        total += totals[i]
    return total


_xent = Twin(_xent)


def _xent_each(logits, targets, one, out, parts):
    for i in prange(parts):
        lo, hi = span(logits.shape[0], parts, i)
        _xent_each_rows(logits, targets, one, out, lo, hi)


_xent_each = Twin(_xent_each)


def _check_targets(logits, targets):
    M, V = logits.shape
    check(dict(logits=logits), logits.dtype)
    if targets.shape != (M,):
        raise ValueError(f"targets: shape {targets.shape}, expected {(M,)}")
    if M and (targets.min() < 0 or targets.max() >= V):
        raise ValueError(f"targets must lie in [0, {V})")


def softmax_xent(logits, targets, scale=1.0, grad=False):
    """Summed cross-entropy in nats. Overwrites logits: with grad=True by scale *
    dloss/dlogits, else by scratch."""
    _check_targets(logits, targets)
    parts = parts_for(logits.shape[0] // 64)
    return _xent(parts, logits, np.ascontiguousarray(targets, dtype=np.int64),
                 logits.dtype.type(scale), bool(grad), np.zeros(parts), parts)


def softmax_xent_rows(logits, targets):
    """Each row's cross-entropy -log softmax(row)[target] in nats, a float64 array (M,).
    Overwrites logits by scratch."""
    _check_targets(logits, targets)
    out = np.zeros(logits.shape[0], np.float64)
    parts = parts_for(logits.shape[0] // 64)
    _xent_each(parts, logits, np.ascontiguousarray(targets, dtype=np.int64),
               logits.dtype.type(1.0), out, parts)
    return out
