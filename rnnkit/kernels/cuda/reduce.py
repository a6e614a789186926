"""Block-wide reductions in a fixed order: the same bits on every run (no atomics on floats).

Each is a tree over the block's threads (blockDim.x a power of two) through a shared buffer of
at least blockDim.x entries; every thread gets the result, and the buffer is free again on
return. Sums of floats go through float64 buffers.
"""
from numba import cuda

from rnnkit.kernels.cuda.launch import device


@device
def block_sum(buf, value):
    """The sum of `value` over the block's threads."""
    tid = cuda.threadIdx.x
    buf[tid] = value
    cuda.syncthreads()
    s = cuda.blockDim.x // 2
    while s > 0:
        if tid < s:
            buf[tid] += buf[tid + s]
        cuda.syncthreads()
        s //= 2
    total = buf[0]
    cuda.syncthreads()
    return total


@device
def block_max(buf, value):
    """The largest `value` over the block's threads (NaN loses to any number)."""
    tid = cuda.threadIdx.x
    buf[tid] = value
    cuda.syncthreads()
    s = cuda.blockDim.x // 2
    while s > 0:
        if tid < s and buf[tid + s] > buf[tid]:
            buf[tid] = buf[tid + s]
        cuda.syncthreads()
        s //= 2
    out = buf[0]
    cuda.syncthreads()
    return out


@device
def block_argmax(vals, idx, value, index):
    """(largest value, its index) over the block's threads; ties go to the lower index."""
    tid = cuda.threadIdx.x
    vals[tid] = value
    idx[tid] = index
    cuda.syncthreads()
    s = cuda.blockDim.x // 2
    while s > 0:
        if tid < s:
            v, i = vals[tid + s], idx[tid + s]
            if v > vals[tid] or (v == vals[tid] and i < idx[tid]):
                vals[tid] = v
                idx[tid] = i
        cuda.syncthreads()
        s //= 2
    out_v, out_i = vals[0], idx[0]
    cuda.syncthreads()
    return out_v, out_i


@device
def block_scan(buf, value):
    """Exclusive prefix sum of `value` over the block's threads, in thread order
    (Hillis-Steele: log2(blockDim.x) steps, the same additions every run)."""
    tid = cuda.threadIdx.x
    buf[tid] = value
    cuda.syncthreads()
    s = 1
    while s < cuda.blockDim.x:
        add = buf[tid - s] if tid >= s else buf[tid] * 0
        cuda.syncthreads()
        buf[tid] += add
        cuda.syncthreads()
        s *= 2
    out = buf[tid - 1] if tid > 0 else value - value
    cuda.syncthreads()
    return out


@device
def last_block(ticket):
    """Whether this block is the grid's last to get here (its writes before the call are then
    visible to it); the last one resets the ticket for the next launch."""
    mine = 0
    if cuda.threadIdx.x == 0:
        cuda.threadfence()
        if cuda.atomic.add(ticket, 0, 1) == cuda.gridDim.x - 1:
            mine = 1
            ticket[0] = 0
    return cuda.syncthreads_or(mine) != 0
