"""The per-step recurrent product in its two layouts, through rnnkit's gemm (kernels/cpu/blas.py).

One thread's share of a step: h_{t-1} of N streams times the W_h columns of J gate rows
(J = 4H / threads). `stream-major` is np.dot's h (N, H) @ W (H, J) -> (N, J); `feature-major`
is what the LSTM kernel does: W.T (J, H) @ h.T (H, N) -> (J, N). Same numbers, same BLAS,
single-threaded; GFLOP/s, best of 5 repeats. A second table does the same for the GRU's and
RNN's stream-major caches, where the fast layout needs a transpose back (how those cells ran
their step products before they moved to kernels/cpu/tiles.py; bench/tiles.py times those).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/gemm_layout.py
"""
import time

from numba import njit
import numpy as np

from rnnkit.kernels.cpu import leaf
from rnnkit.kernels.cpu.blas import gemm
from rnnkit.kernels.cpu.blocks import transpose_into

leaf.ready(np.float32)

SHAPES = [(32, 512, 1024), (64, 512, 1024), (32, 256, 512), (64, 256, 512), (32, 128, 256),
          (64, 128, 256), (20, 200, 400)]


@njit
def _repeat(a, b, c, reps):
    for _ in range(reps):
        gemm(a, b, c, False, False, 1.0)


def rate(fn, args, flop):
    """GFLOP/s of fn(*args, reps), best of 5 timings."""
    reps = max(10, int(2e9 / flop))
    fn(*args, 2)
    best = np.inf
    for _ in range(5):
        t = time.perf_counter()
        fn(*args, reps)
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
        slow = rate(_repeat, (h, w, np.zeros((N, J), np.float32)), flop)
        fast = rate(_repeat, (np.ascontiguousarray(w.T), np.ascontiguousarray(h.T),
                              np.zeros((J, N), np.float32)), flop)
        print(f"{N:4d} {H:5d} {J:5d} {slow:13.0f} {fast:14.0f} {fast / slow:6.2f}")


@njit
def _np_dot(h, w, out, reps):
    for _ in range(reps):
        np.dot(h, w, out)


@njit
def _fast_then_transpose(wt, h, out_t, out, reps):
    for _ in range(reps):
        gemm(wt, h, out_t, False, True, 0.0)
        transpose_into(out_t, out)


@njit
def _grad_now(dg, w, d, reps):
    for _ in range(reps):
        gemm(dg, w, d, False, True, 0.0)


@njit
def _grad_fast_then_transpose(dg, w, d_t, d, reps):
    for _ in range(reps):
        gemm(w, dg, d_t, False, True, 0.0)
        transpose_into(d_t, d)


def stream_major_cells():
    """The GRU's (G = 3) and RNN's (G = 1) caches are stream-major, (M, G*H) a step for a
    thread's M streams: their step products in np.dot's layout, against the fast layout plus a
    transpose back."""
    rng = np.random.default_rng(0)
    print("\nGRU/RNN step product, M streams a thread: GFLOP/s, one thread, transpose included")
    print(f"{'G':>2} {'H':>4} {'M':>3} {'fwd np.dot':>11} {'fwd fast':>9} {'ratio':>6} "
          f"{'bwd now':>8} {'bwd fast':>9} {'ratio':>6}")
    for G in (3, 1):
        for H, M in ((128, 16), (128, 32), (256, 16), (256, 32), (512, 16), (512, 32)):
            f32 = np.float32
            h = rng.standard_normal((M, H), dtype=f32)
            w = rng.standard_normal((H, G * H), dtype=f32)
            wt = np.ascontiguousarray(w.T)
            out, out_t = np.zeros((M, G * H), f32), np.zeros((G * H, M), f32)
            dg = rng.standard_normal((M, G * H), dtype=f32)
            d, d_t = np.zeros((M, H), f32), np.zeros((H, M), f32)
            flop = 2.0 * M * H * G * H
            r = (rate(_np_dot, (h, w, out), flop),
                 rate(_fast_then_transpose, (wt, h, out_t, out), flop),
                 rate(_grad_now, (dg, w, d), flop),
                 rate(_grad_fast_then_transpose, (dg, w, d_t, d), flop))
            print(f"{G:2d} {H:4d} {M:3d} {r[0]:11.0f} {r[1]:9.0f} {r[1] / r[0]:6.2f} "
                  f"{r[2]:8.0f} {r[3]:9.0f} {r[3] / r[2]:6.2f}")


if __name__ == "__main__":
    main()
    stream_major_cells()
