"""Append token ids to chunked, gzip-compressed HDF5 datasets, compressing on worker threads.

HDF5 runs its deflate filter on the calling thread while holding the GIL, and deflate is the
slowest step of preprocessing (about 110 MB/s per core). So whole chunks are compressed with
`zlib.compress` on a thread pool (zlib releases the GIL) and stored with `write_direct_chunk`;
the file is the same as if HDF5 had compressed it, and any HDF5 reader decompresses it. Only a
final partial chunk goes through HDF5's own filter.
"""
import os
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

CHUNK = 1 << 18     # elements per HDF5 chunk: big enough to compress well, small to read
LEVEL = 1           # gzip level: level 4 saves ~5% more space at half the speed
IN_FLIGHT = 32      # compressed chunks waiting to be written, at most


class SplitWriter:
    """Write `length` ids into the dataset `name` of `h5file`, in order, through `append`."""

    def __init__(self, h5file, name, length, dtype, pool):
        self.chunk = max(1, min(CHUNK, length))
        self.dataset = h5file.create_dataset(
            name, shape=(length,), maxshape=(None,), dtype=dtype, chunks=(self.chunk,),
            compression="gzip", compression_opts=LEVEL)
        self.length = length
        self.pool = pool
        self.buffer = np.empty(self.chunk, dtype)
        self.filled = 0     # ids in self.buffer
        self.written = 0    # ids handed to a chunk before self.buffer
        self.pending = deque()

    def append(self, ids):
        if self.written + self.filled + len(ids) > self.length:
            raise ValueError(f"more ids than the {self.length} planned for {self.dataset.name}")
        while len(ids):
            take = min(len(ids), self.chunk - self.filled)
            self.buffer[self.filled:self.filled + take] = ids[:take]
            self.filled += take
            ids = ids[take:]
            if self.filled == self.chunk:
                self._submit()

    def _submit(self):
        data = self.buffer.tobytes()
        self.pending.append((self.written, self.pool.submit(zlib.compress, data, LEVEL)))
        self.written += self.chunk
        self.filled = 0
        while len(self.pending) > IN_FLIGHT or (self.pending and self.pending[0][1].done()):
            self._write_one()

    def _write_one(self):
        offset, future = self.pending.popleft()
        self.dataset.id.write_direct_chunk((offset,), future.result())

    def close(self):
        """Write what is left; the dataset must then hold exactly `length` ids."""
        while self.pending:
            self._write_one()
        if self.filled:
            self.dataset[self.written:self.written + self.filled] = self.buffer[:self.filled]
            self.written += self.filled
            self.filled = 0
        if self.written != self.length:
            raise ValueError(f"{self.dataset.name}: wrote {self.written} of {self.length} ids")


def compression_pool():
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cores = os.cpu_count() or 1
    return ThreadPoolExecutor(max_workers=max(2, cores), thread_name_prefix="rnnkit-deflate")
