"""Input checks shared by the kernel wrappers (CPU now, CUDA later)."""
import numpy as np

FLOATS = (np.float32, np.float64)


def check(arrays, dtype):
    """Every array: the given float dtype and C-contiguous, so kernels never copy."""
    if np.dtype(dtype) not in [np.dtype(f) for f in FLOATS]:
        raise TypeError(f"kernels run in float32 or float64, not {np.dtype(dtype)}")
    for name, a in arrays.items():
        if a.dtype != dtype:
            raise TypeError(f"{name}: dtype {a.dtype}, expected {np.dtype(dtype)}")
        if not a.flags.c_contiguous:
            raise ValueError(f"{name}: must be C-contiguous")


def shape(name, a, expected):
    if a.shape != tuple(expected):
        raise ValueError(f"{name}: shape {a.shape}, expected {tuple(expected)}")
