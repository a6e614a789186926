"""Time one whole training step of rnnkit against PyTorch's CPU build, same thread count.

A step: embedding, L layers, output projection, softmax cross-entropy, backward, global-norm
clipping (5), Adam (PyTorch's defaults). Prints tokens/s for rnnkit, for the step's matrix
products alone through numpy (the floor), and for PyTorch twice: with its defaults, and at its
best (glibc malloc thresholds raised; oneDNN off for batch-1 generation). PyTorch runs in child
processes because malloc settings are read at process start. Each config's rate is also given
in GFLOP/s (the step's matrix products, as the floor counts them) as a fraction of the sgemm
rate (numpy, 2048^3, the same threads) measured in the same run.

--isa picks the instruction set for every side at once: rnnkit's kernels (NUMBA_CPU_NAME: the
kernels compile for that CPU, kernels/cpu/target.py), OpenBLAS under numpy and the floor
(OPENBLAS_CORETYPE), PyTorch (ATEN_CPU_CAPABILITY) and oneDNN (ONEDNN_MAX_CPU_ISA); "native"
leaves each library to detect the host. OPENBLAS_L2_SIZE is unset for all of them. An AVX-512
run needs a host with AVX-512; an AVX2 one runs on any x86 host with AVX2.

Everything is timed in --rounds rounds (default 3), one after another, and each column shows
its best round: the machine these figures come from has phases, seconds to minutes long, in
which threaded code runs up to 1.6x slower, and a single window per config lands in one at
random. PyTorch gets a fresh process each round, so its malloc luck gets as many draws.

    python bench/train_step.py --threads 2 --isa native
    python bench/train_step.py --threads 2 --isa avx2
"""
import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

CHAR = [(cell, H, N) for cell in ("lstm", "gru", "rnn-tanh") for H in (128, 256, 512)
        for N in (32, 64)]
BEST_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}

# What each --isa sets; None: unset (the library detects the host).
# NUMBA_CPU_FEATURES too, though the CPU's name alone sets its features in rnnkit since
# issue 20: so that bench/ab.py compares older trees on the same instruction set.
ISA_ENV = {
    "avx2": {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": "+avx2",
             "OPENBLAS_CORETYPE": "Haswell", "ATEN_CPU_CAPABILITY": "avx2",
             "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "avx512": {"NUMBA_CPU_NAME": "skylake-avx512", "NUMBA_CPU_FEATURES": "+avx512f",
               "OPENBLAS_CORETYPE": "SkylakeX", "ATEN_CPU_CAPABILITY": "avx512",
               "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "native": {"NUMBA_CPU_NAME": None, "NUMBA_CPU_FEATURES": None, "OPENBLAS_CORETYPE": None,
               "ATEN_CPU_CAPABILITY": None, "ONEDNN_MAX_CPU_ISA": None},
}
ISA_MARK = "RNNKIT_BENCH_ISA"       # set once the process runs under its --isa environment


def isa_environ(isa):
    """The environment for --isa: os.environ with the ISA's settings, OPENBLAS_L2_SIZE unset."""
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_L2_SIZE"}
    for key, value in ISA_ENV[isa].items():
        env.pop(key, None)
        if value is not None:
            env[key] = value
    env[ISA_MARK] = isa
    return env


def host_has_avx512():
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            return " avx512f" in f.read()
    except OSError:
        return False


def configs(which, only=""):
    """The configs of --which whose names contain any of the comma-separated words in `only`."""
    return [c for c in _configs(which) if not only or any(w in c["name"] for w in only.split(","))]


def _configs(which):
    out = []
    if which in ("all", "char"):
        out += [dict(name=f"char {c} H={H} N={N}", cell=c, V=65, E=64, H=H, L=2, N=N, T=64)
                for c, H, N in CHAR]
    if which in ("all", "word"):
        out.append(dict(name="word lstm PTB-small", cell="lstm", V=10000, E=200, H=200, L=2,
                        N=20, T=35))
    if which in ("all", "gen"):
        out.append(dict(name="generate lstm 2x512 N=1", cell="lstm", V=65, E=64, H=512, L=2,
                        N=1, T=1, gen=True))
    return out


def timed(fn, min_time=1.5, min_reps=3, warmup=2):
    for _ in range(warmup):
        fn()
    times, start = [], time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_time:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


GEN_TOKENS = 200


def sample(logits, rng):
    p = np.exp(logits - logits.max())
    return int(np.searchsorted(np.cumsum(p), rng.random() * p.sum()))


def region_us(count=6400):
    """Microseconds an empty two-block parallel region takes here: a marker of the machine's
    phase (about 0.8 in its fast phase, 2 in its slow one, where threaded code is slower)."""
    import numba
    from numba import njit, prange

    @njit(parallel=True)
    def regions(a, count):
        for _ in range(count):
            for i in prange(2):
                a[i * 16] += 1.0

    a = np.zeros(32)
    regions(a, 10)
    t = time.perf_counter()
    regions(a, count)
    return 1e6 * (time.perf_counter() - t) / count if numba.get_num_threads() > 1 else 0.0


