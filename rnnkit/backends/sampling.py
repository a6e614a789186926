"""Turning logits into the next token: temperature, top-k, top-p, greedy; numpy, on the host.

The CPU backend samples with these functions, and they are the reference the other backends'
sampling kernels are tested against (tests/test_backend.py).
"""
import numpy as np


def probabilities(logits, temperature=1.0, top_k=0, top_p=1.0):
    """(N, V) logits -> (N, V) float64 probabilities after temperature, top-k and top-p.

    top-k keeps the k largest logits (ties at the k-th are all kept); top-p keeps the smallest
    set of most likely tokens whose probabilities sum to at least p (the nucleus).
    """
    z = np.asarray(logits, np.float64) / temperature
    V = z.shape[1]
    if 0 < top_k < V:
        kth = np.partition(z, V - top_k, axis=1)[:, V - top_k:V - top_k + 1]
        z = np.where(z < kth, -np.inf, z)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    if top_p < 1:
        order = np.argsort(-p, axis=1, kind="stable")
        ranked = np.take_along_axis(p, order, axis=1)
        before = np.cumsum(ranked, axis=1) - ranked      # mass of the more likely tokens
        drop = np.zeros_like(p, dtype=bool)
        np.put_along_axis(drop, order, before >= top_p, axis=1)
        p = np.where(drop, 0.0, p)
        p /= p.sum(axis=1, keepdims=True)
    return p


def sample(logits, rng, temperature=1.0, top_k=0, top_p=1.0, greedy=False):
    """Next token of each of the N rows of `logits`: argmax when greedy, else a draw."""
    if greedy:
        return np.argmax(logits, axis=1)
    p = probabilities(logits, temperature, top_k, top_p)
    u = rng.random((p.shape[0], 1))
    cdf = np.cumsum(p, axis=1)
    # the first token whose running sum reaches u times the total, past those of no mass (u
    # may be 0: a token that top-k or top-p dropped was drawn)
    below = (cdf < u * cdf[:, -1:]) | (cdf <= 0)
    return np.minimum(below.sum(axis=1), p.shape[1] - 1)
