"""rnnkit's CUDA backend against PyTorch's cuDNN (nn.LSTM, nn.GRU, nn.RNN), side by side on one
GPU: training tokens/s and generation tokens/s (issue 12's targets, docs/cuda.md).

A training step on both sides: embedding, L layers, output projection, softmax cross-entropy,
backward, global-norm clipping at 5, Adam (PyTorch's defaults), and the loss read on the host
(rnnkit reads it every step; torch's `loss.item()` does the same). Generation: one token per
step for N = 1 stream, sampled on the device, the token read back each step (PyTorch: the
usual step-by-step loop, multinomial then `.item()`). Both sides run float32; PyTorch runs with
TF32 off (the FP32 arithmetic rnnkit's kernels do) and, for the LSTM char configs, also with
its default (cuDNN may use TF32 tensor cores), in its own column.

Each config warms up (compiling rnnkit's kernels), then alternates the two sides ROUNDS times,
each round timing STEPS steps; the best round of each side is reported. Results print as a
table and as one JSON line per config, with the GPU's name first.

    python bench/gpu_bench.py                       # on a GPU machine (bench/gpu_check.sh)
    NUMBA_ENABLE_CUDASIM=1 python bench/gpu_bench.py --dry-run    # tiny configs, no GPU
"""
import argparse
import json
import math
import platform
import sys
import time

import numpy as np

CHAR = dict(V=65, E=64, L=2, H=512, T=64)
WORD = dict(V=10000, E=650, L=2, H=650, T=35)
CHAR_N = (1, 4, 16, 64, 128)


def configs(dry):
    if dry:
        tiny = dict(V=11, E=4, L=2, H=8, T=4)
        return ([dict(kind="train", cell="lstm", N=n, **tiny) for n in (1, 2)] +
                [dict(kind="train", cell="gru", N=2, **tiny),
                 dict(kind="generate", cell="lstm", N=1, **tiny)])
    # the targets first (a run cut short by --budget still has them)
    out = [dict(kind="train", cell="lstm", N=n, **CHAR) for n in CHAR_N]
    out.append(dict(kind="train", cell="lstm", N=20, **WORD))
    out += [dict(kind="generate", cell="lstm", N=1, **CHAR),
            dict(kind="generate", cell="lstm", N=1, **WORD)]
    out += [dict(kind="train", cell=c, N=n, **CHAR) for c in ("gru", "rnn-tanh")
            for n in CHAR_N]
    out += [dict(kind="generate", cell=c, N=1, **CHAR) for c in ("gru", "rnn-tanh")]
    return out


def name(c):
    level = "word" if c["V"] > 1000 else "char"
    return f"{c['kind']} {level} {c['cell']} {c['L']}x{c['H']} N={c['N']}"


# -- rnnkit --------------------------------------------------------------------------------

class Rnnkit:
    def __init__(self, c, backend):
        from rnnkit.model import Model, ModelConfig
        from rnnkit.optim import make_optimizer
        cfg = ModelConfig(cell=c["cell"], vocab_size=c["V"], embed=c["E"], hidden=c["H"],
                          layers=c["L"])
        self.b, self.c = backend, c
        self.model = Model(cfg, dtype=np.float32, seed=0, backend=backend)
        self.opt = make_optimizer("adam", self.model.params, backend, lr=2e-3)
        rng = np.random.default_rng(0)
        self.x = rng.integers(0, c["V"], (c["N"], c["T"]))
        self.y = rng.integers(0, c["V"], (c["N"], c["T"]))
        self.state = self.model.init_state(c["N"])
        self.rng = backend.rng(0)

    def train_step(self):
        from rnnkit.optim import clip_gradients
        loss, self.state = self.model.forward_backward(self.x, self.y, self.state)
        clip_gradients(self.model.grads, 5.0, backend=self.b)
        self.opt.step(self.model.grads)
        return loss

    def generate(self, tokens):
        state, token = self.model.init_state(1), 0
        for _ in range(tokens):
            logits = self.model.step(np.array([token]), state)
            token = int(self.b.sample(logits, self.rng)[0])
        return token


# -- PyTorch -------------------------------------------------------------------------------