def run_rnnkit(c):
    from rnnkit.model.network import Model, ModelConfig
    from rnnkit.model.optim import clip_gradients, make_optimizer

    model = Model(ModelConfig(cell=c["cell"], vocab_size=c["V"], embed=c["E"], hidden=c["H"],
                              layers=c["L"]))
    rng = np.random.default_rng(0)
    if c.get("gen"):
        state = model.init_state(1)

        def gen():
            token = 0
            for _ in range(GEN_TOKENS):
                token = sample(model.step(np.array([token]), state)[0], rng)
        return GEN_TOKENS / timed(gen, min_time=1.0)
    x = rng.integers(0, c["V"], (c["N"], c["T"]))
    y = rng.integers(0, c["V"], (c["N"], c["T"]))
    opt = make_optimizer("adam", model.params)
    state = [model.init_state(c["N"])]
    model.sparse_embedding = True       # as `rnnkit train` in one process

    def step():
        _, state[0] = model.forward_backward(x, y, state[0])
        clip_gradients(model.grads, max_norm=5.0, ranges=model.grad_ranges)
        opt.step(model.grads, model.grad_ranges)
    return c["N"] * c["T"] / timed(step)


def run_floor(c, threads):
    """Every matrix product of the step, through numpy with `threads` BLAS threads."""
    from threadpoolctl import threadpool_limits
    with threadpool_limits(threads, user_api="blas"):
        return _floor(c)


def flops_per_token(c):
    """The step's matrix products (those _floor runs) per token: forward, and for training
    twice that again backward (weight gradients and input gradients)."""
    V, E, H, L = (c[k] for k in "VEHL")
    G = {"lstm": 4, "gru": 3}.get(c["cell"], 1)
    forward = sum(2 * (E if i == 0 else H) * G * H + 2 * H * G * H for i in range(L)) + \
        2 * H * V
    return forward if c.get("gen") else 3 * forward


def sgemm_rate(threads, n=2048, reps=3):
    """numpy's float32 matrix product, n^3, with `threads` BLAS threads: GFLOP/s, best of reps."""
    from threadpoolctl import threadpool_limits

    r = np.random.default_rng(0)
    a, b = (r.standard_normal((n, n)).astype(np.float32) for _ in range(2))
    out = np.empty((n, n), np.float32)
    with threadpool_limits(threads, user_api="blas"):
        np.dot(a, b, out)
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            np.dot(a, b, out)
            best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def _floor(c):
    V, E, H, L, N, T = (c[k] for k in "VEHLNT")
    G = {"lstm": 4, "gru": 3}.get(c["cell"], 1)
    r = np.random.default_rng(0)
    mk = lambda *s: r.standard_normal(s).astype(np.float32)
    w_x = [mk(E if i == 0 else H, G * H) for i in range(L)]
    w_h, hs, gs = mk(H, G * H), mk(N, H), mk(N, G * H)
    X = [mk(T * N, E if i == 0 else H) for i in range(L)]
    P, Y, Wo = mk(T * N, G * H), mk(T * N, V), mk(V, H)
    Ht = mk(T * N, H)
    if c.get("gen"):
        def gen():
            for _ in range(GEN_TOKENS):
                for i in range(L):
                    X[i][:1] @ w_x[i]
                    hs[:1] @ w_h
                hs[:1] @ Wo.T
        return GEN_TOKENS / timed(gen, min_time=1.0)

    def step():
        for i in range(L):
            np.dot(X[i], w_x[i], out=P)
            for _ in range(T):
                hs @ w_h
        Ht @ Wo.T
        Y.T @ Ht
        Y @ Wo
        for i in range(L):
            for _ in range(T):
                gs @ w_h.T
            Ht.T @ P
            X[i].T @ P
            P @ w_x[i].T
    return N * T / timed(step)


