"""The adaptive softmax's own kernels on the device (rnnkit/kernels/cpu/adaptive.py is the
twin; rnnkit/model/softmax.py says what the layer computes). Its cross-entropy is loss.py's, over a
ragged plan.

- gather / scatter_add: a cluster's rows of the top layer's output, and their gradient back
  (the rows are distinct: no two threads write one number, no atomics).
- log_probs: one block per row, the whole vocabulary's log-probabilities from the head's and
  every cluster's logits; each log-sum-exp a block max, then a float64 block sum in a fixed
  order.
"""
import math

from numba import cuda, float64

from rnnkit.kernels.cuda import launch as L
from rnnkit.kernels.cuda.launch import device, jit
from rnnkit.kernels.cuda.loss import row_threads
from rnnkit.kernels.cuda.reduce import block_max, block_sum


@jit
def gather(src, rows, out, R, H):
    """out[r, j] = src[rows[r], j]."""
    for i in range(cuda.grid(1), R * H, cuda.gridsize(1)):
        out[i] = src[rows[i // H] * H + i % H]


@jit
def scatter_add(src, rows, dst, R, H):
    """dst[rows[r], j] += src[r, j]."""
    for i in range(cuda.grid(1), R * H, cuda.gridsize(1)):
        at = rows[i // H] * H + i % H
        dst[at] = dst[at] + src[i]


@device
def log_sum_exp(buf, a, at, n):
    """log(sum(exp(a[at:at + n]))) over the block, the max taken out first."""
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    mx = -math.inf
    for v in range(tid, n, nt):
        mx = max(mx, float64(a[at + v]))
    mx = block_max(buf, mx)
    s = float64(0.0)
    for v in range(tid, n, nt):
        s += math.exp(float64(a[at + v]) - mx)
    return math.log(block_sum(buf, s)) + mx


@jit
def log_probs(flat, bounds, K, M, V, out):
    """out (M V) = log p(v) for every row and id; bounds (K + 1): c_0 .. c_{K-1}, V; flat:
    [head (M, c_0 + K) | cluster 0 (M, c_1 - c_0) | ...]."""
    buf = cuda.shared.array(0, float64)
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    c0 = bounds[0]
    W = c0 + K
    for m in range(cuda.blockIdx.x, M, cuda.gridDim.x):
        lse = log_sum_exp(buf, flat, m * W, W)
        for v in range(tid, c0, nt):
            out[m * V + v] = float64(flat[m * W + v]) - lse
        for i in range(K):
            a, b = bounds[i], bounds[i + 1]
            at = M * (W + a - c0) + m * (b - a)
            base = float64(flat[m * W + c0 + i]) - lse - log_sum_exp(buf, flat, at, b - a)
            for j in range(tid, b - a, nt):
                out[m * V + a + j] = float64(flat[at + j]) + base


def gather_rows(src, rows, out):
    R, H = out.shape
    L.launch(gather, L.blocks_for(R * H), L.THREADS, src.reshape(src.size), rows,
             out.reshape(out.size), R, H)


def scatter_add_rows(src, rows, dst):
    R, H = src.shape
    L.launch(scatter_add, L.blocks_for(R * H), L.THREADS, src.reshape(src.size), rows,
             dst.reshape(dst.size), R, H)


def adaptive_log_probs(flat, bounds, out):
    M, V = out.shape
    K = bounds.shape[0] - 1
    threads = row_threads(V)
    L.launch(log_probs, L.blocks_for(M, 1), threads, flat, bounds, K, M, V,
             out.reshape(out.size), shared=8 * threads)


SIGNATURES = [(gather, "aIaii", L.FLOATS), (scatter_add, "aIaii", L.FLOATS),
              (log_probs, "aIiiia", L.FLOATS)]
