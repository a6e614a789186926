"""The register-tiled products of kernels/cpu/tiles.py against OpenBLAS, one thread, float32.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/tiles.py

Shapes are the LSTM's: the per-step product (M gate rows of one thread, K = H or 4H, N
streams), its backward's dx (W_x @ dgates_t), and a dW block (K = 8 steps of N streams).
`tiles, A row-major` and `A transposed` read A as a matrix and as its transpose (both layouts
the LSTM uses); `OpenBLAS` is blas.gemm in its fastest layout for the shape (A row-major,
output feature-major), the same library numpy calls. GFLOP/s, best of 5.
"""
import time

import numpy as np


def main():
    from numba import njit

    from rnnkit.kernels.cpu import leaf, tiles
    from rnnkit.kernels.cpu.blas import gemm
    from rnnkit.threads import set_threads

    set_threads(1)
    leaf.ready(np.float32)

    @njit
    def rowmajor(a, b, c, reps):
        M, K = a.shape
        N = b.shape[1]
        for _ in range(reps):
            tiles.product(a, 0, K, 1, 0, M, K, b, 0, N, N, c, 0, N)

    @njit
    def transposed(at, b, c, reps):
        K, M = at.shape
        N = b.shape[1]
        for _ in range(reps):
            tiles.product(at, 0, 1, M, 0, M, K, b, 0, N, N, c, 0, N)

    @njit
    def blas(a, b, c, reps):
        for _ in range(reps):
            gemm(a, b, c, False, False, 1.0)

    print("| M | K | N | tiles, A row-major | tiles, A transposed | OpenBLAS |")
    print("|---|---|---|--------------------|---------------------|----------|")
    for M, K, N in [(256, 128, 32), (256, 128, 64), (512, 256, 32), (1024, 512, 32),
                    (1024, 512, 64), (256, 512, 32), (400, 400, 20), (1024, 256, 512)]:
        rng = np.random.default_rng(0)
        a = rng.standard_normal((M, K)).astype(np.float32)
        at = np.ascontiguousarray(a.T)
        b = rng.standard_normal((K, N)).astype(np.float32)
        reps = max(1, int(2e9 / (2 * M * K * N)))
        rates = []
        for fn, left in ((rowmajor, a), (transposed, at), (blas, a)):
            c = np.zeros((M, N), np.float32)
            fn(left, b, c, 1)
            best = min(_time(fn, left, b, c, reps) for _ in range(5))
            rates.append(2 * M * K * N * reps / best / 1e9)
        print(f"| {M} | {K} | {N} | " + " | ".join(f"{r:.0f}" for r in rates) + " |")


def _time(fn, a, b, c, reps):
    t = time.perf_counter()
    fn(a, b, c, reps)
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