def run_torch(c):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn-tanh": torch.nn.RNN}[c["cell"]]
    emb = torch.nn.Embedding(c["V"], c["E"])
    net = rnn(c["E"], c["H"], c["L"])
    out = torch.nn.Linear(c["H"], c["V"])
    params = list(emb.parameters()) + list(net.parameters()) + list(out.parameters())
    if c.get("gen"):
        gen_rng = torch.Generator().manual_seed(0)

        def gen():
            with torch.no_grad():
                token, hidden = torch.zeros(1, 1, dtype=torch.long), None
                for _ in range(GEN_TOKENS):
                    o, hidden = net(emb(token), hidden)
                    probs = F.softmax(out(o[0]), dim=-1)
                    token = torch.multinomial(probs, 1, generator=gen_rng).view(1, 1)
                    token.item()
        if os.environ.get("RNNKIT_BENCH_BEST"):
            with torch.backends.mkldnn.flags(enabled=False):
                return GEN_TOKENS / timed(gen, min_time=1.0)
        return GEN_TOKENS / timed(gen, min_time=1.0)
    opt = torch.optim.Adam(params)
    x = torch.randint(0, c["V"], (c["T"], c["N"]))
    y = torch.randint(0, c["V"], (c["T"], c["N"]))
    hidden = [None]

    def detach(h):
        return None if h is None else (tuple(t.detach() for t in h) if isinstance(h, tuple)
                                       else h.detach())

    def step():
        opt.zero_grad()
        o, h = net(emb(x), detach(hidden[0]))
        hidden[0] = h
        loss = F.cross_entropy(out(o).view(-1, c["V"]), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
    return c["N"] * c["T"] / timed(step)


def torch_child(which, only, threads, best):
    env = dict(os.environ, **(BEST_ENV if best else {}))
    if best:
        env["RNNKIT_BENCH_BEST"] = "1"
    cmd = [sys.executable, __file__, "--torch-worker", "--which", which, "--only", only,
           "--threads", str(threads)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--which", choices=["all", "char", "word", "gen"], default="all")
    ap.add_argument("--only", default="", help="configs whose name contains any of these "
                                               "comma-separated words (e.g. 'lstm H=512')")
    ap.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--no-torch", action="store_true", help="rnnkit and the floor only")
    ap.add_argument("--rounds", type=int, default=3,
                    help="time everything this many times, one round after another, and report "
                         "each side's best (PyTorch gets a fresh process each round)")
    ap.add_argument("--isa", choices=list(ISA_ENV), default="native",
                    help="instruction set for rnnkit, OpenBLAS and PyTorch alike (see above)")
    args = ap.parse_args()
    cfgs = configs(args.which, args.only)
    if args.torch_worker:
        import torch
        torch.set_num_threads(args.threads)
        print(json.dumps({c["name"]: run_torch(c) for c in cfgs}))
        return
    if os.environ.get(ISA_MARK) != args.isa:
        # OpenBLAS and Numba read their settings when they load: start again under them
        if args.isa == "avx512" and not host_has_avx512():
            sys.exit("--isa avx512: this CPU has no AVX-512")
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]],
                  isa_environ(args.isa))

    from rnnkit.backends.threads import set_threads
    set_threads(args.threads)
    t0 = time.perf_counter()
    from rnnkit.model.network import Model, ModelConfig  # noqa: F401  time the kernels' first load
    from rnnkit.kernels.cpu import target
    rounds, sgemm = [], []
    for r in range(args.rounds):
        before = region_us()
        ours = {c["name"]: run_rnnkit(c) for c in cfgs}
        after = region_us()
        if r == 0:
            print(f"rnnkit: all configs incl. kernel load/compile "
                  f"{time.perf_counter() - t0:.1f} s", flush=True)
        floor = {c["name"]: run_floor(c, args.threads) for c in cfgs}
        sgemm.append(sgemm_rate(args.threads))
        torch_default, torch_best = ({} if args.no_torch else
                                     torch_child(args.which, args.only, args.threads, best)
                                     for best in (False, True))
        rounds.append((ours, floor, torch_default, torch_best))
        print(f"round {r + 1} of {args.rounds} done; an empty parallel region took "
              f"{before:.2f} us before rnnkit's configs, {after:.2f} us after; sgemm "
              f"{sgemm[-1]:.0f} GFLOP/s", flush=True)

    def best(column, name):
        return max(rd[column].get(name, float("nan")) for rd in rounds)

    rate = max(sgemm)
    print(f"isa={args.isa} (rnnkit: {target.ISA}, {target.KEY[1]}; OpenBLAS core type "
          f"{os.environ.get('OPENBLAS_CORETYPE', 'detected')}; PyTorch "
          f"{os.environ.get('ATEN_CPU_CAPABILITY', 'detected')}); threads={args.threads}; "
          f"tok/s, best of {args.rounds} rounds; ratios are rnnkit / PyTorch; "
          f"sgemm {rate:.0f} GFLOP/s")
    head = f"{'config':<28}{'rnnkit':>10}{'floor':>10}{'torch':>10}{'torch*':>10}" \
           f"{'x torch':>9}{'x torch*':>9}{'x floor':>8}{'GF/s':>7}{'x sgemm':>8}" \
           f"{'torch* x sgemm':>15}{'worst':>7}"
    print(head)
    print("-" * len(head))
    for c in cfgs:
        n = c["name"]
        ours, floor, td, tb = (best(i, n) for i in range(4))
        worst = min(rd[0][n] for rd in rounds) / ours
        gf = flops_per_token(c) / 1e9
        print(f"{n:<28}{ours:>10.0f}{floor:>10.0f}{td:>10.0f}{tb:>10.0f}"
              f"{ours / td:>9.2f}{ours / tb:>9.2f}{ours / floor:>8.2f}{ours * gf:>7.0f}"
              f"{ours * gf / rate:>8.2f}{tb * gf / rate:>15.2f}{worst:>7.2f}", flush=True)
    print("floor: the step's matrix products alone through numpy; torch*: PyTorch at its best;")
    print("GF/s: those products' floating-point operations per second of rnnkit's step; x sgemm: "
          "that over the sgemm rate")
    print("(character configs: rnnkit's first layer reads its input gates from a table, "
          "rnnkit/model/tables.py; its step leaves out three of those products, the floor not)")
    print("worst: rnnkit's slowest round over its best (this machine has slow phases, in which "
          "an empty parallel region takes 2 us or more instead of 0.8)")


if __name__ == "__main__":
    main()
