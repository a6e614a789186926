"""Input checks shared by the kernel wrappers of every backend (numpy and device arrays)."""
import numpy as np

FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


class Layout:
    """One cell's arrays on one backend: its parameters (the cell's, rnnkit/cells.py), and
    `buffers` and `scratch`, functions of (T, N, D, H) giving name -> shape
    (kernels/*/buffers.py)."""

    def __init__(self, cell, buffers, scratch):
        self.cell, self.buffers, self.scratch = cell, buffers, scratch

    def params(self, D, H):
        return self.cell.params(D, H)


def contiguous(a):
    flags = getattr(a, "flags", None)
    if flags is not None and hasattr(flags, "c_contiguous"):
        return flags.c_contiguous
    return a.is_c_contiguous()              # numba.cuda device arrays


def check(arrays, dtype):
    """Every array: the given float dtype and C-contiguous, so kernels never copy."""
    dtype = np.dtype(dtype)
    if dtype not in FLOATS:
        raise TypeError(f"kernels run in float32 or float64, not {dtype}")
    for name, a in arrays.items():
        if a.dtype != dtype:
            raise TypeError(f"{name}: dtype {a.dtype}, expected {dtype}")
        if not contiguous(a):
            raise ValueError(f"{name}: must be C-contiguous")


def shape(name, a, expected):
    if tuple(a.shape) != tuple(expected):
        raise ValueError(f"{name}: shape {tuple(a.shape)}, expected {tuple(expected)}")


def spec(expected, arrays):
    """Each array has the shape its cell's spec gives (rnnkit/cells.py); names not in the
    spec are not checked."""
    for name, a in arrays.items():
        if name in expected:
            shape(name, a, expected[name])
