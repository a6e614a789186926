"""Cold and warm start: seconds from launching `rnnkit train` to its first training step.

Each run is a fresh `rnnkit train` process on a small corpus (N=32, T=64, a 2x128 model,
float32), timed from launch until metrics.jsonl holds the first step. Cold: an empty kernel
cache folder (NUMBA_CACHE_DIR), so every kernel the step needs compiles; warm: the same folder
again, the usual case after the first run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/startup.py --threads 2
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEXT = "".join(f"line {i}: the quick brown fox {'jumps' if i % 3 else 'naps'} over it.\n"
               for i in range(3000))


def first_step(corpus, run, cache, cell, threads):
    """Seconds from launch to the first training step's metrics line, and to the exit."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env["NUMBA_CACHE_DIR"] = cache
    cmd = [sys.executable, "-m", "rnnkit", "train", corpus, "-o", run, "--cell", cell,
           "--hidden", "128", "--batch-size", "32", "--seq-len", "64", "--max-steps", "2",
           "--log-every", "1", "--threads", str(threads), "-q"]
    start = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    metrics, seen = Path(run) / "metrics.jsonl", None
    while p.poll() is None:
        if seen is None and metrics.exists() and "train_loss" in metrics.read_text():
            seen = time.perf_counter() - start
        time.sleep(0.02)
    total = time.perf_counter() - start
    if p.returncode:
        sys.exit(p.stderr.read())
    if seen is None:
        seen = total
    return seen, total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--cells", default="lstm,gru,rnn-tanh")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "t.txt").write_text(TEXT)
        corpus = str(Path(tmp) / "c.h5")
        subprocess.run([sys.executable, "-m", "rnnkit", "preprocess", str(Path(tmp) / "t.txt"),
                        "-o", corpus, "-q"], check=True)
        print(f"{'cell':<10}{'cold first step s':>20}{'warm first step s':>20}{'cold exit s':>14}")
        for cell in args.cells.split(","):
            cache = tempfile.mkdtemp(dir=tmp)
            cold, cold_total = first_step(corpus, f"{tmp}/{cell}-c", cache, cell, args.threads)
            warm = min(first_step(corpus, f"{tmp}/{cell}-w{i}", cache, cell, args.threads)[0]
                       for i in range(2))
            print(f"{cell:<10}{cold:>20.1f}{warm:>20.2f}{cold_total:>14.1f}", flush=True)


if __name__ == "__main__":
    main()
