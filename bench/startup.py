"""Cold and warm start: seconds from launching `rnnkit train` to its first training step.

Each run is a fresh `rnnkit train` process on a small corpus (N=32, T=64, a 2x128 model,
float32), timed from launch until metrics.jsonl holds the first step. Cold: an empty kernel
cache folder (NUMBA_CACHE_DIR), so every kernel the step needs compiles; warm: the same folder
again, the usual case after the first run.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/startup.py --threads 2

--trees A B ...: source trees (git worktrees) compared in one run, each round running every
tree in turn from inside it (Python then imports that tree's rnnkit). --sampling S: also, per
cell, a cold run that trains for S seconds (time for the background compile workers to
finish), then the seconds of a first `rnnkit generate` from it. --generate: also the seconds
of a first `rnnkit generate` on an empty cache (from the cold run's checkpoint), as for a
checkpoint trained elsewhere. --comment-edit: also the first step after a comment is added to
a kernel helper that every cell calls (TREE/rnnkit/kernels/cpu/blocks.py, restored after),
on the warm cache: what the kernel cache's key (rnnkit/kernels/cache.py) makes an edit cost.
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


def rnnkit(tree, cache, *args, **kw):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "PYTHONPATH")}
    env["NUMBA_CACHE_DIR"] = cache
    return subprocess.Popen([sys.executable, "-m", "rnnkit", *map(str, args)], env=env,
                            cwd=tree, **kw)


def first_step(tree, corpus, run, cache, cell, threads):
    """Seconds from launch to the first training step's metrics line, and to the exit."""
    start = time.perf_counter()
    p = rnnkit(tree, cache, "train", corpus, "-o", run, "--cell", cell, "--hidden", 128,
               "--batch-size", 32, "--seq-len", 64, "--max-steps", 2, "--log-every", 1,
               "--threads", threads, "-q", stderr=subprocess.PIPE, text=True)
    metrics, seen = Path(run) / "metrics.jsonl", None
    while p.poll() is None:
        if seen is None and metrics.exists() and "train_loss" in metrics.read_text():
            seen = time.perf_counter() - start
        time.sleep(0.02)
    total = time.perf_counter() - start
    if p.returncode:
        sys.exit(p.stderr.read())
    return seen if seen is not None else total, total


EDITED = "rnnkit/kernels/cpu/blocks.py"


def after_comment_edit(tree, corpus, run, cache, cell, threads):
    """Seconds to the first step once a comment line is added to EDITED (then removed)."""
    path = Path(tree) / EDITED
    text = path.read_text()
    try:
        path.write_text(text + "# a comment added by bench/startup.py --comment-edit\n")
        return first_step(tree, corpus, run, cache, cell, threads)[0]
    finally:
        path.write_text(text)


def generate(tree, run, cache, threads):
    """Seconds of a `rnnkit generate` from the run's checkpoint."""
    start = time.perf_counter()
    rnnkit(tree, cache, "generate", Path(run) / "latest.h5", "--length", 200, "--prime",
           "line 1", "--threads", threads, stdout=subprocess.DEVNULL,
           stderr=subprocess.DEVNULL).wait()
    return time.perf_counter() - start


def sampling(tree, corpus, run, cache, cell, threads, seconds):
    """Seconds of a first `rnnkit generate` after a cold run of `seconds` of training."""
    rnnkit(tree, cache, "train", corpus, "-o", run, "--cell", cell, "--hidden", 128,
           "--batch-size", 32, "--seq-len", 64, "--max-time", f"{seconds}s", "--threads",
           threads, "-q", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).wait()
    return generate(tree, run, cache, threads)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--cells", default="lstm,gru,rnn-tanh")
    ap.add_argument("--trees", nargs="+", default=[str(Path(__file__).resolve().parents[1])])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--sampling", type=float, default=0, metavar="S")
    ap.add_argument("--generate", action="store_true")
    ap.add_argument("--comment-edit", action="store_true")
    args = ap.parse_args()
    # ignore_cleanup_errors: a killed compile worker may still be writing to a cache folder
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        (Path(tmp) / "t.txt").write_text(TEXT)
        corpus = str(Path(tmp) / "c.h5")
        rnnkit(args.trees[0], tmp, "preprocess", Path(tmp) / "t.txt", "-o", corpus, "-q").wait()
        head = f"{'cell':<10}{'cold first step s':>20}{'warm first step s':>20}{'cold exit s':>14}"
        print(("round  tree" + " " * 20 if args.rounds > 1 or len(args.trees) > 1 else "") +
              head + ("   generate after training s" if args.sampling else "") +
              ("   generate cold s" if args.generate else "") +
              ("   after a comment edit s" if args.comment_edit else ""))
        for r in range(args.rounds):
            for tree in args.trees:
                for cell in args.cells.split(","):
                    cache = tempfile.mkdtemp(dir=tmp)
                    cold, cold_total = first_step(tree, corpus, f"{cache}/c", cache, cell,
                                                  args.threads)
                    warm = min(first_step(tree, corpus, f"{cache}/w{i}", cache, cell,
                                          args.threads)[0] for i in range(2))
                    line = f"{cell:<10}{cold:>20.1f}{warm:>20.2f}{cold_total:>14.1f}"
                    if args.rounds > 1 or len(args.trees) > 1:
                        line = f"{r + 1:<7}{tree[-24:]:<24}" + line
                    if args.sampling:
                        gen = sampling(tree, corpus, f"{cache}/s", tempfile.mkdtemp(dir=tmp),
                                       cell, args.threads, args.sampling)
                        line += f"{gen:>29.1f}"
                    if args.generate:
                        gen = generate(tree, f"{cache}/c", tempfile.mkdtemp(dir=tmp),
                                       args.threads)
                        line += f"{gen:>19.1f}"
                    if args.comment_edit:
                        edit = after_comment_edit(tree, corpus, f"{cache}/e", cache, cell,
                                                  args.threads)
                        line += f"{edit:>26.1f}"
                    print(line, flush=True)


if __name__ == "__main__":
    main()
