"""Whole-array kernels: fill, product, scale, clamp, the finite check and the float64 sum of
squares (the gradient norm).

Arrays are flat (1-D, contiguous); each kernel is a grid-stride loop, so any grid covers any
length. The sum of squares adds in a fixed order: REDUCE_BLOCKS block sums (a function of the
length only), then the grid's last block adds those.
"""
import math

from numba import cuda, float64

from rnnkit.kernels.cuda import launch as L
from rnnkit.kernels.cuda.launch import jit
from rnnkit.kernels.cuda.reduce import block_sum, last_block


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
def sumsq(g, partial, flags, out, ticket):
    """out[3] = sum(g^2) in float64: each block's share into partial[block], then the grid's
    last block adds those in a fixed order (a function of the length only) and copies the
    recurrence barrier's timeout flag into out[2] (the step's one readback brings both)."""
    buf = cuda.shared.array(0, float64)
    acc = float64(0.0)
    for i in range(cuda.grid(1), g.shape[0], cuda.gridsize(1)):
        x = float64(g[i])
        acc += x * x
    total = block_sum(buf, acc)
    if cuda.threadIdx.x == 0:
        partial[cuda.blockIdx.x] = total
    if last_block(ticket):
        acc = float64(0.0)
        for i in range(cuda.threadIdx.x, cuda.gridDim.x, cuda.blockDim.x):
            acc += partial[i]
        total = block_sum(buf, acc)
        if cuda.threadIdx.x == 0:
            out[3] = total
            out[2] = float64(flags[1])


def run(kernel, n, *args):
    L.launch(kernel, L.blocks_for(n), L.THREADS, *args)


def sum_squares(g, partial, flags, out, ticket):
    """sum(g^2) in float64 into out[3] (device); partial: float64 scratch of REDUCE_BLOCKS."""
    blocks = L.blocks_for(g.shape[0], cap=L.REDUCE_BLOCKS)
    L.launch(sumsq, blocks, L.THREADS, g, partial, flags, out, ticket, shared=8 * L.THREADS)


# (kernel, argument letters (launch.signature), the float dtypes it runs with)
SIGNATURES = [
    (fill, "af", L.FLOATS), (mul, "aa", L.FLOATS), (scale, "af", L.FLOATS),
    (clamp, "aff", L.FLOATS), (nonfinite, "aI", L.FLOATS), (sumsq, "adIdI", L.FLOATS),
]
