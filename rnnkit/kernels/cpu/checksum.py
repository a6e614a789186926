"""HDF5's Fletcher-32 checksum, for chunks that rnnkit compresses itself (rnnkit/writer.py).

HDF5's fletcher32 filter appends this checksum, little-endian, to each chunk after the other
filters (here: deflate); every HDF5 reader checks it when it reads the chunk. Chunks written
with `write_direct_chunk` skip the filter pipeline, so the writer computes it: the algorithm of
H5_checksum_fletcher32 (16-bit big-endian words, sums folded every 360 words, 32-bit
arithmetic), checked against files that HDF5 itself wrote (tests/test_corpus.py).
"""
import numpy as np
from numba import njit

from rnnkit.kernels.cpu.jit import JIT

MASK = np.uint64(0xFFFFFFFF)


@njit(**JIT)
def _fold(s):
    return (s & np.uint64(0xFFFF)) + (s >> np.uint64(16))


@njit(**JIT)
def fletcher32(data):
    """The checksum of a uint8 array, as an int."""
    n = data.size // 2
    s1 = np.uint64(0)
    s2 = np.uint64(0)
    i = 0
    while i < n:
        end = min(n, i + 360)
        for k in range(i, end):
            s1 += (np.uint64(data[2 * k]) << np.uint64(8)) | np.uint64(data[2 * k + 1])
            s2 += s1
        s1 = _fold(s1 & MASK)
        s2 = _fold(s2 & MASK)
        i = end
    if data.size % 2:
        s1 += np.uint64(data[data.size - 1]) << np.uint64(8)
        s2 += s1
        s1 = _fold(s1 & MASK)
        s2 = _fold(s2 & MASK)
    s1 = _fold(s1)
    s2 = _fold(s2)
    return (s2 << np.uint64(16)) | s1


def with_checksum(chunk):
    """`chunk` (bytes, as the filters before fletcher32 left it) with its checksum appended."""
    value = int(fletcher32(np.frombuffer(chunk, np.uint8)))
    return chunk + value.to_bytes(4, "little")
