"""The register-tiled products of kernels/cpu/tiles.py against OpenBLAS, one thread, float32.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/tiles.py
    NUMBA_CPU_NAME=haswell OPENBLAS_CORETYPE=Haswell python bench/tiles.py --shapes
    NUMBA_CPU_NAME=haswell python bench/tiles.py --packed

Shapes are the recurrences' per-step products: the LSTM's (M gate rows of one thread, K = H,
N streams; A = W.T row-major), its backward's dx (A = W_x, K = 4H) and a dW block (K = 8 steps
of N streams), and the GRU's and RNN's (time-major: M = N streams, B = the thread's columns of
W_h). `tiles` is the kernel as built for this CPU (kernels/cpu/target.py); `OpenBLAS` is
blas.gemm in its fastest layout for the shape, the library numpy calls.

--packed times the LSTM backward's products with B in place and packed for the tiles
(kernels/cpu/lstm.py packs them), in one process, alternating.

--shapes compares tile shapes (MR rows x NV vectors, prefetch distance, whether a last block
of columns that fills half a vector runs in a half-width one) on the same products,
in one process: each round runs every shape once, in turn, so that the machine's drift falls
on all alike; the figure is each shape's median over rounds of its GFLOP/s (min-max), timed
in the thread's own CPU time, which other processes on a busy machine do not inflate (their
cache traffic still may). It chooses tiles.SHAPES for the CPU it runs on.
"""
import argparse
import statistics
import time

import numpy as np
from numba import njit

# (label, M, K, N, A layout): the LSTM's per-step product and dx are A row-major (weights as
# A); the GRU's/RNN's time-major step has the states as A and the weight columns as B.
PRODUCTS = [("lstm step H=128 N=32", 64, 128, 32), ("lstm step H=512 N=64", 256, 512, 64),
            ("lstm step H=200 N=20", 104, 200, 20), ("lstm dx H=256 N=32", 128, 1024, 32),
            ("lstm dh H=512 N=64", 512, 2048, 64), ("lstm dW H=512 N=64", 2048, 256, 512),
            ("gru step H=128 N=32", 32, 128, 64), ("gru step H=512 N=64", 64, 512, 256),
            ("rnn step H=256 N=20", 20, 256, 128)]


def _driver(MR, NV, prefetch, half, lanes):
    """The leaf's loops (tiles._product_runs_flat) around tiles of another shape; a last block
    of columns takes the tile of as many vectors as it needs; with `half`, one of one or two
    vectors whose last is at most half full takes that vector half as wide (tiles.HALF)."""
    from rnnkit.kernels.cpu import tiles

    t1, t2, t3, t4 = (tiles.make_tile(MR, min(v, NV), prefetch) for v in (1, 2, 3, 4))
    h1, h2 = (tiles.make_tile(MR, min(v, NV), prefetch, True) for v in (1, 2))
    chunk = NV * lanes

    @njit
    def run(a, b, c, reps):
        M, K = a.shape
        ncols = c.shape[1]
        panels, chunks = (M + MR - 1) // MR, (ncols + chunk - 1) // chunk
        outside = M >= ncols
        for _ in range(reps):
            for i in range(panels * chunks):
                if outside:
                    p, q = i // chunks, i % chunks
                else:
                    p, q = i % panels, i // panels
                r, n = p * MR, q * chunk
                rows, cols = min(MR, M - r), min(chunk, ncols - n)
                ra, rc = r * K, r * ncols + n
                vectors = (cols + lanes - 1) // lanes
                narrow = half and cols - (vectors - 1) * lanes <= lanes // 2
                if narrow and vectors == 1:
                    h1(a, ra, K, 1, 0, b, n, ncols, 0, c, rc, ncols, K, 1, rows, cols)
                elif narrow and vectors == 2:
                    h2(a, ra, K, 1, 0, b, n, ncols, 0, c, rc, ncols, K, 1, rows, cols)
                elif vectors == 1:
                    t1(a, ra, K, 1, 0, b, n, ncols, 0, c, rc, ncols, K, 1, rows, cols)
                elif vectors == 2:
                    t2(a, ra, K, 1, 0, b, n, ncols, 0, c, rc, ncols, K, 1, rows, cols)
                elif vectors == 3:
                    t3(a, ra, K, 1, 0, b, n, ncols, 0, c, rc, ncols, K, 1, rows, cols)
                else:
                    t4(a, ra, K, 1, 0, b, n, ncols, 0, c, rc, ncols, K, 1, rows, cols)
    return run


def _thread_seconds(fn, *args):
    t = time.thread_time()
    fn(*args)
    return time.thread_time() - t


def shapes(candidates, rounds):
    from rnnkit.kernels.cpu import target

    lanes = target.VECTOR_BYTES // 4
    runs = {s: _driver(*s, lanes) for s in candidates}
    print(f"{target.ISA} ({target.KEY[1]}), {target.VECTOR_BYTES}-byte vectors, "
          f"{target.REGISTERS} registers; GFLOP/s, median (min-max) of {rounds} rounds, "
          f"one thread")
    print("| product | M | K | N | " + " | ".join(f"{m}x{v} pf{p}{' half' if h else ''}"
                                                  for m, v, p, h in candidates) + " |")
    print("|---|---|---|---|" + "---|" * len(candidates))
    totals = {s: [] for s in candidates}
    for label, M, K, N in PRODUCTS:
        rng = np.random.default_rng(0)
        a = rng.standard_normal((M, K)).astype(np.float32)
        b = rng.standard_normal((K, N)).astype(np.float32)
        c = np.zeros((M, N), np.float32)
        reps = max(1, int(2e8 / (2 * M * K * N)))
        rates = {s: [] for s in candidates}
        for s in candidates:
            runs[s](a, b, c, 1)
        for r in range(rounds):
            order = candidates if r % 2 == 0 else candidates[::-1]
            for s in order:
                rates[s].append(2 * M * K * N * reps / _thread_seconds(runs[s], a, b, c, reps)
                                / 1e9)
        cells = []
        for s in candidates:
            v = rates[s]
            totals[s].append(statistics.median(v))
            cells.append(f"{statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f})")
        print(f"| {label} | {M} | {K} | {N} | " + " | ".join(cells) + " |", flush=True)
    print("| geometric mean | | | | " + " | ".join(
        f"{statistics.geometric_mean(totals[s]):.0f}" for s in candidates) + " |")


