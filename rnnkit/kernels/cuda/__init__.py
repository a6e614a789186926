"""The CUDA kernels (Numba @cuda.jit), imported by the CUDA backend only
(rnnkit/backends/cuda.py); docs/cuda.md describes the design.

One module per job: `lstm.py`, `gru.py`, `rnn.py` (each cell's forward and BPTT), `gemm.py`
(every large product), `loss.py` (softmax cross-entropy), `embed.py` (lookup and its
gradient), `rng.py` (Philox and dropout), `sample.py` (next-token draws), `streams.py` (beam
search's reorder of the state), `optim.py` (fused optimizer updates), `elementwise.py` (fill,
scale, clamp, norms, copies); and what they share:
`launch.py` (launch shapes, compile flags), `recurrent.py` (the recurrences' W_h on chip, grid
barrier and plan), `reduce.py` (fixed-order block reductions).
"""
