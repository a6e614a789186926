"""The CPU kernels (Numba @njit), imported by the CPU backend (rnnkit/backends/cpu.py) and its
thread policy (rnnkit/backends/threads.py, which sets their partition in blocks.py).

One module per job: `lstm.py`, `gru.py`, `rnn.py` (each cell's forward and BPTT),
`sampling_step.py` (one time step for a few streams: sampling), `linear.py` (output projection,
embedding), `loss.py` (softmax cross-entropy), `optim.py` (fused optimizer updates); and what
they share: `compile.py` (compile flags, the serial/parallel Twin), `blocks.py` (row blocks per
thread, the partition, the transpose), `tiles.py` (register-tiled products), `leaf.py` (kernels
compiled once and called by name), `blas.py` (gemm from @njit code), `lanes.py` (fma and fixed-
order reductions), `activations.py`, `buffers.py` (each cell's arrays: what the backend
allocates and the kernels check), `target.py` (the CPU the kernels compile for).
The on-disk cache both backends' kernels share: rnnkit/kernels/cache.py.
"""