class Torch:
    def __init__(self, c, device, tf32):
        import torch
        from torch import nn
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.manual_seed(0)
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn-tanh": nn.RNN}[c["cell"]]
        self.torch, self.c, self.dev = torch, c, device
        self.emb = nn.Embedding(c["V"], c["E"]).to(device)
        self.rnn = rnn(c["E"], c["H"], c["L"], batch_first=True).to(device)
        self.out = nn.Linear(c["H"], c["V"]).to(device)
        self.params = [*self.emb.parameters(), *self.rnn.parameters(),
                       *self.out.parameters()]
        self.opt = torch.optim.Adam(self.params, lr=2e-3)
        g = torch.Generator().manual_seed(0)
        self.x = torch.randint(0, c["V"], (c["N"], c["T"]), generator=g).to(device)
        self.y = torch.randint(0, c["V"], (c["N"], c["T"]), generator=g).to(device)
        self.state = None

    def train_step(self):
        torch = self.torch
        state = None if self.state is None else (
            tuple(s.detach() for s in self.state) if isinstance(self.state, tuple)
            else self.state.detach())
        out, self.state = self.rnn(self.emb(self.x), state)
        loss = torch.nn.functional.cross_entropy(self.out(out).reshape(-1, self.c["V"]),
                                                 self.y.reshape(-1))
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 5.0)
        self.opt.step()
        return loss.item()

    def generate(self, tokens):
        torch = self.torch
        token, state = torch.zeros((1, 1), dtype=torch.long, device=self.dev), None
        with torch.no_grad():
            for _ in range(tokens):
                out, state = self.rnn(self.emb(token), state)
                p = torch.softmax(self.out(out[:, -1]), dim=-1)
                token = torch.multinomial(p, 1)
                value = token.item()
        return value


# -- timing --------------------------------------------------------------------------------

def best_rate(sides, c, steps, rounds, tokens):
    """Alternate the sides ROUNDS times; tokens/s of each side's best round."""
    best = {k: 0.0 for k in sides}
    for _ in range(rounds):
        for key, side in sides.items():
            if side is None:
                continue
            started = time.perf_counter()
            if c["kind"] == "train":
                for _ in range(steps):
                    side.train_step()
                work = steps * c["N"] * c["T"]
            else:
                side.generate(tokens)
                work = tokens
            best[key] = max(best[key], work / (time.perf_counter() - started))
    return best


def gpu_name(torch, cuda_backend):
    if torch is not None and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return cuda_backend.gpu


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true",
                    help="tiny configs, two steps a round (the simulator, PyTorch on the CPU)")
    ap.add_argument("--steps", type=int, default=10, help="training steps per round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per side")
    ap.add_argument("--tokens", type=int, default=200, help="generated tokens per round")
    ap.add_argument("--no-torch", action="store_true", help="rnnkit's side only")
    ap.add_argument("--budget", type=float, default=0,
                    help="seconds after which no new config starts (0: no limit)")
    args = ap.parse_args(argv)
    if args.dry_run:
        args.steps, args.rounds, args.tokens = 2, 2, 3

    from rnnkit.backends import get_backend
    backend = get_backend("cuda")
    if backend.simulator:
        sys.setswitchinterval(5e-5)     # the simulator's barriers wait for thread switches
    try:
        import torch
    except ImportError:
        torch = None
    device = "cuda" if torch is not None and torch.cuda.is_available() else "cpu"
    if torch is None or args.no_torch:
        torch_note = "PyTorch: not run"
    else:
        torch_note = (f"PyTorch {torch.__version__} on {device}, cuDNN "
                      f"{torch.backends.cudnn.version() if device == 'cuda' else '-'}")
    print(f"GPU: {gpu_name(torch, backend)}")
    print(f"rnnkit backend: {backend.describe()}")
    print(f"{torch_note}; Python {platform.python_version()}")
    print(f"steps a round {args.steps}, rounds {args.rounds}, generated tokens {args.tokens}")
    print(f"{'config':42s} {'rnnkit tok/s':>13s} {'torch fp32':>12s} {'ratio':>6s} "
          f"{'torch tf32':>11s}")
    started = time.perf_counter()
    for c in configs(args.dry_run):
        if args.budget and time.perf_counter() - started > args.budget:
            print(f"{name(c):42s} not run: the time budget of {args.budget:g} s is spent")
            continue
        sides = {"rnnkit": Rnnkit(c, backend)}
        if torch is not None and not args.no_torch:
            sides["torch_fp32"] = Torch(c, device, tf32=False)
            if c["cell"] == "lstm" and c["V"] < 1000 and c["kind"] == "train":
                sides["torch_tf32"] = Torch(c, device, tf32=True)
        for side in sides.values():                     # warm up: compile, allocate
            side.train_step() if c["kind"] == "train" else side.generate(2)
        rate = best_rate(sides, c, args.steps, args.rounds, args.tokens)
        ratio = rate["rnnkit"] / rate["torch_fp32"] if rate.get("torch_fp32") else math.nan
        tf32 = f"{rate['torch_tf32']:11.0f}" if rate.get("torch_tf32") else f"{'-':>11s}"
        print(f"{name(c):42s} {rate['rnnkit']:13.0f} {rate.get('torch_fp32', math.nan):12.0f} "
              f"{ratio:6.2f} {tf32}")
        print("json " + json.dumps({"config": name(c), **c, "tokens_per_s": rate,
                                     "ratio_fp32": ratio}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
