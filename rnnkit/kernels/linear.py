"""Projections of all time steps at once, and the embedding lookup, as compiled kernels.

Every matrix product in rnnkit goes through Numba's np.dot, so one BLAS (and one thread
pool) serves the whole process; see rnnkit/threads.py. The output weight is (V, H), PyTorch
Linear's layout, so tying it to the embedding (V, E) needs no transpose.
"""
from numba import njit
import numpy as np

from rnnkit.config import JIT


@njit(**JIT)
def linear_forward(x, w, b, y):
    """y (M, V) = x (M, H) @ w.T + b."""
    np.dot(x, w.T, y)
    y += b


@njit(**JIT)
def linear_backward(x, w, dy, dx, dw, db):
    """dw += dy.T @ x; db += sum(dy); dx = dy @ w (overwritten)."""
    dw += np.dot(dy.T, x)
    db += dy.sum(axis=0)
    np.dot(dy, w, dx)


@njit(**JIT)
def embed_forward(table, ids, out):
    """out (T, N, E) = table[ids] for ids (T, N)."""
    T, N = ids.shape
    for t in range(T):
        for n in range(N):
            out[t, n, :] = table[ids[t, n]]


@njit(**JIT)
def embed_backward(ids, dout, dtable):
    """dtable[ids] += dout, as a scatter-add (repeated ids accumulate)."""
    T, N = ids.shape
    for t in range(T):
        for n in range(N):
            dtable[ids[t, n]] += dout[t, n]
