"""`rnnkit score` against `rnnkit eval` on the same text: tokens/s of scoring each line as a
stream of its own (the lines sorted by length, `--batch-size` of them as parallel streams) and
of evaluating the text as one stream cut into as many parallel streams, alternated in one
process so that both see the same machine.

The text is the validation tenth of a corpus file as `rnnkit preprocess --val-frac 0.1
--test-frac 0.1` cuts it (characters [0.8, 0.9) of the file); the model, a checkpoint
trained on it (for the figures in RESULTS.md: a 2x128 LSTM, 300 steps on tinyshakespeare).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/score_speed.py \\
        runs/shake/best.h5 ../shared/corpora/tinyshakespeare.txt --threads 1 --rounds 5

Each round times eval, score per-line and score with the state never reset (one stream), in
wall time and in the process's CPU time (the steadier on a busy machine); the medians and
ranges are printed.
"""
import argparse
import statistics
import time

import rnnkit
from rnnkit.training.evaluate import evaluate_ids


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("text")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    text = open(args.text, encoding="utf-8").read()
    val = text[int(len(text) * 0.8):int(len(text) * 0.9)]
    lm = rnnkit.load(args.checkpoint, threads=args.threads)
    T = lm.config["data"]["seq_len"]
    ids = lm.encode("\n" + val)             # score predicts the first line from a newline
    cases = {
        f"eval, {args.batch_size} streams": lambda: evaluate_ids(lm.model, ids,
                                                                  args.batch_size, T),
        f"score per-line, {args.batch_size} lines at once": lambda: lm.scores(
            val, batch_size=args.batch_size).total(),
        "score never (one stream)": lambda: lm.scores(val, reset="never").total(),
    }
    for case in cases.values():             # compile and warm up
        case()
    wall, cpu = {name: [] for name in cases}, {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, case in cases.items():
            w, c = time.perf_counter(), time.process_time()
            tokens = case()["tokens"]
            wall[name].append(tokens / (time.perf_counter() - w))
            cpu[name].append(tokens / (time.process_time() - c))
    print(f"{len(ids) - 1:,} tokens, {args.threads} thread(s), {args.rounds} rounds; "
          f"tokens/s, median (range)")
    for name in cases:
        print(f"  {name:34s} wall {statistics.median(wall[name]):9,.0f} "
              f"({min(wall[name]):,.0f}-{max(wall[name]):,.0f})   cpu "
              f"{statistics.median(cpu[name]):9,.0f} ({min(cpu[name]):,.0f}-"
              f"{max(cpu[name]):,.0f})")


if __name__ == "__main__":
    main()
