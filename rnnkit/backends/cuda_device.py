"""What the CUDA backend needs before its first kernel: a device, and a random stream.

A device: numba.cuda with the GPU chosen (`select`); each missing piece is one line
(BackendError) that says what to install or pass. A random stream: Philox4x32-10
(kernels/cuda/rng.py) as a key and the counter of its next draw; a checkpoint stores it
exactly as {"bit_generator": "Philox4x32-10", "key": int, "counter": int}.
"""
import importlib.util

import numpy as np

from rnnkit.backends.interface import BackendError

PHILOX = "Philox4x32-10"
KEY_MASK = (1 << 63) - 1             # keys travel as int64 kernel arguments


def select(index, local_rank=0):
    """numba.cuda and the index of the device it selected (`index`; None: `local_rank`
    modulo the devices seen); BackendError (one line) when it cannot run."""
    if importlib.util.find_spec("numba_cuda") is None:
        raise BackendError("--device cuda needs numba-cuda: pip install 'rnnkit[cuda]'")
    from numba import cuda
    from numba.core.config import ENABLE_CUDASIM
    if ENABLE_CUDASIM:
        return cuda, index or 0
    from numba.cuda.cudadrv import driver, nvvm
    asked = "cuda" if index is None else f"cuda:{index}"
    if not driver.driver.is_available or not len(cuda.gpus):
        raise BackendError(f"device {asked}: no CUDA GPU found (no NVIDIA driver, or it sees "
                           f"no device); use the cpu")
    if not nvvm.is_available():
        raise BackendError(f"device {asked}: the CUDA compiler (NVVM) is missing: "
                           f"pip install 'rnnkit[cuda]', or install the CUDA toolkit")
    if index is None:
        index = local_rank % len(cuda.gpus)
    if index >= len(cuda.gpus):
        raise BackendError(f"device cuda:{index}: this machine has {len(cuda.gpus)} "
                           f"CUDA GPU(s), numbered from 0")
    cuda.select_device(index)
    return cuda, index


def on_device(a):
    return hasattr(a, "copy_to_host")        # numba device arrays (and the simulator's)


class Philox:
    """A device RNG: the stream's key and the counter of its next draw."""

    def __init__(self, key, counter=0):
        self.key, self.counter = int(key) & KEY_MASK, int(counter)

    def take(self, n):
        """The counter of the first of n draws, moving the stream past them."""
        start, self.counter = self.counter, self.counter + int(n)
        return start


def key(seed):
    """A stream's key from a seed (int or numpy SeedSequence entropy)."""
    words = np.random.SeedSequence(seed).generate_state(2, np.uint32)
    return (int(words[1]) << 32 | int(words[0])) & KEY_MASK
