"""Training-step tokens/s of two (or more) source trees, side by side in one run.

    git worktree add ../before <commit>
    python bench/ab.py --threads 2 --rounds 4 ../before .

Each round runs every tree once in a fresh process (PYTHONPATH=tree), in alternating order, so
the machine's drift falls on all alike; each process times the configs below (LSTM, GRU, RNN at
H=128 and 512, a word-level LSTM; L=2, Adam, clipping; and sampling 200 tokens of 1 and of 8
streams with the LSTM at H=512, token by token) for --min-time seconds each after two warm-up
steps, and prints the median step's tokens/s. The table gives each config's median over rounds
(min-max) and the per-round ratio to the first tree. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are
unset for all trees (they slow numpy's BLAS here); --isa sets one instruction set for every
tree's kernels and OpenBLAS, as bench/train_step.py --isa does.

--clock cpu times each step by the process's CPU time instead of the wall clock: with
--threads 1 that is the one thread's own time, which other processes on a busy machine do not
inflate (their cache traffic and the clock speed they leave still may), for tuning while the
machine is shared. With more threads it would count the threads' spinning too: wall only.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

from train_step import ISA_ENV, isa_environ

CONFIGS = [dict(name=f"{cell} H={H} N={N}", cell=cell, V=65, E=64, H=H, N=N, T=64)
           for cell in ("lstm", "gru", "rnn-tanh") for H, N in ((128, 32), (512, 64))]
CONFIGS.append(dict(name="lstm H=256 N=32", cell="lstm", V=65, E=64, H=256, N=32, T=64))
CONFIGS.append(dict(name="word lstm 200", cell="lstm", V=10000, E=200, H=200, N=20, T=35))
# sampling: 200 tokens of N streams, token by token (Model.step), as bench/train_step.py's
# generate config (N = 1) and beam search or --num-samples in one batch (N = 8) sample
CONFIGS += [dict(name=f"generate lstm H=512 N={N}", cell="lstm", V=65, E=64, H=512, N=N, T=1,
                 gen=200) for N in (1, 8)]

CHILD = r"""
import json, sys, time
import numpy as np
try:                        # the layout since issue 21; a tree from before it: the except
    from rnnkit.backends.threads import set_threads
except ImportError:
    from rnnkit.threads import set_threads
cfgs, threads, min_time = json.loads(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
clock = time.process_time if sys.argv[4] == "cpu" else time.perf_counter
set_threads(threads)
try:
    from rnnkit.model.network import Model, ModelConfig
    from rnnkit.model.optim import clip_gradients, make_optimizer
except ImportError:
    from rnnkit.model import Model, ModelConfig
    from rnnkit.optim import clip_gradients, make_optimizer
out = {}
for c in cfgs:
    m = Model(ModelConfig(cell=c["cell"], vocab_size=c["V"], embed=c["E"], hidden=c["H"],
                          layers=2))
    rng = np.random.default_rng(0)
    x = rng.integers(0, c["V"], (c["N"], c["T"]))
    y = rng.integers(0, c["V"], (c["N"], c["T"]))
    opt = make_optimizer("adam", m.params)
    state = [m.init_state(c["N"])]
    if c.get("gen"):
        def step():
            tokens = np.zeros(c["N"], np.int64)
            for _ in range(c["gen"]):
                z = m.step(tokens, state[0])
                p = np.exp(z - z.max(axis=1, keepdims=True)).cumsum(axis=1)
                tokens[:] = (p < rng.random((c["N"], 1)) * p[:, -1:]).sum(axis=1)
    # as `rnnkit train` in one process, in a tree that skips the embedding's untouched rows
    sparse = hasattr(m, "sparse_embedding")
    m.sparse_embedding = True
    def train_step():
        _, state[0] = m.forward_backward(x, y, state[0])
        if sparse:
            clip_gradients(m.grads, max_norm=5.0, ranges=m.grad_ranges)
            opt.step(m.grads, m.grad_ranges)
        else:
            clip_gradients(m.grads, max_norm=5.0)
            opt.step(m.grads)
    if not c.get("gen"):
        step = train_step
    for _ in range(2):
        step()
    times, t0 = [], clock()
    while len(times) < 3 or clock() - t0 < min_time:
        t = clock()
        step()
        times.append(clock() - t)
    out[c["name"]] = c["N"] * c.get("gen", c["T"]) / float(np.median(times))
print(json.dumps(out))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trees", nargs="+", help="source trees (the first is the baseline)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--min-time", type=float, default=1.0, help="seconds per config")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="time steps by the wall clock or (one thread only) CPU time")
    ap.add_argument("--isa", choices=list(ISA_ENV), default="native",
                    help="instruction set for every tree (bench/train_step.py --isa)")
    ap.add_argument("--only", default="", help="configs whose name contains any of these "
                                               "comma-separated words")
    args = ap.parse_args()
    if args.clock == "cpu" and args.threads != 1:
        sys.exit("--clock cpu needs --threads 1")
    cfgs = [c for c in CONFIGS if not args.only or
            any(w in c["name"] for w in args.only.split(","))]
    trees = [os.path.abspath(t) for t in args.trees]
    env = isa_environ(args.isa)
    results = {t: [] for t in trees}
    for r in range(args.rounds):
        for tree in (trees if r % 2 == 0 else trees[::-1]):
            p = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cfgs), str(args.threads),
                                str(args.min_time), args.clock], env=dict(env, PYTHONPATH=tree),
                               capture_output=True, text=True, cwd=tree)
            if p.returncode:
                sys.exit(f"{tree}: {p.stderr.strip().splitlines()[-1:]}")
            results[tree].append(json.loads(p.stdout.strip().splitlines()[-1]))
        print(f"round {r + 1} of {args.rounds} done", file=sys.stderr, flush=True)
    print(f"isa={args.isa} threads={args.threads} rounds={args.rounds} clock={args.clock}: "
          f"tokens/s median "
          f"(min-max); "
          f"x median ratio to {args.trees[0]} per round [min-max]")
    for c in cfgs:
        name = c["name"]
        base = [x[name] for x in results[trees[0]]]
        line = f"{name:<16}"
        for tree in trees:
            v = [x[name] for x in results[tree]]
            line += f" | {statistics.median(v):>8.0f} ({min(v):.0f}-{max(v):.0f})"
            if tree != trees[0]:
                ratios = [a / b for a, b in zip(v, base)]
                line += (f" x{statistics.median(ratios):.3f} "
                         f"[{min(ratios):.3f}-{max(ratios):.3f}]")
        print(line)


if __name__ == "__main__":
    main()
