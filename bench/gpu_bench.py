"""rnnkit's CUDA backend against PyTorch's cuDNN (nn.LSTM, nn.GRU, nn.RNN), side by side on one
GPU: training tokens/s and generation tokens/s (issue 19's targets, docs/cuda.md).

A training step on both sides: embedding, L layers, output projection, softmax cross-entropy,
backward, global-norm clipping at 5, Adam (PyTorch's defaults), and the loss read on the host
(rnnkit reads it with the gradient norm, one transfer a step; torch's `loss.item()`).
Generation: one token per step for N = 1 stream, sampled on the device, the token read back
each step (PyTorch: the usual step-by-step loop, multinomial then `.item()`).

Both sides run float32. PyTorch runs twice, in columns of their own: "torch fp32" with TF32 off
(cuDNN and cuBLAS in IEEE single precision, like for like with rnnkit's --precision fp32) and
"torch tf32" with TF32 allowed (cuDNN's and cuBLAS's tensor cores). The flags are global, so
each side sets its own right before its warm-up and before each of its timed rounds.

Each config warms up (compiling rnnkit's kernels), then alternates the sides ROUNDS times,
each round timing STEPS steps; the best round of each side is reported, with rnnkit's kernel
launches and host time per step (the step's wall time less the time the host waited for the
GPU in the readback) and the plan of each recurrence (P: persistent, S: a launch per step;
blocks x units per block; shared memory). A config that fails prints one line and the next
one runs. Results print as a table and as one JSON line per config, the GPU's name first.

    python bench/gpu_bench.py                       # on a GPU machine (bench/gpu_check.sh)
    python bench/gpu_bench.py --precision tf32      # rnnkit's products on tensor cores too
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
        from rnnkit.model.network import Model, ModelConfig
        from rnnkit.model.optim import make_optimizer
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
        from rnnkit.model.optim import clip_gradients
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
        self.torch, self.c, self.dev, self.tf32 = torch, c, device, tf32
        self.enter()
        torch.manual_seed(0)
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn-tanh": nn.RNN}[c["cell"]]
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

    def enter(self):
        """This side's math mode: the flags are process-wide, so set before its every run."""
        self.torch.backends.cudnn.allow_tf32 = self.tf32
        self.torch.backends.cuda.matmul.allow_tf32 = self.tf32

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

def run_side(side, c, steps, tokens):
    """(work done, seconds) of one round."""
    if hasattr(side, "enter"):
        side.enter()
    started = time.perf_counter()
    if c["kind"] == "train":
        for _ in range(steps):
            side.train_step()
        return steps * c["N"] * c["T"], time.perf_counter() - started
    side.generate(tokens)
    return tokens, time.perf_counter() - started


def best_rate(sides, c, steps, rounds, tokens, backend):
    """Alternate the sides ROUNDS times: tokens/s of each side's best round, and rnnkit's
    launches and host milliseconds per step (training) or token (generation) in that round."""
    best = {k: 0.0 for k in sides}
    host = {}
    for _ in range(rounds):
        for key, side in sides.items():
            before = backend.counters()
            work, seconds = run_side(side, c, steps, tokens)
            if work / seconds > best[key]:
                best[key] = work / seconds
                if key == "rnnkit":
                    n = steps if c["kind"] == "train" else tokens
                    launches, reads, waited = (a - b for a, b in zip(backend.counters(), before))
                    host = dict(launches=launches / n, readbacks=reads / n,
                                host_ms=1e3 * (seconds - waited) / n)
    return best, host


def paths(backend, c):
    """The plans of the recurrences this config ran, short: P(ersistent, c: cooperative) or
    S(teps), blocks x units, shared KB; forward then BPTT."""
    out = []
    for (name, H, N, _), p in backend.rec.plans().items():
        if H == c["H"] and N == c["N"] and name.startswith(c["cell"].split("-")[0]):
            kind = ("Pc" if p.cooperative else "P") if p.persistent else "S"
            out.append(f"{kind}{p.blocks}x{p.U} {p.shared // 1024}K")
    return " / ".join(out) or "-"


