"""Throughput and memory of `rnnkit preprocess`, against torch-rnn's scripts/preprocess.py loop.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \\
        .venv/bin/python bench/preprocess.py ../shared/corpora/tinyshakespeare.txt

Repeats the given text to --size-mb (default 200 MB) in a temporary folder and times
`rnnkit preprocess` on it at char, byte and word level, and at char level on a non-ASCII variant
(each run a fresh process; best and median of --repeat, after a warm-up run). Times torch-rnn's
approach (a Python loop over characters filling numpy arrays, reimplemented below) on a
--torch-mb slice, and measures the peak RSS of a char-level run on a --big-mb (default 1 GiB)
input. MB means 10**6 bytes of input.
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


def run(args):
    """Run a command; return (seconds, peak RSS in MB) of that child alone."""
    started = time.perf_counter()
    child = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    err = child.stderr.read().decode()
    if child.returncode:
        sys.exit(f"failed: {' '.join(args)}\n{err}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


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
    parser.add_argument("--torch-rnn-loop", nargs=2, metavar=("IN", "OUT"), help=argparse.SUPPRESS)
    opts = parser.parse_args()
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
