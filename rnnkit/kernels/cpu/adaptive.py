"""The adaptive softmax's own kernels (rnnkit/model/softmax.py says what the layer computes).

- gather_rows / scatter_add_rows: a cluster's rows of the top layer's output out of the batch,
  and their gradient back into it (the rows are distinct: nothing to add up).
- ragged_xent: softmax cross-entropy over rows of different widths in one flat array, each
  row given by (offset, width, target) in `plan`: the head's rows and every cluster's in one
  call, through loss.py's row worker (so a row's loss has the bits a full softmax's would).
  Threads take blocks of rows of about equal numbers, not of equal row counts: a tail row can
  be 50 times as wide as a head row.
- log_probs: the whole vocabulary's log-probabilities of each row from the head's and every
  cluster's logits, log-sum-exps summed in float64.
"""
import math

from numba import njit, prange
import numpy as np

from rnnkit.kernels.checks import check
from rnnkit.kernels.cpu.activations import exp
from rnnkit.kernels.cpu.blocks import add_row, parts_for, span
from rnnkit.kernels.cpu.compile import JIT, Twin
from rnnkit.kernels.cpu.lanes import vmax
from rnnkit.kernels.cpu.loss import _xent_row

ROW_WORK = 1 << 16          # numbers of logits per thread before a second one pays


@njit(**JIT)
def _gather(src, rows, out):
    for r in range(rows.shape[0]):
        s, o = src[rows[r]], out[r]
        for k in range(o.shape[0]):
            o[k] = s[k]


@njit(**JIT)
def _scatter_add(src, rows, dst):
    for r in range(rows.shape[0]):
        add_row(dst[rows[r]], src[r])


def gather_rows(src, rows, out):
    """out (R, H) = src[rows] for src (M, H) and distinct rows (R,)."""
    check(dict(src=src, out=out), src.dtype)
    _gather(src, rows, out)


def scatter_add_rows(src, rows, dst):
    """dst[rows[r]] += src[r] for src (R, H), distinct rows (R,) and dst (M, H)."""
    check(dict(src=src, dst=dst), src.dtype)
    _scatter_add(src, rows, dst)


@njit(**JIT)
def _ragged_rows(flat, plan, scale, want_grad, out, lo, hi):
    total = 0.0
    for r in range(lo, hi):
        at, width = plan[3 * r], plan[3 * r + 1]
        loss = _xent_row(flat[at:at + width], plan[3 * r + 2], scale, want_grad)
        if out.shape[0]:
            out[r] = loss
        total += loss
    return total


def _ragged(flat, plan, scale, want_grad, out, cuts, totals, parts):
    for i in prange(parts):
        totals[i] = _ragged_rows(flat, plan, scale, want_grad, out, cuts[i], cuts[i + 1])
    total = 0.0
    for i in range(parts):
        total += totals[i]
    return total


_ragged = Twin(_ragged)


def _cuts(plan, R):
    """Row bounds of the threads' blocks: about equal numbers of logits each."""
    widths = np.asarray(plan).reshape(-1, 3)[:R, 1]
    ends = np.cumsum(widths)
    total = int(ends[-1]) if R else 0
    parts = parts_for(total // ROW_WORK)
    cuts = np.searchsorted(ends, [total * i // parts for i in range(1, parts)], side="right")
    return np.concatenate([[0], cuts, [R]]).astype(np.int64), parts


def _check_plan(flat, plan, R):
    check(dict(flat=flat), flat.dtype)
    if plan.shape != (3 * R,):
        raise ValueError(f"plan: shape {plan.shape}, expected {(3 * R,)}")
    if R:
        p = plan.reshape(R, 3)
        if p[:, 0].min() < 0 or (p[:, 0] + p[:, 1]).max() > flat.shape[0] or \
                p[:, 1].min() < 1 or p[:, 2].min() < 0 or (p[:, 2] >= p[:, 1]).any():
            raise ValueError("plan: a row outside the logits, or a target outside its row")


def ragged_xent(flat, plan, R, scale=1.0, grad=False):
    """Summed cross-entropy in nats of the R rows plan (3 R,) gives: row r is
    flat[at:at + width] with its target, (at, width, target) = plan[3 r:3 r + 3]. Overwrites
    those rows: with grad by scale * dloss/dlogits, else by scratch."""
    _check_plan(flat, plan, R)
    cuts, parts = _cuts(plan, R)
    return _ragged(parts, flat, plan, flat.dtype.type(scale), bool(grad),
                   np.zeros(0, np.float64), cuts, np.zeros(parts), parts)


def ragged_xent_rows(flat, plan, R):
    """Each row's cross-entropy in nats, a float64 array (R,); the rows become scratch."""
    _check_plan(flat, plan, R)
    cuts, parts = _cuts(plan, R)
    out = np.zeros(R, np.float64)
    _ragged(parts, flat, plan, flat.dtype.type(1.0), False, out, cuts, np.zeros(parts), parts)
    return out


@njit(**JIT)
def _log_sum_exp(row):
    """log(sum(exp(row))), the max taken out first, the sum in float64."""
    mx = vmax(row, 0, row.shape[0])
    s = 0.0
    for v in range(row.shape[0]):
        s += exp(row[v] - mx)
    return math.log(s) + mx


@njit(**JIT)
def _log_probs_rows(flat, bounds, out, lo, hi):
    M, V = out.shape
    k = bounds.shape[0] - 1
    c0 = bounds[0]
    W = c0 + k
    for m in range(lo, hi):
        head = flat[m * W:(m + 1) * W]
        lse = _log_sum_exp(head)
        o = out[m]
        for v in range(c0):
            o[v] = head[v] - lse
        for i in range(k):
            a, b = bounds[i], bounds[i + 1]
            at = M * (W + a - c0) + m * (b - a)
            tail = flat[at:at + b - a]
            base = head[c0 + i] - lse - _log_sum_exp(tail)
            for j in range(b - a):
                o[a + j] = tail[j] + base


def _log_probs(flat, bounds, out, parts):
    for i in prange(parts):
        lo, hi = span(out.shape[0], parts, i)
        _log_probs_rows(flat, bounds, out, lo, hi)


_log_probs = Twin(_log_probs)


def log_probs(flat, bounds, out):
    """out (M, V): every id's log-probability under the adaptive softmax of cutoffs and V
    `bounds` (c_0 .. c_{k-1}, V), from flat = [head logits (M, c_0 + k) | cluster 0's
    (M, c_1 - c_0) | ... | cluster k-1's]."""
    M, V = out.shape
    check(dict(flat=flat, out=out), out.dtype)
    k = len(bounds) - 1
    if flat.shape[0] < M * (bounds[0] + k + V - bounds[0]) or bounds[-1] != V:
        raise ValueError("log_probs: flat or bounds do not fit out")
    parts = parts_for(M * V // ROW_WORK)
    _log_probs(parts, flat, np.ascontiguousarray(bounds, np.int64), out, parts)
