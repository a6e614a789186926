"""Throughput and memory of `rnnkit preprocess`, against torch-rnn's scripts/preprocess.py loop.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        .venv/bin/python bench/preprocess.py ../shared/corpora/tinyshakespeare.txt

Repeats the given text to --size-mb (default 200 MB) in a temporary folder and times
`rnnkit preprocess` on it at char, byte and word level, and at char level on a non-ASCII variant
(each run a fresh process; best and median of --repeat, after a warm-up run). Times torch-rnn's
approach (a Python loop over characters filling numpy arrays, reimplemented below) on a
--torch-mb slice, and measures the peak RSS of a char-level run on a --big-mb (default 1 GiB)
input. MB means 10**6 bytes of input.

--trees A B compares source trees instead (git worktrees, the first the baseline):

    git worktree add ../pre-9ca7e1c 9ca7e1c^
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/preprocess.py \
        --trees ../pre-9ca7e1c . --rounds 10

After a warm-up run of each, every round runs each tree's `rnnkit preprocess` (char level) on
the --size-mb input once, in a fresh process, the order alternating from round to round so
that the machine's drift falls on all alike. The table gives each tree's seconds and peak RSS
over the rounds, and each round's throughput relative to the first tree.
"""
import argparse
import codecs
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def torch_rnn_preprocess(input_txt, output_h5, val_frac=0.1, test_frac=0.1, encoding="utf-8"):
    """torch-rnn's scripts/preprocess.py (character level), same algorithm and data structures:
    a first pass over lines and characters builds a dict of 1-based ids, a second one stores each
    id into preallocated numpy arrays one character at a time; then h5py and a JSON vocabulary."""
    import h5py

    token_to_idx = {}
    total_size = 0
    with codecs.open(input_txt, "r", encoding) as f:
        for line in f:
            total_size += len(line)
            for char in line:
                if char not in token_to_idx:
                    token_to_idx[char] = len(token_to_idx) + 1
    val_size = int(val_frac * total_size)
    test_size = int(test_frac * total_size)
    train_size = total_size - val_size - test_size
    dtype = np.uint8 if len(token_to_idx) <= 255 else np.uint32
    splits = [np.zeros(train_size, dtype), np.zeros(val_size, dtype), np.zeros(test_size, dtype)]
    split_idx, cur_idx = 0, 0
    with codecs.open(input_txt, "r", encoding) as f:
        for line in f:
            for char in line:
                splits[split_idx][cur_idx] = token_to_idx[char]
                cur_idx += 1
                if cur_idx == splits[split_idx].size:
                    split_idx += 1
                    cur_idx = 0
    with h5py.File(output_h5, "w") as f:
        for name, data in zip(("train", "val", "test"), splits):
            f.create_dataset(name, data=data)
    with open(output_h5 + ".json", "w") as f:
        json.dump({"token_to_idx": token_to_idx,
                   "idx_to_token": {v: k for k, v in token_to_idx.items()}}, f)


# `rnnkit` of the source tree argv[1]: its rnnkit package and its cli/ folder as rnnkit.cli
# (an editable install maps rnnkit.cli to its own tree's cli/, whatever sys.path says)
TREE_CHILD = r"""
import importlib.util, os, sys
tree = sys.argv.pop(1)
sys.path.insert(0, tree)
spec = importlib.util.spec_from_file_location(
    "rnnkit.cli", os.path.join(tree, "cli", "__init__.py"),
    submodule_search_locations=[os.path.join(tree, "cli")])
sys.modules["rnnkit.cli"] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(sys.modules["rnnkit.cli"])
import rnnkit
from rnnkit.cli.main import main
assert os.path.samefile(os.path.dirname(rnnkit.__file__), os.path.join(tree, "rnnkit"))
main(sys.argv[1:], prog_name="rnnkit")
"""


def run(args):
    """Run a command; return (seconds, peak RSS in MB) of that child alone."""
    return measure(args)[:2]


def measure(args, env=None, cwd=None):
    """Run a command; return (seconds, peak RSS in MB, CPU seconds) of that child alone."""
    started = time.perf_counter()
    child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                             cwd=cwd)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    err = child.stderr.read().decode()
    if child.returncode:
        sys.exit(f"failed: {' '.join(args)}\n{err}")
    return seconds, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime  # maxrss in KiB


def repeat_to(source, path, size, accents=False):
    data = open(source, "rb").read()
    if accents:  # a variant where most 8 MB blocks are not ASCII, for the slower char path
        data = data.decode("utf-8").replace("e", "é").replace("a", "日").encode("utf-8")
    with open(path, "wb") as f:
        written = 0
        while written < size:
            f.write(data)
            written += len(data)
    return os.path.getsize(path)


def preprocess_command(input_path, output, level):
    return [sys.executable, "-m", "rnnkit", "preprocess", input_path, "-o", output,
            "--level", level, "--force", "--quiet"]


