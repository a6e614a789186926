"""Embedding lookup and its gradient on the device.

The gradient is a scatter-add (repeated ids accumulate) done without atomics: the host, which
has the ids before they are copied, sorts their positions by id (a stable sort), so each
distinct id's rows form one segment; one thread per (segment, column) adds the segment's rows
in position order onto the table's entry, the order rnnkit/kernels/cpu/linear.py adds them.
"""
import numpy as np
from numba import cuda

from rnnkit.kernels.cuda import launch as L
from rnnkit.kernels.cuda.launch import jit


@jit
def gather(table, ids, out, Q, E):
    """out[q, e] = table[ids[q], e] for the Q = T N positions."""
    for i in range(cuda.grid(1), Q * E, cuda.gridsize(1)):
        q, e = i // E, i % E
        out[i] = table[ids[q] * E + e]


@jit
def scatter(dout, plan, Q, S, E, dtable):
    """plan = [positions sorted by id (Q) | segment starts (S + 1) | segment ids (S)]."""
    for s in range(cuda.blockIdx.x, S, cuda.gridDim.x):
        lo, hi, row = plan[Q + s], plan[Q + s + 1], plan[Q + S + 1 + s]
        for e in range(cuda.threadIdx.x, E, cuda.blockDim.x):
            acc = dtable[row * E + e]
            for p in range(lo, hi):
                acc += dout[plan[p] * E + e]
            dtable[row * E + e] = acc


def segments(ids):
    """The scatter's plan for host ids (any shape), as one int64 array, and its S."""
    flat = np.asarray(ids, np.int64).reshape(-1)
    order = np.argsort(flat, kind="stable")
    ranked = flat[order]
    starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]]) if flat.size else \
        np.zeros(0, np.int64)
    S = len(starts)
    plan = np.concatenate([order, starts, [flat.size], ranked[starts]]).astype(np.int64)
    return plan, S


def embed_forward(table, ids, out):
    Q, E = ids.size, table.shape[1]
    L.launch(gather, L.blocks_for(Q * E), L.THREADS, table.reshape(table.size),
             ids.reshape(Q), out.reshape(out.size), Q, E)


def embed_backward(plan, S, dout, dtable):
    """dtable += the scatter of dout (Q, E) by the plan of segments()."""
    E = dtable.shape[1]
    Q = dout.size // E
    L.launch(scatter, L.blocks_for(S, 1), min(L.THREADS, max(1, 1 << (E - 1).bit_length())),
             dout.reshape(dout.size), plan, Q, S, E, dtable.reshape(dtable.size))


SIGNATURES = [(gather, "aIaii", L.FLOATS), (scatter, "aIiiia", L.FLOATS)]
