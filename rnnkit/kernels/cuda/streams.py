"""Reordering the streams of a state: beam search keeps, after each step, the hypotheses it
chose, each continuing the stream of its parent.

    dst[l, n, h] = src[l, rows[n], h]      dst (L, N, H), src (L, S, H), both flat

A grid-stride loop over dst; src may have another number of streams S (the prime's one stream
spread over the beam).
"""
from numba import cuda

from rnnkit.kernels.cuda import launch as L
from rnnkit.kernels.cuda.launch import jit


@jit
def gather_rows(dst, src, rows, N, S, H):
    for i in range(cuda.grid(1), dst.shape[0], cuda.gridsize(1)):
        h = i % H
        n = (i // H) % N
        layer = i // (H * N)
        dst[i] = src[(layer * S + rows[n]) * H + h]


def gather(dst, src, rows, layers, N, S, H):
    """dst (flat L*N*H) from src (flat L*S*H) by rows (N,), int64 on the device."""
    L.launch(gather_rows, L.blocks_for(dst.shape[0]), L.THREADS, dst, src, rows, N, S, H)


# (kernel, argument letters (launch.signature), the float dtypes it runs with)
SIGNATURES = [(gather_rows, "aaIiii", L.FLOATS)]