def gpu_name(torch, cuda_backend):
    if torch is not None and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return cuda_backend.gpu


def one_line(err):
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:160]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true",
                    help="tiny configs, two steps a round (the simulator, PyTorch on the CPU)")
    ap.add_argument("--steps", type=int, default=10, help="training steps per round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per side")
    ap.add_argument("--tokens", type=int, default=200, help="generated tokens per round")
    ap.add_argument("--no-torch", action="store_true", help="rnnkit's side only")
    ap.add_argument("--precision", choices=("fp32", "tf32"), default="fp32",
                    help="rnnkit's float32 products: IEEE fp32, or TF32 tensor cores")
    ap.add_argument("--only", default="", help="run only configs whose name contains this")
    ap.add_argument("--budget", type=float, default=0,
                    help="seconds after which no new config starts (0: no limit)")
    ap.add_argument("--table", default="",
                    help="also write the table (no JSON lines) to this file, line by line")
    args = ap.parse_args(argv)
    table = open(args.table, "w") if args.table else None

    def emit(line):
        """A line of output, and of --table's file unless it is a JSON line."""
        print(line, flush=True)
        if table is not None and not line.startswith("json "):
            print(line, file=table, flush=True)

    if args.dry_run:
        args.steps, args.rounds, args.tokens = 2, 2, 3

    from rnnkit.backends import get_backend
    backend = get_backend("cuda", precision=args.precision)
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
    emit(f"GPU: {gpu_name(torch, backend)}")
    emit(f"rnnkit backend: {backend.describe()}")
    emit(f"{torch_note}; Python {platform.python_version()}")
    emit(f"steps a round {args.steps}, rounds {args.rounds}, generated tokens {args.tokens}; "
          f"launches and host ms per step (generation: per token)")
    emit(f"{'config':36s} {'rnnkit':>9s} {'torch fp32':>10s} {'ratio':>5s} {'torch tf32':>10s} "
          f"{'ratio':>5s} {'launch':>6s} {'host ms':>7s}  recurrence (fwd / bwd)")
    started = time.perf_counter()
    for c in configs(args.dry_run):
        if args.only and args.only not in name(c):
            continue
        if args.budget and time.perf_counter() - started > args.budget:
            emit(f"{name(c):36s} not run: the time budget of {args.budget:g} s is spent")
            continue
        try:
            sides = {"rnnkit": Rnnkit(c, backend)}
            if torch is not None and not args.no_torch:
                sides["torch_fp32"] = Torch(c, device, tf32=False)
                sides["torch_tf32"] = Torch(c, device, tf32=True)
            for side in sides.values():                     # warm up: compile, allocate
                if hasattr(side, "enter"):
                    side.enter()
                side.train_step() if c["kind"] == "train" else side.generate(2)
            rate, host = best_rate(sides, c, args.steps, args.rounds, args.tokens, backend)
        except Exception as err:                    # noqa: BLE001  (one line, then the next)
            emit(f"{name(c):36s} failed: {one_line(err)}")
            emit("json " + json.dumps({"config": name(c), **c, "error": one_line(err)}))
            continue
        ratios = {k: rate["rnnkit"] / rate[k] if rate.get(k) else math.nan
                  for k in ("torch_fp32", "torch_tf32")}
        path = paths(backend, c)
        emit(f"{name(c):36s} {rate['rnnkit']:9.0f} {rate.get('torch_fp32', math.nan):10.0f} "
              f"{ratios['torch_fp32']:5.2f} {rate.get('torch_tf32', math.nan):10.0f} "
              f"{ratios['torch_tf32']:5.2f} {host.get('launches', math.nan):6.1f} "
              f"{host.get('host_ms', math.nan):7.2f}  {path}")
        emit("json " + json.dumps({"config": name(c), **c, "precision": args.precision,
                                     "tokens_per_s": rate, "ratio": ratios, **host,
                                     "recurrence": path}))
    emit(f"rnnkit backend after the runs: {backend.describe()}")
    if table is not None:
        table.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
