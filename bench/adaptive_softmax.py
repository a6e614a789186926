"""A large vocabulary: training tokens/s with the adaptive softmax against the full softmax,
and against PyTorch's AdaptiveLogSoftmaxWithLoss in the same model (issue 24).

The config: a 2x512 LSTM (E = H = 512), V = 100,000 word-level ids, N = 32 streams, T = 35
steps, cutoffs 2000,10000, div_value 4. The corpus is synthetic: ids drawn with
p(id) proportional to 1 / (id + 1), the Zipf law of word counts, which the word level's
numbering by count makes its ids follow (rnnkit/corpus/tokenize.py); about 67% of the targets then
fall in the head, 13% in the first tail cluster and 20% in the second, as in English text.
A step: forward, backward, global-norm clipping at 0.25, SGD with lr 20 (PyTorch's
word_language_model's training). PyTorch's side is the same model: nn.Embedding, nn.LSTM,
nn.AdaptiveLogSoftmaxWithLoss, clip_grad_norm_, optim.SGD; `torch` with its defaults,
`torch*` with glibc's malloc thresholds raised (its large gradient buffers then stay mapped,
the best of what bench/train_step.py tries).

Each round runs every side in a fresh process, in alternating order, so the machine's drift
falls on all alike; a process warms up (compiles) for two steps, then times steps for
--min-time seconds (at least three) and reports its median step. The table gives each side's
best round and the ratios the issue asks for (>= 4x the full softmax, >= 1.5x torch*).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/adaptive_softmax.py --threads 2
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np

V, E, H, L, N, T = 100_000, 512, 512, 2, 32, 35
CUTOFFS, DIV, CLIP, LR = (2000, 10000), 4.0, 0.25, 20.0
BEST_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}
SIDES = ("rnnkit", "full", "torch", "torch*")
# also: "dense", rnnkit's adaptive model zeroing, clipping and updating every gradient number
# (as a run over MPI does), where `rnnkit` skips the embedding rows a step leaves at zero


def corpus(steps=20, seed=0):
    """(N, steps T + 1) Zipfian ids: p(id) ~ 1 / (id + 1)."""
    cdf = np.cumsum(1.0 / np.arange(1, V + 1))
    cdf /= cdf[-1]
    u = np.random.default_rng(seed).random((N, steps * T + 1))
    return np.minimum(np.searchsorted(cdf, u), V - 1)


def shares(data):
    """Fraction of targets in the head and in each tail cluster."""
    edges = (0,) + CUTOFFS + (V,)
    return [float(np.mean((data >= a) & (data < b))) for a, b in zip(edges, edges[1:])]


def rnnkit_step(softmax, threads, sparse=True):
    from rnnkit.backends.threads import set_threads
    set_threads(threads)
    from rnnkit.model.network import Model, ModelConfig
    from rnnkit.model.optim import clip_gradients, make_optimizer

    kw = dict(softmax="adaptive", cutoffs=",".join(map(str, CUTOFFS)), div_value=DIV) \
        if softmax == "adaptive" else {}
    model = Model(ModelConfig(cell="lstm", vocab_size=V, embed=E, hidden=H, layers=L, **kw))
    model.sparse_embedding = sparse         # as `rnnkit train` in one process
    opt = make_optimizer("sgd", model.params, lr=LR)
    data, state = corpus(), [model.init_state(N)]

    def step(j):
        x, y = data[:, j * T:(j + 1) * T], data[:, j * T + 1:(j + 1) * T + 1]
        _, state[0] = model.forward_backward(x, y, state[0])
        clip_gradients(model.grads, max_norm=CLIP, ranges=model.grad_ranges)
        opt.step(model.grads, model.grad_ranges)
    return step


def torch_step(threads):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    data = torch.from_numpy(corpus().T.copy())                  # (steps T + 1, N)
    emb, rnn = torch.nn.Embedding(V, E), torch.nn.LSTM(E, H, L)
    out = torch.nn.AdaptiveLogSoftmaxWithLoss(H, V, list(CUTOFFS), div_value=DIV)
    params = [*emb.parameters(), *rnn.parameters(), *out.parameters()]
    opt = torch.optim.SGD(params, lr=LR)
    hidden = [None]

    def step(j):
        x, y = data[j * T:(j + 1) * T], data[j * T + 1:(j + 1) * T + 1]
        opt.zero_grad()
        h = None if hidden[0] is None else tuple(t.detach() for t in hidden[0])
        o, hidden[0] = rnn(emb(x), h)
        out(o.reshape(-1, H), y.reshape(-1)).loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
    return step


def worker(side, threads, min_time):
    step = torch_step(threads) if side.startswith("torch") else \
        rnnkit_step("full" if side == "full" else "adaptive", threads, side != "dense")
    for j in range(2):
        step(j)
    times, began, j = [], time.perf_counter(), 2
    while len(times) < 3 or time.perf_counter() - began < min_time:
        t = time.perf_counter()
        step(j % 20)
        times.append(time.perf_counter() - t)
        j += 1
    return N * T / float(np.median(times))


def child(side, args):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env.update(BEST_ENV if side == "torch*" else {})
    cmd = [sys.executable, __file__, "--worker", side, "--threads", str(args.threads),
           "--min-time", str(args.min_time)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"{side}: {res.stderr.strip().splitlines()[-1:]}")
    return float(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=10.0, help="seconds timed per process")
    ap.add_argument("--sides", default=",".join(SIDES),
                    help=f"comma-separated, of {', '.join(SIDES)}, dense")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(worker(args.worker, args.threads, args.min_time))
        return
    sides = [s for s in args.sides.split(",") if s]
    print(f"V={V:,} E={E} H={H} L={L} N={N} T={T}, cutoffs {CUTOFFS}, div_value {DIV:g}; "
          f"targets in head / tail 0 / tail 1: "
          f"{' / '.join(f'{s:.1%}' for s in shares(corpus()[:, 1:]))}", flush=True)
    rounds = {s: [] for s in sides}
    for r in range(args.rounds):
        for side in (sides if r % 2 == 0 else sides[::-1]):
            rounds[side].append(child(side, args))
        print(f"round {r + 1}: " + ", ".join(f"{s} {rounds[s][-1]:.0f}" for s in sides),
              flush=True)
    best = {s: max(v) for s, v in rounds.items()}
    print(f"threads={args.threads}; tokens/s, best of {args.rounds} rounds (min-max)")
    for s in sides:
        print(f"{s:<8}{best[s]:>9.0f}   ({min(rounds[s]):.0f}-{max(rounds[s]):.0f})")
    if "rnnkit" in best:
        for other, want in (("full", 4.0), ("dense", None), ("torch", None), ("torch*", 1.5)):
            if other in best:
                print(f"rnnkit adaptive / {other}: {best['rnnkit'] / best[other]:.2f}x"
                      f"{f' (issue 24 asks >= {want:g}x)' if want else ''}")


if __name__ == "__main__":
    main()
