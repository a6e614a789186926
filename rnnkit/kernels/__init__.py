"""Compiled kernels, one folder per backend: `cpu/` (Numba @njit) and `cuda/` (Numba
@cuda.jit), each cell's kernels by the same names in both, their arguments checked by
`checks.py` against each folder's `buffers.py`. The wrappers' signatures differ where a
backend needs other arrays (the CPU's packed weights and scratch; the GPU's launcher, and z in
its LSTM backward); each backend's `KERNELS` (rnnkit/backends/) says how it calls them. Only the
backend layer (rnnkit/backends/) imports a folder; the kernels import nothing above them
(tests/test_architecture.py). `cache.py`: the on-disk cache both folders share.
"""
