"""The packed per-step product (kernels/tiles.py) against numpy."""
import numpy as np
import pytest

from rnnkit.kernels import tiles


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ncols", [1, 3, 5, 7, 16, 19, 20, 31, 32, 33, 64, 71])
def test_packed_product_matches_numpy(dtype, ncols):
    MR = tiles.MR
    rng = np.random.default_rng(ncols)
    M, K, ld = 3 * MR + 3, 13, ncols + 9   # three whole panels and three single rows
    lo = MR                                 # rows 0:lo packed as a segment of their own
    w = rng.standard_normal((M, K)).astype(dtype)
    b = rng.standard_normal((K, ld)).astype(dtype)
    c = rng.standard_normal((M + 2, ld + 4)).astype(dtype)
    ap = np.full(M * K, np.nan, dtype)
    tiles.pack_rows(w, ap, 0, lo)
    tiles.pack_rows(w, ap, lo, M)
    ap2 = np.full_like(ap, np.nan)
    wt = np.ascontiguousarray(w.T)
    tiles.pack_columns(wt, ap2, 0, lo)
    tiles.pack_columns(wt, ap2, lo, M)
    assert np.array_equal(ap, ap2)
    want = c.copy()
    # Rows lo:M only, columns from 2 of b into c from row 1, column 3.
    want[1 + lo:1 + M, 3:3 + ncols] += w[lo:] @ b[:, 2:2 + ncols]
    tiles.packed_product(ap, lo, M, K, b, 2, ld, ncols, c, (ld + 4) + 3, ld + 4)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(c, want, rtol=tol, atol=tol)
    # A thread's share that starts at a panel inside the segment.
    c2 = c.copy()
    want[1 + 2 * MR:1 + M, 3:3 + ncols] += w[2 * MR:] @ b[:, 2:2 + ncols]
    tiles.packed_product(ap, 2 * MR, M, K, b, 2, ld, ncols, c2, (ld + 4) + 3, ld + 4)
    np.testing.assert_allclose(c2, want, rtol=tol, atol=tol)
