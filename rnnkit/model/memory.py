"""The pre-flight memory estimate: what a model needs to train, before any of it is
allocated (rnnkit train refuses a run that would not fit: rnnkit/training/train.py)."""
import numpy as np

from rnnkit import cells
from rnnkit.model import softmax, tables


# a vocabulary entry's host memory: its str, list slot and index entry (a word-level run with
# 1M words took ~80 MB more than its arrays)
VOCAB_BYTES = 160


def memory_bytes(cfg, N, T, dtype, backend, optimizer_buffers=2):
    """Bytes a model of `cfg` needs to train on (N, T) batches on `backend`: parameters,
    gradients, `optimizer_buffers` optimizer arrays of the parameters' size, and the workspace
    of Model.workspace (what it allocates, from the same specs), before any is allocated; on a
    backend whose arrays are host memory, also a checkpoint's file built in memory and its
    image taken to be written (the parameters and optimizer arrays twice again:
    rnnkit/training/checkpoint.py); and the vocabulary's Python strings and index."""
    item = np.dtype(dtype).itemsize
    cell = cells.get(cfg.cell)
    P = sum(int(np.prod(s)) for s in cfg.shapes().values())
    H, E, L = cfg.hidden, cfg.embed, cfg.layers
    inputs = [E if i == 0 else H for i in range(L)]
    numbers = P * (2 + optimizer_buffers)
    numbers += sum(int(np.prod(s)) for D in inputs
                   for s in backend.buffers(cell, T, N, D, H).values())
    numbers += max(sum(int(np.prod(s)) for s in backend.scratch(cell, T, N, D, H).values())
                   for D in inputs)
    numbers += T * N * (2 * E + 2 * H) + softmax.workspace_numbers(cfg, T * N) + 2 * N * H
    numbers += tables.numbers(cfg, cell, backend, N, T)
    if cfg.dropout:
        numbers += 2 * T * N * (sum(inputs) + H)
    if backend.on_host:
        numbers += 2 * P * (1 + optimizer_buffers)
    return numbers * item + cfg.vocab_size * VOCAB_BYTES
