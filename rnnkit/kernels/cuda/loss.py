"""Softmax cross-entropy on the device, fused with its gradient: one block per row (rows of
one width, or of a ragged plan's widths: the adaptive softmax's).

Each block finds its row's max, overwrites the row with exp(row - max) while summing it (in
float64, in a fixed order), then, with a gradient, scales the row to scale * (softmax -
onehot(target)); the row's loss log(sum) + max - row[target] goes to a float64 array of row
losses. The grid's last block to finish adds those in a fixed order, so the loss (one of the
numbers that cross to the host each step) has the same bits on every run. A target outside [0, V)
makes its row's loss -1, which no real loss can be (it is >= 0), and the host names it.
"""
import math

from numba import cuda, float64

from rnnkit.kernels.cuda import launch as L
from rnnkit.kernels.cuda.launch import device, jit
from rnnkit.kernels.cuda.reduce import block_max, block_sum, last_block


@device
def row_xent(buf, logits, base, V, tgt, scale, want_grad):
    """A block's row logits[base:base + V] and its target: the row becomes its exponentials
    (with want_grad: scale * (softmax - onehot(tgt))); returns its loss, the same in every
    thread (-1 for a target outside [0, V))."""
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    valid = tgt >= 0 and tgt < V
    tv = float64(logits[base + tgt]) if valid else float64(0.0)
    mx = -math.inf
    for v in range(tid, V, nt):
        mx = max(mx, float64(logits[base + v]))
    mx = block_max(buf, mx)
    mxd = logits.dtype.type(mx)
    s = float64(0.0)
    for v in range(tid, V, nt):
        e = math.exp(logits[base + v] - mxd)
        logits[base + v] = e
        s += e
    s = block_sum(buf, s)
    if want_grad:
        inv = scale / logits.dtype.type(s)
        for v in range(tid, V, nt):
            g = logits[base + v] * inv
            if v == tgt:
                g -= scale
            logits[base + v] = g
    return math.log(s) + mx - tv if valid else -1.0


@jit
def xent_rows(logits, targets, M, V, scale, want_grad, losses, flags, out, ticket, totals):
    buf = cuda.shared.array(0, float64)
    for m in range(cuda.blockIdx.x, M, cuda.gridDim.x):
        loss = row_xent(buf, logits, m * V, V, targets[m], scale, want_grad)
        if cuda.threadIdx.x == 0:
            losses[m] = loss
    if totals and last_block(ticket):
        finish(buf, losses, M, flags, out)


@jit
def ragged_rows(logits, plan, R, scale, want_grad, losses, flags, out, ticket, totals):
    """xent_rows over rows of different widths: row r is logits[at:at + width] with its
    target, (at, width, target) = plan[3 r:3 r + 3] (the adaptive softmax's head and tail
    rows in one launch)."""
    buf = cuda.shared.array(0, float64)
    for r in range(cuda.blockIdx.x, R, cuda.gridDim.x):
        loss = row_xent(buf, logits, plan[3 * r], plan[3 * r + 1], plan[3 * r + 2], scale,
                        want_grad)
        if cuda.threadIdx.x == 0:
            losses[r] = loss
    if totals and last_block(ticket):
        finish(buf, losses, R, flags, out)


@device
def finish(buf, losses, M, flags, out):
    """out[0] = the sum of the row losses, out[1] = how many rows had a bad target, out[2] =
    flags[1] (the recurrence barrier's timeout flag: one transfer brings them all), by one
    block in a fixed order."""
    total, bad = float64(0.0), float64(0.0)
    for m in range(cuda.threadIdx.x, M, cuda.blockDim.x):
        if losses[m] < 0:
            bad += 1.0
        else:
            total += losses[m]
    total = block_sum(buf, total)
    bad = block_sum(buf, bad)
    if cuda.threadIdx.x == 0:
        out[0] = total
        out[1] = bad
        out[2] = flags[1]


def row_threads(V):
    """Threads per row: enough for V, at most THREADS (a power of two)."""
    return min(L.THREADS, max(1, 1 << (int(V) - 1).bit_length()))


def softmax_xent(logits, targets, scale, grad, losses, flags, out, ticket, totals=True):
    """Row losses into losses (M,) float64; with totals, finish's three numbers into out[:3]
    (float64) by the grid's last block. ticket: an int64 zero the launch leaves zero."""
    M, V = logits.shape
    threads = row_threads(V)
    L.launch(xent_rows, L.blocks_for(M, 1), threads, logits.reshape(M * V), targets, M, V,
             logits.dtype.type(scale), bool(grad), losses, flags, out, ticket, bool(totals),
             shared=8 * threads)


def ragged_xent(flat, plan, R, scale, grad, losses, flags, out, ticket, totals=True):
    """softmax_xent over the R rows of a ragged plan (3 R,), THREADS to a row (the adaptive
    softmax's rows are thousands wide)."""
    L.launch(ragged_rows, L.blocks_for(R, 1), L.THREADS, flat, plan, R, flat.dtype.type(scale),
             bool(grad), losses, flags, out, ticket, bool(totals), shared=8 * L.THREADS)


SIGNATURES = [(xent_rows, "aIiifbd IdIb", L.FLOATS), (ragged_rows, "aIifbd IdIb", L.FLOATS)]
