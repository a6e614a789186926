"""HDF5's Fletcher-32 checksum, for chunks that rnnkit compresses itself (rnnkit/corpus/chunks.py).

HDF5's fletcher32 filter appends this checksum, little-endian, to each chunk after the other
filters (here: deflate); every HDF5 reader checks it when it reads the chunk. Chunks written
with `write_direct_chunk` skip the filter pipeline, so the writer computes it.

H5_checksum_fletcher32 reads 16-bit big-endian words w_1..w_n (an odd last byte as the high
half of a word) and keeps s1 = the sum of the words and s2 = the sum of the running s1,
folding both (x & 0xffff) + (x >> 16) every 360 words and twice at the end. A fold keeps a
number's value modulo 65535 and never turns a positive number into 0, and the last folds
leave at most 65535; so each half is its exact sum's residue modulo 65535, taken in 1..65535
unless the sum is 0 (all words zero). The sums are taken exactly: s1 = sum(w) and
s2 = sum(cumsum(w)), in 64-bit integers per segment (small enough not to overflow) and added
up as Python ints. numpy, not Numba: the corpus writer must not load a compiler (about 160 MB
of memory; bench/RESULTS.md, "Preprocess").
"""
import numpy as np

MOD = 65535
SEGMENT = 1 << 18   # words summed at once: 2 MB of int64 running sums, far from overflow


def _half(total):
    return 0 if total == 0 else (total - 1) % MOD + 1


def fletcher32(data):
    """The checksum of a bytes-like object, as an int."""
    b = np.frombuffer(data, np.uint8)
    words = b[:b.size - b.size % 2].view(">u2")
    s1 = s2 = 0
    for at in range(0, words.size, SEGMENT):
        w = words[at:at + SEGMENT].astype(np.int64)     # native order: cumsum's fast path
        np.cumsum(w, out=w)
        s2 += s1 * w.size + int(w.sum())
        s1 += int(w[-1])
    if b.size % 2:          # the odd last byte is the high half of a last word
        s1 += int(b[-1]) << 8
        s2 += s1
    return (_half(s2) << 16) | _half(s1)


def with_checksum(chunk):
    """`chunk` (bytes, as the filters before fletcher32 left it) with its checksum appended."""
    return chunk + fletcher32(chunk).to_bytes(4, "little")
