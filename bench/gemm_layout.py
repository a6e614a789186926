"""The per-step recurrent product in its two layouts, through rnnkit's gemm (kernels/blas.py).

One thread's share of a step: h_{t-1} of N streams times the W_h columns of J gate rows
(J = 4H / threads). `stream-major` is np.dot's h (N, H) @ W (H, J) -> (N, J); `feature-major`
is what the LSTM kernel does: W.T (J, H) @ h.T (H, N) -> (J, N). Same numbers, same BLAS,
single-threaded; GFLOP/s, best of 5 repeats.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/gemm_layout.py
"""
import time

from numba import njit
import numpy as np

import rnnkit.kernels  # noqa: F401  (limits BLAS to one thread)
from rnnkit.kernels.blas import gemm

SHAPES = [(32, 512, 1024), (64, 512, 1024), (32, 256, 512), (64, 256, 512), (32, 128, 256),
          (64, 128, 256), (20, 200, 400)]


@njit
def _repeat(a, b, c, reps):
    for _ in range(reps):
        gemm(a, b, c, False, False, 1.0)


def gflops(a, b, c, flop):
    reps = max(10, int(2e9 / flop))
    _repeat(a, b, c, 2)
    best = np.inf
    for _ in range(5):
        t = time.perf_counter()
        _repeat(a, b, c, reps)
        best = min(best, (time.perf_counter() - t) / reps)
    return flop / best / 1e9


def main():
    rng = np.random.default_rng(0)
    print("N streams, H, J gate rows: GFLOP/s, one thread")
    print(f"{'N':>4} {'H':>5} {'J':>5} {'stream-major':>13} {'feature-major':>14} {'ratio':>6}")
    for N, H, J in SHAPES:
        h = rng.standard_normal((N, H), dtype=np.float32)
        w = rng.standard_normal((H, J), dtype=np.float32)
        flop = 2.0 * N * H * J
        slow = gflops(h, w, np.zeros((N, J), np.float32), flop)
        fast = gflops(np.ascontiguousarray(w.T), np.ascontiguousarray(h.T),
                      np.zeros((J, N), np.float32), flop)
        print(f"{N:4d} {H:5d} {J:5d} {slow:13.0f} {fast:14.0f} {fast / slow:6.2f}")


if __name__ == "__main__":
    main()
