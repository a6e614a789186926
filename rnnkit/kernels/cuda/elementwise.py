"""Whole-array kernels: fill, product, scale, clamp, the finite check and the float64 sum of
squares (the gradient norm).

Arrays are flat (1-D, contiguous); each kernel is a grid-stride loop, so any grid covers any
length. The sum of squares adds in a fixed order: REDUCE_BLOCKS block sums (a function of the
length only), then one block adds those.
"""
import math

from numba import cuda, float64

from rnnkit.kernels.cuda import launch as L
from rnnkit.kernels.cuda.launch import jit
from rnnkit.kernels.cuda.reduce import block_sum


@jit
def fill(a, value):
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[i] = value


@jit
def mul(a, b):
    """a *= b."""
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        a[i] = a[i] * b[i]


@jit
def scale(g, factor):
    for i in range(cuda.grid(1), g.shape[0], cuda.gridsize(1)):
        g[i] = g[i] * factor


@jit
def clamp(g, low, high):
    """Clamp in place; NaN stays NaN so the trainer still sees a bad gradient."""
    for i in range(cuda.grid(1), g.shape[0], cuda.gridsize(1)):
        x = g[i]
        if x < low:
            g[i] = low
        elif x > high:
            g[i] = high


@jit
def nonfinite(a, flag):
    """flag[0] = 1 if any entry is NaN or inf (every writer writes the same 1)."""
    for i in range(cuda.grid(1), a.shape[0], cuda.gridsize(1)):
        if math.isnan(a[i]) or math.isinf(a[i]):
            flag[0] = 1


@jit
def sumsq_blocks(g, partial):
    """partial[b] = this block's share of sum(g^2), in float64."""
    buf = cuda.shared.array(0, float64)
    acc = float64(0.0)
    for i in range(cuda.grid(1), g.shape[0], cuda.gridsize(1)):
        x = float64(g[i])
        acc += x * x
    total = block_sum(buf, acc)
    if cuda.threadIdx.x == 0:
        partial[cuda.blockIdx.x] = total


@jit
def sum_into(values, count, out, at):
    """out[at] = sum(values[:count]), one block, in a fixed order."""
    buf = cuda.shared.array(0, float64)
    acc = float64(0.0)
    for i in range(cuda.threadIdx.x, count, cuda.blockDim.x):
        acc += values[i]
    total = block_sum(buf, acc)
    if cuda.threadIdx.x == 0:
        out[at] = total


def run(kernel, n, *args):
    L.launch(kernel, L.blocks_for(n), L.THREADS, *args)


def sum_squares(g, partial, out):
    """sum(g^2) in float64 into out[0] (device); partial: float64 scratch of REDUCE_BLOCKS."""
    blocks = L.blocks_for(g.shape[0], cap=L.REDUCE_BLOCKS)
    L.launch(sumsq_blocks, blocks, L.THREADS, g, partial, shared=8 * L.THREADS)
    L.launch(sum_into, 1, L.THREADS, partial, blocks, out, 0, shared=8 * L.THREADS)


# (kernel, argument letters (launch.signature), the float dtypes it runs with)
SIGNATURES = [
    (fill, "af", L.FLOATS), (mul, "aa", L.FLOATS), (scale, "af", L.FLOATS),
    (clamp, "aff", L.FLOATS), (nonfinite, "aI", L.FLOATS), (sumsq_blocks, "ad", L.FLOATS),
    (sum_into, "didi", L.F64),
]
