"""Where a training step's time goes: the backend calls of rnnkit's step, timed one by one.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/step_phases.py --threads 2      # word level
    python bench/step_phases.py -V 65 -E 64 -H 512 -N 64 -T 64                           # char level

Each backend method the step calls (the output layer's products and loss, the cells'
forward and backward, the embedding, dropout, zeroing) and the clipping and optimizer update
are wrapped in a timer; the step is bench/train_step.py's (Adam, clip 5, L=2). Prints the
step's milliseconds and tokens/s, then each part's milliseconds and share. The timers add a
few microseconds a call: compare parts, not the total, with bench/train_step.py.
"""
import argparse
import collections
import time

import numpy as np

WRAPPED = ["linear_forward", "linear_backward", "softmax_xent", "cell_forward", "cell_backward",
           "embed_forward", "embed_backward", "dropout", "fill", "mul", "ids"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("-V", type=int, default=10000)
    ap.add_argument("-E", type=int, default=200)
    ap.add_argument("-H", type=int, default=200)
    ap.add_argument("-L", type=int, default=2)
    ap.add_argument("-N", type=int, default=20)
    ap.add_argument("-T", type=int, default=35)
    ap.add_argument("--steps", type=int, default=40)
    args = ap.parse_args()

    from rnnkit.backends import threads
    threads.set_threads(args.threads, adaptive=False)
    from rnnkit.model.network import Model, ModelConfig
    from rnnkit.model.optim import clip_gradients, make_optimizer

    model = Model(ModelConfig(cell=args.cell, vocab_size=args.V, embed=args.E, hidden=args.H,
                              layers=args.L))
    spent = collections.defaultdict(float)

    def timed(name, fn):
        def run(*a, **k):
            t = time.perf_counter()
            out = fn(*a, **k)
            spent[name] += time.perf_counter() - t
            return out
        return run

    b = model.backend
    for name in WRAPPED:
        setattr(b, name, timed(name, getattr(b, name)))
    clip = timed("clip", clip_gradients)
    opt = make_optimizer("adam", model.params)
    opt.step = timed("optimizer", opt.step)
    rng = np.random.default_rng(0)
    N, T = args.N, args.T
    x, y = rng.integers(0, args.V, (N, T)), rng.integers(0, args.V, (N, T))
    state = [model.init_state(N)]
    model.sparse_embedding = True       # as `rnnkit train` in one process

    def step():
        _, state[0] = model.forward_backward(x, y, state[0])
        clip(model.grads, max_norm=5.0, ranges=model.grad_ranges)
        opt.step(model.grads, model.grad_ranges)

    for _ in range(5):
        step()
    spent.clear()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    total = (time.perf_counter() - start) / args.steps
    print(f"{args.cell} {args.L}x{args.H} V={args.V} N={N} T={T}, {args.threads} threads: "
          f"step {total * 1e3:.1f} ms, {N * T / total:,.0f} tokens/s")
    for name, s in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<16}{s / args.steps * 1e3:8.2f} ms  {s / args.steps / total:6.1%}")
    print(f"  {'(the rest)':<16}{(total - sum(spent.values()) / args.steps) * 1e3:8.2f} ms")


if __name__ == "__main__":
    main()