def against_blas():
    from rnnkit.kernels.cpu import leaf, target, tiles
    from rnnkit.kernels.cpu.blas import gemm

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

    print(f"{target.ISA} ({target.KEY[1]}): tiles {tiles.MR} x {tiles.NV} vectors; GFLOP/s, "
          f"best of 5, one thread")
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
            best = min(_thread_seconds(fn, left, b, c, reps) for _ in range(5))
            rates.append(2 * M * K * N * reps / best / 1e9)
        print(f"| {M} | {K} | {N} | " + " | ".join(f"{r:.0f}" for r in rates) + " |")


# (label, M, K, N): the LSTM's backward products whose B the kernel packs (dh: W_h @ dgates_t,
# dW: a block of dgates @ [x, h]), and a forward step's, which it reads in place.
PACKED = [("dW block H=512 N=64", 2048, 256, 512), ("dh H=512 N=64", 512, 2048, 64),
          ("dh H=512 N=32", 512, 2048, 32), ("dh H=256 N=64", 256, 1024, 64),
          ("dh H=128 N=32", 128, 512, 32), ("step H=512 N=64", 256, 512, 64)]


def packed(rounds):
    """B where it lies, packed beforehand, and packed in each call (tiles.pack_columns)."""
    from rnnkit.kernels.cpu import leaf, target, tiles

    leaf.ready(np.float32)

    @njit
    def plain(a, b, bp, c, reps):
        M, K = a.shape
        N = b.shape[1]
        for _ in range(reps):
            tiles.product(a, 0, K, 1, 0, M, K, b, 0, N, N, c, 0, N)

    @njit
    def prepacked(a, b, bp, c, reps):
        M, K = a.shape
        N, C = b.shape[1], tiles.CHUNK // 4
        for _ in range(reps):
            tiles.product_packed(a, 0, K, 1, 0, M, K, bp, 0, K * C, N, c, 0, N)

    @njit
    def packing(a, b, bp, c, reps):
        M, K = a.shape
        N, C = b.shape[1], tiles.CHUNK // 4
        for _ in range(reps):
            tiles.pack_columns(b.reshape(b.size), 0, N, 1, K, 0, N, bp, 0, K * C)
            tiles.product_packed(a, 0, K, 1, 0, M, K, bp, 0, K * C, N, c, 0, N)

    sides = (("in place", plain), ("packed", prepacked), ("packed in the call", packing))
    print(f"{target.ISA} ({target.KEY[1]}): B in place or packed; GFLOP/s, median (min-max) "
          f"of {rounds} rounds, one thread")
    print("| product | M | K | N | " + " | ".join(name for name, _ in sides) + " |")
    print("|---|---|---|---|" + "---|" * len(sides))
    C = tiles.CHUNK // 4
    for label, M, K, N in PACKED:
        rng = np.random.default_rng(0)
        a = rng.standard_normal((M, K)).astype(np.float32)
        b = rng.standard_normal((K, N)).astype(np.float32)
        bp = np.zeros(K * -(-N // C) * C, np.float32)
        c = np.zeros((M, N), np.float32)
        reps = max(1, int(2e8 / (2 * M * K * N)))
        rates = {name: [] for name, _ in sides}
        for _, fn in sides:
            fn(a, b, bp, c, 1)
        for r in range(rounds):
            for name, fn in (sides if r % 2 == 0 else sides[::-1]):
                rates[name].append(2 * M * K * N * reps /
                                   _thread_seconds(fn, a, b, bp, c, reps) / 1e9)
        print(f"| {label} | {M} | {K} | {N} | " + " | ".join(
            f"{statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f})" for v in rates.values())
              + " |", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", action="store_true", help="compare tile shapes (see above)")
    ap.add_argument("--candidates", default="",
                    help="MRxNVxPF[h],... (h: a last half-filled vector in half a register; "
                         "default: the usual ones for this CPU's registers)")
    ap.add_argument("--packed", action="store_true",
                    help="the LSTM backward's products with B in place or packed")
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    from rnnkit.backends.threads import set_threads

    set_threads(1)
    if args.packed:
        packed(args.rounds)
        return
    if not args.shapes:
        against_blas()
        return
    from rnnkit.kernels.cpu import target

    if args.candidates:
        candidates = [tuple(int(x) for x in c.rstrip("h").split("x")) + (c.endswith("h"),)
                      for c in args.candidates.split(",")]
    elif target.REGISTERS >= 32:
        candidates = [(8, 2, 0, False), (8, 2, 0, True), (8, 3, 0, False), (6, 4, 0, False),
                      (12, 2, 0, False), (8, 2, 8, False)]
    else:
        candidates = [(4, 2, 0, False), (6, 2, 0, False), (5, 2, 0, False), (4, 3, 0, False),
                      (6, 2, 8, False)]
    shapes(candidates, args.rounds)


if __name__ == "__main__":
    main()
