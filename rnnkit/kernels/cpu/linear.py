"""Projections of all time steps at once, and the embedding lookup, as compiled kernels.

Each product runs in blocks, one per thread, through Numba's np.dot or, where it needs a
strided view or accumulation, kernels/cpu/blas.py (see rnnkit/backends/threads.py). The output
weight is (V, H), PyTorch Linear's layout, so tying it to the embedding (V, E) needs no transpose.
"""
from numba import njit, prange
import numpy as np

from rnnkit.kernels.cpu.compile import JIT, Twin
from rnnkit.kernels.cpu.blas import gemm
from rnnkit.kernels.cpu.blocks import add_bias, add_row, parts_for, span


def _forward(x, w, b, y, parts):
    for i in prange(parts):
        lo, hi = span(x.shape[0], parts, i)
        if hi > lo:
            o = y[lo:hi]
            np.dot(x[lo:hi], w.T, o)
            if b.shape[0]:
                add_bias(o, b)


def _backward(x, w, dy, dx, dw, db, parts):
    """Thread i: rows i of dw and db (a block of the vocabulary, no partial sums to add up),
    and rows i of dx."""
    M, V = dy.shape
    for i in prange(parts):
        v0, v1 = span(V, parts, i)
        gemm(dy[:, v0:v1], x, dw[v0:v1], True, False, 1.0)
        if db.shape[0]:
            d = db[v0:v1]
            for r in range(M):
                add_row(d, dy[r, v0:v1])
        lo, hi = span(M, parts, i)
        gemm(dy[lo:hi], w, dx[lo:hi], False, False, 0.0)


_forward = Twin(_forward)
_backward = Twin(_backward)


def linear_forward(x, w, b, y):
    """y (M, V) = x (M, H) @ w.T + b; b of length 0: no bias."""
    parts = parts_for(x.shape[0] // 64)
    _forward(parts, x, w, b, y, parts)


def linear_backward(x, w, dy, dx, dw, db):
    """dw += dy.T @ x; db += sum(dy) (db of length 0: no bias); dx = dy @ w (overwritten)."""
    parts = parts_for(x.shape[0] // 64)
    _backward(parts, x, w, dy, dx, dw, db, parts)


@njit(**JIT)
def embed_forward(table, ids, out):
    """out (T, N, E) = table[ids] for ids (T, N)."""
    T, N = ids.shape
    for t in range(T):
        for n in range(N):
            row, o = table[ids[t, n]], out[t, n]
            for k in range(o.shape[0]):
                o[k] = row[k]


@njit(**JIT)
def embed_backward(ids, dout, dtable):
    """dtable[ids] += dout, as a scatter-add (repeated ids accumulate)."""
    T, N = ids.shape
    for t in range(T):
        for n in range(N):
            add_row(dtable[ids[t, n]], dout[t, n])
