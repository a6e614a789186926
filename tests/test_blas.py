"""kernels/cpu/blas.py: gemm on strided views, every transpose, beta 0 and 1, against numpy."""
from numba import njit
import numpy as np
import pytest

from rnnkit.kernels.cpu.blas import gemm


@njit
def _gemm(a, b, c, ta, tb, beta):
    gemm(a, b, c, ta, tb, beta)


def _view(rng, shape, dtype):
    """A view with a row stride wider than its rows and a non-zero offset."""
    big = rng.standard_normal((shape[0] + 2, shape[1] + 5)).astype(dtype)
    return big[1:shape[0] + 1, 2:shape[1] + 2]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("beta", [0.0, 1.0])
def test_gemm_matches_numpy(dtype, ta, tb, beta):
    rng = np.random.default_rng(0)
    M, N, K = 7, 5, 9
    a = _view(rng, (K, M) if ta else (M, K), dtype)
    b = _view(rng, (N, K) if tb else (K, N), dtype)
    c = _view(rng, (M, N), dtype)
    want = (a.T if ta else a) @ (b.T if tb else b) + beta * c
    _gemm(a, b, c, ta, tb, beta)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(c, want, rtol=tol, atol=tol)


def test_gemm_leaves_the_rest_of_the_buffer_alone():
    rng = np.random.default_rng(1)
    big = rng.standard_normal((6, 8))
    before = big.copy()
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((3, 5))
    _gemm(a, b, big[1:5, 2:7], False, False, 0.0)
    np.testing.assert_allclose(big[1:5, 2:7], a @ b, rtol=1e-12, atol=1e-12)
    mask = np.ones_like(big, dtype=bool)
    mask[1:5, 2:7] = False
    assert np.array_equal(big[mask], before[mask])


def test_gemm_rejects_rows_that_are_not_contiguous():
    with pytest.raises(ValueError, match="contiguous"):
        _gemm(np.ones((3, 8))[:, ::2], np.ones((4, 3)), np.ones((3, 3)), False, False, 0.0)
