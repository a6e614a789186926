"""Append token ids to chunked, gzip-compressed HDF5 datasets, compressing on worker threads.

HDF5 runs its deflate filter on the calling thread while holding the GIL, and deflate is the
slowest step of preprocessing (bench/RESULTS.md, "Preprocess"). So whole chunks are compressed with
`zlib.compress` on a thread pool (zlib releases the GIL), given their Fletcher-32 checksum
(rnnkit/corpus/fletcher32.py), and stored with `write_direct_chunk`; the file is the same as if
HDF5's deflate and fletcher32 filters had run, and any HDF5 reader decompresses and checks it. Only
a final partial chunk goes through HDF5's own filters.
"""
import contextlib
import errno
import gc
import os
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from rnnkit.corpus.fletcher32 import with_checksum

CHUNK = 1 << 18     # elements per HDF5 chunk: big enough to compress well, small to read
RESERVE = 1 << 20   # bytes kept free for HDF5's own metadata at close
LEVEL = 1           # gzip level: higher levels save little space at a large cost in speed
IN_FLIGHT = 32      # compressed chunks waiting to be written, at most


class SplitWriter:
    """Write `length` ids into the dataset `name` of `h5file`, in order, through `append`."""

    def __init__(self, h5file, name, length, dtype, pool):
        self.chunk = max(1, min(CHUNK, length))
        self.dataset = h5file.create_dataset(
            name, shape=(length,), maxshape=(None,), dtype=dtype, chunks=(self.chunk,),
            compression="gzip", compression_opts=LEVEL, fletcher32=True)
        self.path = h5file.filename     # for statvfs (Dataset.file makes a File object)
        self.length = length
        self.pool = pool
        self.buffer = np.empty(self.chunk, dtype)
        self.filled = 0     # ids in self.buffer
        self.written = 0    # ids handed to a chunk before self.buffer
        self.pending = deque()
        self.stored_ids = 0     # ids in chunks written to the file, and their bytes there
        self.stored_bytes = 0
        self.sizes = None

    def append(self, ids):
        """Add `ids` after the ids given before. A whole chunk of `ids` that starts a chunk is
        compressed from `ids` itself, not from a copy: do not change `ids` afterwards."""
        if self.written + self.filled + len(ids) > self.length:
            raise ValueError(f"more ids than the {self.length} planned for {self.dataset.name}")
        direct = ids.dtype == self.buffer.dtype and ids.flags.c_contiguous
        while len(ids):
            if direct and self.filled == 0 and len(ids) >= self.chunk:
                self._submit(ids[:self.chunk])
                ids = ids[self.chunk:]
                continue
            take = min(len(ids), self.chunk - self.filled)
            self.buffer[self.filled:self.filled + take] = ids[:take]
            self.filled += take
            ids = ids[take:]
            if self.filled == self.chunk:
                self.filled = 0
                self._submit(self.buffer.tobytes())

    def _submit(self, data):
        self.pending.append((self.written, self.pool.submit(_compress, data)))
        self.written += self.chunk
        while len(self.pending) > IN_FLIGHT or (self.pending and self.pending[0][1].done()):
            self._write_one()

    def _write_one(self):
        offset, future = self.pending.popleft()
        chunk = future.result()
        self.sizes = (self.chunk, len(chunk))     # ids and bytes of the last chunk seen
        self._room(len(chunk))
        self.dataset.id.write_direct_chunk((offset,), chunk)
        self.stored_ids += self.chunk
        self.stored_bytes += len(chunk)

    def _room(self, size):
        """Stop with ENOSPC while HDF5 can still close the file: HDF5 that runs into a full
        disk itself leaves objects that crash the process when freed."""
        st = os.statvfs(self.path)
        free = st.f_bavail * st.f_frsize
        if free < size + RESERVE + self.stored_bytes // 100:
            raise OSError(errno.ENOSPC, "No space left on device")

    def close(self):
        """Write what is left; the dataset must then hold exactly `length` ids."""
        while self.pending:
            self._write_one()
        if self.filled:
            self._room(self.filled * self.buffer.itemsize)
            self.dataset[self.written:self.written + self.filled] = self.buffer[:self.filled]
            self.written += self.filled
            self.filled = 0
        if self.written != self.length:
            raise ValueError(f"{self.dataset.name}: wrote {self.written} of {self.length} ids")


def _compress(data):
    return with_checksum(zlib.compress(data, LEVEL))


def compression_pool():
    from rnnkit.cores import budget

    return thread_pool(max(2, budget()[0]), "rnnkit-deflate")


@contextlib.contextmanager
def thread_pool(workers, name):
    """A thread pool, with the cyclic garbage collector paused while it lives. h5py frees its
    objects under a global lock: a collection that runs on a worker thread and meets an h5py
    object waits for that lock, and deadlocks if the lock's holder waits for the worker
    (h5py issue 2019). No collection is forced before or after: a full one costs a short
    preprocess run more than it frees, and the collector, enabled again, runs on its own."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        with ThreadPoolExecutor(workers, thread_name_prefix=name) as pool:
            yield pool
    finally:
        if enabled:
            gc.enable()
