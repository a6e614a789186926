"""The first layer's input table (rnnkit/model/tables.py) in the cells' kernels: the gates
of each step read by id from tt (U, G*H), and the table's gradient gt (U, G*H) summed by id
from the gate gradients, in the order of the steps and then the streams. The LSTM's gates
are feature-major (kernels/cpu/lstm.py): a number at a time, from and into the table
transposed (G*H, U), whose row stays in L1 (faster than whole vectors through transposed
blocks: bench/RESULTS.md, "The first layer's input table"); the GRU's and RNN's are
time-major: whole rows.
"""
import numpy as np
from numba import njit, prange

from rnnkit.kernels.cpu.blocks import span
from rnnkit.kernels.checks import check
from rnnkit.kernels.cpu.compile import JIT, Twin


@njit(**JIT)
def gather(tt, tid, gates, r0, r1):
    """gates[t, r, n] = tt[r, tid[t, n]] for rows r0:r1 of every step, tt (G*H, U): a row of
    it stays in L1 while every step reads it."""
    T, N = gates.shape[0], gates.shape[2]
    for r in range(r0, r1):
        src = tt[r]
        for t in range(T):
            ids, row = tid[t], gates[t, r]
            for n in range(N):
                row[n] = src[ids[n]]


@njit(**JIT)
def scatter_rows(dgates, tid, gt, r0, r1):
    """gt[r, u] = the sum of dgates[t, r, n] over the (t, n) with tid[t, n] == u, in that
    order, for rows r0:r1, gt (G*H, U)."""
    T, N = dgates.shape[0], dgates.shape[2]
    for r in range(r0, r1):
        row = gt[r]
        for u in range(row.size):
            row[u] = 0.0
        for t in range(T):
            ids, d = tid[t], dgates[t, r]
            for n in range(N):
                row[ids[n]] += d[n]


def arrays(table, tid, width, T, N, D, dtype):
    """A table and its ids as the kernels take them: of 0 rows where there is none."""
    if table is None:
        return np.zeros((0, width), dtype), np.zeros((0, 0), np.int64)
    if D or table.shape[1] != width or tid.shape != (T, N) or tid.dtype != np.int64 or \
            not tid.flags.c_contiguous:
        raise ValueError(f"a table needs D = 0, (U, {width}) rows and ({T}, {N}) int64 ids")
    check({"table": table}, dtype)
    return table, tid


def _gather_time_major(tt, ids, gates, parts):
    """gates[m] = tt[ids[m]] for the T*N rows of time-major gates, by blocks of rows."""
    for i in prange(parts):
        lo, hi = span(gates.shape[0], parts, i)
        for m in range(lo, hi):
            src, dst = tt[ids[m]], gates[m]
            for j in range(dst.size):
                dst[j] = src[j]


def _scatter_time_major(dgx, ids, gt, parts):
    """gt[u] = the sum of dgx[m] over the rows m with ids[m] == u, by blocks of columns."""
    for i in prange(parts):
        c0, c1 = span(gt.shape[1], parts, i)
        for u in range(gt.shape[0]):
            row = gt[u]
            for j in range(c0, c1):
                row[j] = 0.0
        for m in range(dgx.shape[0]):
            src, dst = dgx[m], gt[ids[m]]
            for j in range(c0, c1):
                dst[j] += src[j]


_gather_time_major = Twin(_gather_time_major)
_scatter_time_major = Twin(_scatter_time_major)


def gather_time_major(tt, tid, gates, parts):
    """gates (T, N, G*H) = tt[tid] with tid (T, N): a GRU's or RNN's input projection."""
    T, N, G = gates.shape
    _gather_time_major(parts, tt, tid.reshape(T * N), gates.reshape(T * N, G), parts)


def scatter_time_major(dgx, tid, gt, parts):
    """gt (U, G*H) = dgx (T, N, G*H) summed by id (tid (T, N))."""
    T, N, G = dgx.shape
    _scatter_time_major(parts, dgx.reshape(T * N, G), tid.reshape(T * N), gt, parts)
