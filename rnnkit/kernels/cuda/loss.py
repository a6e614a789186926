"""Softmax cross-entropy on the device, fused with its gradient: one block per row.

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


@jit
def xent_rows(logits, targets, M, V, scale, want_grad, losses, flags, out, ticket, totals):
    buf = cuda.shared.array(0, float64)
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    for m in range(cuda.blockIdx.x, M, cuda.gridDim.x):
        base = m * V
        tgt = targets[m]
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
        if tid == 0:
            losses[m] = math.log(s) + mx - tv if valid else -1.0
    if totals and last_block(ticket):
        finish(buf, losses, M, flags, out)


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


SIGNATURES = [(xent_rows, "aIiifbd IdIb", L.FLOATS)]
