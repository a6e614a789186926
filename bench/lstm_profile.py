"""Where one LSTM layer's time goes: the kernel's forward and backward, against numpy doing
the same matrix products alone (the floor), so what is left is gate math and overhead.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/lstm_profile.py --threads 2

Columns (ms, median of repeats): fwd, bwd = lstm_forward, lstm_backward; proj = the input
projection (T*N x D) @ (D x 4H); step = the T per-step products, W_h.T (4H x H) @ h.T (H x N)
as the kernel lays them out; grads = dW_x, dW_h and dx over all steps. The floor runs numpy
with one BLAS thread, as each of the kernel's blocks does, so fwd - (proj + step) / threads is
the gate math and the meeting points, roughly.
"""
import argparse
import time

import numpy as np


def timed(fn, reps=20):
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def layer(H, N, T, D, dtype=np.float32):
    from rnnkit.kernels.cpu import lstm as K
    from rnnkit.kernels.cpu.buffers import LSTM

    rng = np.random.default_rng(0)
    f = lambda *s: (rng.standard_normal(s) * 0.1).astype(dtype)  # noqa: E731
    x, w_x, w_h, b = f(T, N, D), f(D, 4 * H), f(H, 4 * H), f(4 * H)
    hs = np.zeros((T + 1, N, H), dtype)
    c = np.zeros((N, H), dtype)
    gates, dgates = np.empty((T, 4 * H, N), dtype), np.empty((T, 4 * H, N), dtype)
    cs, z, wt = (np.empty((T + 1, H, N), dtype), np.empty((T + 1, D + H, N), dtype),
                 np.empty((4 * H, D + H), dtype))
    dhs, dh, dc = f(T, N, H), np.zeros((N, H), dtype), np.zeros((N, H), dtype)
    dx, dw_x, dw_h, db = np.empty_like(x), np.zeros_like(w_x), np.zeros_like(w_h), np.zeros_like(b)
    dht, dct = np.empty((H, N), dtype), np.empty((H, N), dtype)
    dwt, dxt = np.empty((4 * H, D + H), dtype), np.empty((D, N), dtype)
    bp, dgp = (np.empty(LSTM.scratch(T, N, D, H)[k], dtype) for k in ("bp", "dgp"))
    hp = np.empty(LSTM.buffers(T, N, D, H)["hp"], dtype)

    def fwd():
        c[:] = 0
        K.lstm_forward(x, w_x, w_h, b, hs, c, gates, cs, z, wt, hp)

    def bwd():
        dh[:] = 0
        dc[:] = 0
        K.lstm_backward(x, w_x, w_h, hs, gates, cs, dhs, dh, dc, dx, dw_x, dw_h, db, dgates,
                        dht, dct, dwt, dxt, bp, dgp)
    return fwd, bwd, (x.reshape(T * N, D), w_x, w_h, hs[:T].reshape(T * N, H))


def floor(x, w_x, w_h, hprev, N, T):
    from threadpoolctl import threadpool_limits

    H = w_h.shape[0]
    out = np.empty((x.shape[0], 4 * H), x.dtype)
    g = np.empty((4 * H, N), x.dtype)
    dwx, dwh, dx = np.empty_like(w_x), np.empty_like(w_h), np.empty_like(x)
    # The step's product in the kernel's layout: W_h.T (4H, H) @ h.T (H, N).
    wt, ht = np.ascontiguousarray(w_h.T), np.ascontiguousarray(hprev[:N].T)

    def steps():
        for _ in range(T):
            np.dot(wt, ht, g)

    def grads():
        np.dot(x.T, out, dwx)
        np.dot(hprev.T, out, dwh)
        np.dot(out, w_x.T, dx)
    with threadpool_limits(1, "blas"):
        return timed(lambda: np.dot(x, w_x, out)), timed(steps), timed(grads)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--T", type=int, default=64)
    ap.add_argument("--D", type=int, default=None, help="input size (default: H)")
    ap.add_argument("--configs", default="128x32,128x64,256x32,256x64,512x32,512x64",
                    help="HxN,...")
    a = ap.parse_args()
    from rnnkit.backends.threads import set_threads

    from train_step import region_us  # the machine's phase marker (bench/train_step.py)

    threads, _ = set_threads(a.threads)
    print(f"threads {threads}, T={a.T}, float32; ms per call; an empty parallel region takes "
          f"{region_us():.2f} us")
    print("| H | N | fwd | bwd | proj | step | grads | fwd - floor | bwd - floor |")
    print("|---|---|-----|-----|------|------|-------|-------------|-------------|")
    for cfg in a.configs.split(","):
        H, N = map(int, cfg.split("x"))
        fwd, bwd, arrays = layer(H, N, a.T, a.D or H)
        fwd()
        bwd()
        tf, tb = timed(fwd), timed(bwd)
        proj, step, grads = floor(*arrays, N, a.T)
        # The kernel runs the step products on `threads` blocks of units, and the big ones by
        # blocks: divide the one-thread floor by the threads.
        ff = (proj + step) / threads
        fb = (step + grads) / threads
        print(f"| {H} | {N} | {tf:.2f} | {tb:.2f} | {proj:.2f} | {step:.2f} | {grads:.2f} "
              f"| {tf - ff:.2f} | {tb - fb:.2f} |")


if __name__ == "__main__":
    main()
