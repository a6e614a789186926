"""The CPU kernels (Numba @njit), imported by the CPU backend only (rnnkit/backends/cpu.py).

One module per job: `lstm.py`, `gru.py`, `rnn.py` (each cell's forward and BPTT), `step.py`
(one time step for a few streams: sampling), `linear.py` (output projection, embedding),
`loss.py` (softmax cross-entropy), `optim.py` (fused optimizer updates), `dropout.py`; and
what they share: `jit.py` (compile flags, the serial/parallel Twin, the cache), `blocks.py`
(row blocks per thread), `tiles.py` (register-tiled products), `blas.py` (gemm from @njit
code), `lanes.py` (fma and fixed-order reductions), `activations.py`.
"""
