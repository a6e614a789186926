"""rnnkit and PyTorch on a busy machine: tokens/s alone, beside busy loops, and two at once.

Each measurement is a fresh process: `rnnkit train` (default threads, then --threads 1) on a
character corpus for --seconds, its speed read from metrics.jsonl; `rnnkit eval` of the
trained checkpoint over the corpus; and the same model trained and evaluated in PyTorch (its
default threads, then one), all under the same load: none, one busy loop (`while True: pass`
in its own process), two busy loops, and, for rnnkit, a second `rnnkit train` beside it.

Targets (issue 10): with one busy loop, rnnkit at default settings keeps >= 0.5x its solo
tokens/s and is never slower than --threads 1; with two, never more than 1.5x slower than
--threads 1; two rnnkit runs side by side each keep >= 0.4x their solo speed.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/under_load.py
    python bench/under_load.py --seconds 10 --no-torch        # quicker, rnnkit only
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL = dict(hidden=256, embed=64, layers=2, batch=32, seq=64)
BUSY = "while True: pass"

TORCH_CHILD = r"""
import json, sys, time, torch, torch.nn.functional as F
mode, threads, seconds, V = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
H, E, L, N, T = (int(a) for a in sys.argv[5:10])
if threads:
    torch.set_num_threads(threads)
torch.manual_seed(0)
emb, net, out = torch.nn.Embedding(V, E), torch.nn.LSTM(E, H, L), torch.nn.Linear(H, V)
params = list(emb.parameters()) + list(net.parameters()) + list(out.parameters())
opt = torch.optim.Adam(params, lr=2e-3)
x, y = torch.randint(0, V, (T, N)), torch.randint(0, V, (T, N))
hidden = None

def step():
    global hidden
    if mode == "eval":
        with torch.no_grad():
            o, hidden = net(emb(x), hidden)
            F.cross_entropy(out(o).view(-1, V), y.view(-1)).item()
        return
    opt.zero_grad()
    h = None if hidden is None else tuple(t.detach() for t in hidden)
    o, hidden = net(emb(x), h)
    loss = F.cross_entropy(out(o).view(-1, V), y.view(-1))
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 5.0)
    opt.step()

step(); step()
start, n = time.perf_counter(), 0
while time.perf_counter() - start < seconds:
    step()
    n += 1
print(json.dumps(N * T * n / (time.perf_counter() - start)))
"""


def rnnkit(*args):
    return [sys.executable, "-m", "rnnkit", *map(str, args)]


def quiet_env():
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Load:
    """`count` busy loops in their own processes while the block runs."""

    def __init__(self, count):
        self.count, self.procs = count, []

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(self.count)]
        time.sleep(0.3)
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
            p.wait()


def train_cmd(corpus, out, seconds, threads):
    m = MODEL
    return rnnkit("train", corpus, "-o", out, "--hidden", m["hidden"], "--embed", m["embed"],
                  "--layers", m["layers"], "--batch-size", m["batch"], "--seq-len", m["seq"],
                  "--max-time", f"{seconds}s", "--log-every", 5, "--quiet",
                  *(["--threads", threads] if threads else []))


def train_rate(run_dir):
    """Mean tokens/s over metrics.jsonl's training lines, the first two left out (compiling,
    the governor's first look)."""
    lines = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    rates = [x["tokens_per_s"] for x in lines if "tokens_per_s" in x][2:]
    return sum(rates) / len(rates) if rates else float("nan")


