"""Kernel pieces the model tests reach only in float64: the float32 fast paths and the loss."""
import numpy as np
from numba import njit

from rnnkit import kernels as K
from rnnkit.kernels.activations import exp, sigmoid, tanh
from tests import naive


@njit
def _apply(x, out, which):
    for i in range(x.size):
        if which == 0:
            out[i] = tanh(x[i])
        elif which == 1:
            out[i] = sigmoid(x[i])
        else:
            out[i] = exp(x[i])


def test_float32_activations_are_float32_accurate():
    x = np.linspace(-40, 40, 200_001).astype(np.float32)
    x64 = x.astype(np.float64)
    out = np.empty_like(x)
    _apply(x, out, 0)
    assert np.abs(out - np.tanh(x64)).max() < 4e-7  # a few float32 ulps at 1
    _apply(x, out, 1)
    assert np.abs(out - naive.sigmoid(x64)).max() < 4e-7
    _apply(x, out, 2)
    ref = np.exp(x64)
    assert (np.abs(out - ref) / ref).max() < 2e-7


def test_softmax_xent_matches_naive():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=8.0, size=(13, 1000))
    targets = rng.integers(0, 1000, 13)
    ref = naive.cross_entropy(logits, targets)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(13), targets] -= 1.0
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-6)):
        lg = logits.astype(dtype)
        assert abs(K.softmax_xent(lg.copy(), targets) - ref) / ref < tol
        total = K.softmax_xent(lg, targets, scale=0.5, grad=True)
        assert abs(total - ref) / ref < tol
        assert np.abs(lg - 0.5 * p).max() < tol


def test_softmax_xent_is_stable_for_huge_logits():
    logits = np.array([[1e4, 0.0, -1e4]], np.float32)
    assert K.softmax_xent(logits, np.array([1])) == np.float32(1e4)


def test_embedding_scatter_accumulates_repeats():
    table = np.arange(12.0).reshape(4, 3)
    ids = np.array([[1, 1], [3, 1]])
    out = np.empty((2, 2, 3))
    K.embed_forward(table, ids, out)
    np.testing.assert_array_equal(out, table[ids])
    dtable = np.zeros_like(table)
    K.embed_backward(ids, np.ones((2, 2, 3)), dtable)
    np.testing.assert_array_equal(dtable[:, 0], [0, 3, 0, 1])
