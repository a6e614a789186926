"""Cold and warm start: the wait before the first training step, with and without the kernel cache.

Each run is a fresh process that imports rnnkit, builds a model and takes one training step
and one sampling step (float32, every kernel that training and sampling call). Cold: an
empty Numba cache folder, so everything compiles; warm: the same folder again.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/startup.py
"""
import os
import subprocess
import sys
import tempfile
import time

CHILD = """
import numpy as np
from rnnkit.model import Model, ModelConfig
from rnnkit.optim import clip_gradients, make_optimizer
m = Model(ModelConfig(cell="{cell}", vocab_size=65, embed=64, hidden=128, layers=2))
x = np.zeros((64, 64), np.int64)
opt = make_optimizer("adam", m.params)
m.forward_backward(x, x, m.init_state(64))
clip_gradients(m.grads, 5.0)
opt.step(m.grads)
m.step(np.zeros(1, np.int64), m.init_state(1))
"""


def run(cell, cache):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", CHILD.format(cell=cell)], env=env, check=True)
    return time.perf_counter() - start


def main():
    print(f"{'cell':<10}{'cold s':>8}{'warm s':>8}")
    for cell in ("lstm", "gru", "rnn-tanh"):
        with tempfile.TemporaryDirectory() as cache:
            cold = run(cell, cache)
            warm = min(run(cell, cache) for _ in range(2))
        print(f"{cell:<10}{cold:>8.1f}{warm:>8.1f}", flush=True)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import numpy, numba, h5py, click"], check=True)
    print(f"python + numpy, numba, h5py, click imports alone: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
