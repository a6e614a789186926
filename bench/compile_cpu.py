"""CPU seconds of a first training step on an empty kernel cache: the run's process (imports and
the corpus included) and its backward compile worker (rnnkit/training/compile_workers.py), if it
starts one. CPU time does not depend on what else runs on the machine, wall time does: on two free
cores the first step comes after about the larger of the two figures.

    NUMBA_CACHE_DIR=$(mktemp -d) PYTHONPATH=TREE python bench/compile_cpu.py lstm

(PYTHONPATH=TREE measures that source tree's rnnkit, as bench/startup.py's --trees do.)
A 2x128 model, N=32, T=64, float32, two threads, one step, no validation.
"""
import resource
import sys
import tempfile
import time
from pathlib import Path

started = time.process_time()

from rnnkit.training import compile_workers  # noqa: E402
from rnnkit.model.config import TrainConfig  # noqa: E402
from rnnkit.corpus.preprocess import preprocess  # noqa: E402
from rnnkit.training.train import train  # noqa: E402

TEXT = "".join(f"line {i}: the quick brown fox {'jumps' if i % 3 else 'naps'} over it.\n"
               for i in range(3000))


def main(cell):
    spawned = []
    spawn = compile_workers.spawn
    compile_workers.spawn = lambda spec: spawned.append((spec["group"], spawn(spec))) or \
        spawned[-1][1]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "t.txt").write_text(TEXT)
        preprocess([str(tmp / "t.txt")], str(tmp / "c.h5"), val_frac=0.1, test_frac=0.0)
        cfg = TrainConfig()
        cfg.data.corpus, cfg.data.batch_size, cfg.data.seq_len = str(tmp / "c.h5"), 32, 64
        cfg.data.val_split = ""
        cfg.model.cell, cfg.model.hidden = cell, 128
        cfg.train.threads, cfg.train.max_steps, cfg.train.progress = 2, 1, False
        train(cfg, tmp / "run")
        run_s = time.process_time() - started
        for group, worker in spawned:
            if group == "backward":
                worker.wait()
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"{cell}: run {run_s:.1f} s, backward worker "
          f"{children.ru_utime + children.ru_stime:.1f} s of CPU")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "lstm")