def compare_trees(trees, small, text, size, out, rounds):
    """The --trees table: each tree's char-level preprocess of `text`, alternating, after a
    warm-up on `small`."""
    # bytecode written and used as after an install, whatever this shell says
    env = {k: v for k, v in os.environ.items() if k not in (
        "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}

    def one(tree, path=text):
        return measure([sys.executable, "-c", TREE_CHILD, tree, "preprocess", path, "-o", out,
                        "--level", "char", "--force", "--quiet"], env=env, cwd=tree)

    for tree in trees:
        one(tree, small)    # warm-up: bytecode, Numba's cache where a tree uses it
    runs = {tree: [] for tree in trees}
    for r in range(rounds):
        for tree in (trees if r % 2 == 0 else trees[::-1]):
            runs[tree].append(one(tree))
        print(f"round {r + 1} of {rounds} done", file=sys.stderr, flush=True)
    print(f"char level, {size / 1e6:.1f} MB, {rounds} rounds, alternating\n")
    print("| tree | best s | median s | min-max s | MB/s (best) | peak RSS MB | CPU s, median | "
          "throughput / first tree, median (min-max) |")
    print("|------|--------|----------|-----------|-------------|-------------|---------------|"
          "--------------------------------------------|")
    first = [r[0] for r in runs[trees[0]]]
    for tree in trees:
        times, rss, cpu = zip(*runs[tree])
        ratio = [a / b for a, b in zip(first, times)]
        print(f"| {tree} | {min(times):.2f} | {statistics.median(times):.2f} | "
              f"{min(times):.2f}-{max(times):.2f} | {size / 1e6 / min(times):.0f} | "
              f"{min(rss):.0f}-{max(rss):.0f} | {statistics.median(cpu):.2f} | "
              f"{statistics.median(ratio):.3f} ({min(ratio):.3f}-{max(ratio):.3f}) |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("text", nargs="?", default=os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "corpora",
        "tinyshakespeare.txt"), help="default: ../shared/corpora/tinyshakespeare.txt")
    parser.add_argument("--size-mb", type=float, default=200, help="input size for throughput")
    parser.add_argument("--torch-mb", type=float, default=20, help="input size for torch-rnn")
    parser.add_argument("--big-mb", type=float, default=1024, help="input size for peak RSS")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per level")
    parser.add_argument("--tmp", default=None, help="folder for the temporary files")
    parser.add_argument("--trees", nargs="+", metavar="TREE",
                        help="compare these source trees instead (the first is the baseline)")
    parser.add_argument("--rounds", type=int, default=10, help="rounds of --trees")
    parser.add_argument("--torch-rnn-loop", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    opts = parser.parse_args()
    opts.text = os.path.abspath(opts.text)      # --trees runs each tree from its own folder
    if opts.torch_rnn_loop:
        torch_rnn_preprocess(*opts.torch_rnn_loop)
        return

    import h5py

    import rnnkit

    print(f"rnnkit {rnnkit.__version__}, Python {platform.python_version()}, numpy "
          f"{np.__version__}, h5py {h5py.__version__} (HDF5 {h5py.version.hdf5_version}), "
          f"{len(os.sched_getaffinity(0))} cores, {platform.processor() or platform.machine()}")
    with tempfile.TemporaryDirectory(dir=opts.tmp) as tmp:
        text = os.path.join(tmp, "input.txt")
        size = repeat_to(opts.text, text, opts.size_mb * 1e6)
        out = os.path.join(tmp, "corpus.h5")
        print(f"input: {opts.text} repeated to {size / 1e6:.1f} MB\n")
        if opts.trees:
            compare_trees([os.path.abspath(t) for t in opts.trees], opts.text, text, size,
                          out, opts.rounds)
            return
        run(preprocess_command(opts.text, out, "char"))  # warm-up: imports, page cache

        print("| level | best s | median s | MB/s (best) | peak RSS MB | corpus MB |")
        print("|-------|--------|----------|-------------|-------------|-----------|")
        speed = {}
        for level in ("char", "byte", "word"):
            runs = [run(preprocess_command(text, out, level)) for _ in range(opts.repeat)]
            times = [t for t, _ in runs]
            speed[level] = size / 1e6 / min(times)
            print(f"| {level} | {min(times):.2f} | {statistics.median(times):.2f} | "
                  f"{speed[level]:.0f} | {max(r for _, r in runs):.0f} | "
                  f"{os.path.getsize(out) / 1e6:.1f} |", flush=True)

        accented = os.path.join(tmp, "accented.txt")
        accented_size = repeat_to(opts.text, accented, opts.size_mb * 1e6, accents=True)
        runs = [run(preprocess_command(accented, out, "char")) for _ in range(opts.repeat)]
        times = [t for t, _ in runs]
        print(f"| char, e->é a->日 | {min(times):.2f} | {statistics.median(times):.2f} | "
              f"{accented_size / 1e6 / min(times):.0f} | {max(r for _, r in runs):.0f} | "
              f"{os.path.getsize(out) / 1e6:.1f} |", flush=True)
        os.remove(accented)

        small = os.path.join(tmp, "slice.txt")
        small_size = repeat_to(opts.text, small, opts.torch_mb * 1e6)
        seconds, rss = run([sys.executable, __file__, "--torch-rnn-loop", small,
                            os.path.join(tmp, "torch.h5")])
        torch_speed = small_size / 1e6 / seconds
        print(f"\ntorch-rnn loop (scripts/preprocess.py, char level) on {small_size / 1e6:.1f} MB: "
              f"{seconds:.2f} s, {torch_speed:.1f} MB/s, peak RSS {rss:.0f} MB")
        for level in ("char", "byte"):
            print(f"rnnkit {level} / torch-rnn: {speed[level] / torch_speed:.0f}x")
        os.remove(small)
        os.remove(text)

        big = os.path.join(tmp, "big.txt")
        big_size = repeat_to(opts.text, big, opts.big_mb * 2**20)
        seconds, rss = run(preprocess_command(big, out, "char"))
        print(f"\nchar level on {big_size / 1e6:.0f} MB: {seconds:.1f} s "
              f"({big_size / 1e6 / seconds:.0f} MB/s), peak RSS {rss:.0f} MB")


if __name__ == "__main__":
    main()
