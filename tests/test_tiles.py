"""The register-tiled products (kernels/cpu/tiles.py) against numpy."""
import numpy as np
import pytest
from numba import njit

from rnnkit.kernels.cpu import leaf, tiles
from rnnkit.kernels.cpu.blocks import transpose_add, transpose_into
from rnnkit.kernels.cpu.lanes import fma

# The kernels are intrinsics, callable from @njit code only.
product = njit(lambda *args: tiles.product(*args))
product_runs = njit(lambda *args: tiles.product_runs(*args))
transpose = {False: njit(lambda src, dst: transpose_into(src, dst)),
             True: njit(lambda src, dst: transpose_add(src, dst))}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ncols", [1, 3, 5, 7, 8, 9, 16, 19, 20, 24, 25, 31, 32, 33, 40, 41,
                                   64, 71])
@pytest.mark.parametrize("transposed", [False, True])
def test_product_matches_numpy(dtype, ncols, transposed):
    """Whole panels of MR rows and a remainder, every column count a vector splits into, A
    row-major and read as its transpose, offsets into b and c."""
    MR = tiles.MR
    rng = np.random.default_rng(ncols)
    M, K = 2 * MR + 5, 11
    w = rng.standard_normal((M, K)).astype(dtype)
    a = np.ascontiguousarray(w.T) if transposed else w
    ars, aks = (1, M) if transposed else (K, 1)
    b = rng.standard_normal((K, ncols + 3)).astype(dtype)
    c = rng.standard_normal((M + 1, ncols + 4)).astype(dtype)
    want = c.copy()
    want[4:M + 1, 2:2 + ncols] += w[3:] @ b[:, 1:1 + ncols]
    # Rows 3:M of A into c from row 1, column 2 (c's row r is c row 1 + r).
    leaf.ready(dtype)
    product(a, 0, ars, aks, 3, M, K, b, 1, ncols + 3, ncols, c, (ncols + 4) + 2,
                  ncols + 4)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(c, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_row_count_in_both_loop_orders(dtype):
    """Each count of rows up to three panels (the remainder as panels of the powers of two
    below MR), with more rows than columns (panels of rows outside) and fewer (blocks of
    columns outside); every element is one chain of fused multiply-adds from zero, added to c,
    whatever the tile: the same bits as that chain computed here one element at a time."""
    rng = np.random.default_rng(7)
    K = 13
    leaf.ready(dtype)
    for M in range(1, 3 * tiles.MR + 1):
        for ncols in (max(1, M - 3), M + 40):
            a = rng.standard_normal((M, K)).astype(dtype)
            b = rng.standard_normal((K, ncols)).astype(dtype)
            c = rng.standard_normal((M, ncols)).astype(dtype)
            want = c + _fma_chains(a, b)
            product(a, 0, K, 1, 0, M, K, b, 0, ncols, ncols, c, 0, ncols)
            np.testing.assert_array_equal(c, want)


@njit
def _fma_chains(a, b):
    out = np.zeros((a.shape[0], b.shape[1]), a.dtype)
    for r in range(a.shape[0]):
        for n in range(b.shape[1]):
            acc = a.dtype.type(0.0)
            for k in range(a.shape[1]):
                acc = fma(a[r, k], b[k, n], acc)
            out[r, n] = acc
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_product_runs_sums_over_steps(dtype):
    """The summed dimension in runs: dW.T += sum over steps t of dgates_t (R, N) @ x_t (N, D),
    with dgates (T, R, N) and x (T, N, D) as the LSTM's backward lays them out."""
    rng = np.random.default_rng(0)
    T, R, N, D = 5, 2 * tiles.MR + 3, 7, 21
    dg = rng.standard_normal((T, R, N)).astype(dtype)
    x = rng.standard_normal((T, N, D)).astype(dtype)
    c = rng.standard_normal((R, D)).astype(dtype)
    want = c + np.einsum("trn,tnd->rd", dg, x)
    leaf.ready(dtype)
    product_runs(dg, 0, N, 1, R * N, 0, R, N, T, x, 0, D, N * D, D, c, 0, D)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(c, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("P,Q", [(3, 5), (16, 16), (35, 19), (8, 40), (64, 33)])
@pytest.mark.parametrize("add", [False, True])
def test_transpose_into(dtype, P, Q, add):
    """Whole blocks through registers and the edges one by one, on strided views."""
    rng = np.random.default_rng(P * Q)
    big = rng.standard_normal((P + 2, Q + 3)).astype(dtype)
    out = rng.standard_normal((Q + 4, P + 1)).astype(dtype)
    src, dst = big[1:P + 1, 2:Q + 2], out[3:Q + 3, 1:P + 1]
    want = out.copy()
    want[3:Q + 3, 1:P + 1] = src.T + (want[3:Q + 3, 1:P + 1] if add else 0)
    leaf.ready(dtype)
    transpose[add](src, dst)
    np.testing.assert_array_equal(out, want)


product_packed = njit(lambda *args: tiles.product_packed(*args))
pack_columns = njit(lambda *args: tiles.pack_columns(*args))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("transposed", [False, True])
def test_packed_product_matches_the_plain_one(dtype, transposed):
    """B packed block by block of the tiles' columns (as the GRU and RNN pack W_h and W_h.T),
    from a column block's start to the end of B (a last block not full): the same bits as
    the product of B where it lies."""
    C = tiles.CHUNK // np.dtype(dtype).itemsize
    rng = np.random.default_rng(3)
    M, K, ncols = 2 * tiles.MR + 3, 19, 3 * C + 5
    a = rng.standard_normal((M, K)).astype(dtype)
    b = rng.standard_normal((ncols, K) if transposed else (K, ncols)).astype(dtype)
    srs, scs = (1, K) if transposed else (ncols, 1)
    packed = np.full(K * 4 * C + 7, np.nan, dtype)
    leaf.ready(dtype)
    for n0 in (0, C):
        pack_columns(b.reshape(-1), 0, srs, scs, K, n0, ncols, packed, 7, K * C)
        plain, want = (rng.standard_normal((M, ncols)).astype(dtype) for _ in range(2))
        want[:] = plain
        bt = b.T if transposed else b
        product(a, 0, K, 1, 0, M, K, np.ascontiguousarray(bt), n0, ncols, ncols - n0, want,
                n0, ncols)
        product_packed(a, 0, K, 1, 0, M, K, packed, 7 + n0 * K, C * K, ncols - n0, plain, n0,
                       ncols)
        np.testing.assert_array_equal(plain, want)