def measure_train(corpus, work, seconds, threads, load, side_by_side=False):
    runs = [work / f"t{i}" for i in range(2 if side_by_side else 1)]
    for r in runs:
        shutil.rmtree(r, ignore_errors=True)
    with Load(load):
        procs = [subprocess.Popen(train_cmd(corpus, r, seconds, threads), env=quiet_env(),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for r in runs]
        for p in procs:
            _, err = p.communicate()
            if p.returncode:
                sys.exit(f"rnnkit train failed: {err.strip().splitlines()[-1]}")
    return [train_rate(r) for r in runs]


def measure_eval(checkpoint, corpus, threads, load):
    with Load(load):
        res = subprocess.run(rnnkit("eval", checkpoint, corpus, "--split", "train",
                                    "--batch-size", MODEL["batch"],
                                    *(["--threads", threads] if threads else [])),
                             env=quiet_env(), capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"rnnkit eval failed: {res.stderr.strip()}")
    fields = dict(line.split(" ", 1) for line in res.stdout.splitlines())
    return float(fields["tokens_per_s"])


def measure_torch(mode, threads, seconds, load, vocab):
    m = MODEL
    with Load(load):
        res = subprocess.run([sys.executable, "-c", TORCH_CHILD, mode, str(threads), str(seconds),
                              str(vocab), str(m["hidden"]), str(m["embed"]), str(m["layers"]),
                              str(m["batch"]), str(m["seq"])], env=quiet_env(),
                             capture_output=True, text=True)
    if res.returncode:
        sys.exit(f"PyTorch child failed: {res.stderr.strip().splitlines()[-1]}")
    return float(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", default=str(HERE.parent.parent / "shared" / "corpora" /
                                            "tinyshakespeare.txt"),
                    help="text to train on (default: ../shared/corpora/tinyshakespeare.txt)")
    ap.add_argument("--seconds", type=float, default=20.0, help="per training measurement")
    ap.add_argument("--no-torch", action="store_true")
    args = ap.parse_args()
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        if var in os.environ:
            print(f"note: {var} is unset for every child here")
    work = Path(tempfile.mkdtemp(prefix="rnnkit-load-"))
    try:
        corpus = work / "corpus.h5"
        subprocess.run(rnnkit("preprocess", args.corpus, "-o", corpus, "--val-frac", 0,
                              "--test-frac", 0, "-q"), env=quiet_env(), check=True)
        # a checkpoint to evaluate, and the kernel cache warmed for both thread counts: by
        # steps, not seconds (a cold cache compiled into the first measurement: with a new
        # target's build, "solo" ran at half speed), then an eval each
        for threads in (0, 1):
            subprocess.run(train_cmd(corpus, work / f"ck{threads}", 600, threads) +
                           ["--max-steps", "10"], env=quiet_env(), check=True,
                           stderr=subprocess.DEVNULL)
        checkpoint = work / "ck0" / "latest.h5"
        for threads in (0, 1):
            measure_eval(checkpoint, corpus, threads, 0)
        import h5py
        with h5py.File(corpus, "r") as f:
            vocab = f["vocab"].shape[0]
        cores = len(os.sched_getaffinity(0))
        print(f"LSTM {MODEL['layers']}x{MODEL['hidden']}, N={MODEL['batch']}, "
              f"T={MODEL['seq']}, V={vocab}; {cores} cores; train {args.seconds:g} s each; "
              f"tokens/s", flush=True)
        rows = {}
        for load in (0, 1, 2):
            row = rows[load] = {}
            row["train"] = measure_train(corpus, work, args.seconds, 0, load)[0]
            row["train t1"] = measure_train(corpus, work, args.seconds, 1, load)[0]
            row["eval"] = measure_eval(checkpoint, corpus, 0, load)
            row["eval t1"] = measure_eval(checkpoint, corpus, 1, load)
            if not args.no_torch:
                row["torch train"] = measure_torch("train", 0, args.seconds, load, vocab)
                row["torch train t1"] = measure_torch("train", 1, args.seconds, load, vocab)
                row["torch eval"] = measure_torch("eval", 0, args.seconds / 2, load, vocab)
                row["torch eval t1"] = measure_torch("eval", 1, args.seconds / 2, load, vocab)
            print(f"busy loops {load}: " + ", ".join(f"{k} {v:,.0f}" for k, v in row.items()),
                  flush=True)
        pair = measure_train(corpus, work, args.seconds, 0, 0, side_by_side=True)
        print(f"two rnnkit trains side by side: {pair[0]:,.0f} and {pair[1]:,.0f}", flush=True)

        print()
        cols = list(rows[0])
        print(f"{'':<14}" + "".join(f"{c:>16}" for c in cols))
        for load in (0, 1, 2):
            print(f"{f'busy loops {load}':<14}" + "".join(f"{rows[load][c]:>16,.0f}" for c in cols))
        print()
        checks = []
        for what in ("train", "eval"):
            solo, one, two = rows[0][what], rows[1][what], rows[2][what]
            checks += [
                (f"{what}, 1 busy loop: x solo", one / solo, 0.5),
                (f"{what}, 1 busy loop: x --threads 1", one / rows[1][f"{what} t1"], 1.0),
                (f"{what}, 2 busy loops: x --threads 1", two / rows[2][f"{what} t1"], 1 / 1.5),
            ]
        for i, rate in enumerate(pair):
            checks.append((f"side by side, run {i + 1}: x solo", rate / rows[0]["train"], 0.4))
        for name, value, target in checks:
            mark = "ok" if value >= target else ("close" if value >= 0.95 * target else "MISSED")
            print(f"{name:<38}{value:>7.2f}   target >= {target:.2f}   {mark}")
        if not args.no_torch:
            for load in (0, 1, 2):
                r = rows[load]
                print(f"busy loops {load}: rnnkit / PyTorch (each at its default threads): "
                      f"train {r['train'] / r['torch train']:.2f}, "
                      f"eval {r['eval'] / r['torch eval']:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
