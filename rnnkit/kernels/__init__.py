"""Compiled kernels, one folder per backend: `cpu/` (Numba @njit) and `cuda/` (Numba
@cuda.jit), the same kernels by the same names behind the same wrapper signatures, checked by
`checks.py`. Only the matching backend (rnnkit/backends/) imports a folder.
"""
