"""Backends: where a model's arrays live and its kernels run.

    backend = get_backend("cpu", threads=4)        # or "cuda", "cuda:1"
    model = Model(cfg, backend=backend)

A backend owns every array of a model (parameters, gradients, optimizer state, activations,
the carried state) and every operation on them: each cell's forward and backward, embedding,
output projection, softmax cross-entropy, dropout masks from its own RNG, the optimizer
updates, gradient norm and clipping, sampling, and the copies between host and backend. The
model (rnnkit/model.py), optimizers (rnnkit/optim.py) and loops call only these methods; the
CPU backend (cpu.py) is the reference, and docs/backends.md lists the interface. Only a
backend imports its kernels (rnnkit/kernels/cpu, rnnkit/kernels/cuda).
"""
import hashlib
import json

from rnnkit.errors import RnnkitError


_default_cpu = None


class BackendError(RnnkitError):
    """A backend cannot be used here (one line: what is missing and how to get it)."""


def derived_seed(state):
    """A seed (a 128-bit int) derived from another backend's RNG state, so that a backend
    given a state it cannot restore (the CPU's PCG64 on a GPU, the GPU's Philox on the CPU)
    starts a stream that is the same for the same state: a SHA-256 of the state as JSON."""
    text = json.dumps(state, sort_keys=True, default=int)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:16], "little")


def parse_device(device):
    """("cpu", None) or ("cuda", index) from "cpu", "cuda", "cuda:N" (index None for "cuda":
    the process's own GPU, get_backend)."""
    text = str(device or "cpu").strip().lower()
    if text == "cpu":
        return "cpu", None
    if text == "cuda":
        return "cuda", None
    if text.startswith("cuda:") and text[5:].isdigit():
        return "cuda", int(text[5:])
    raise BackendError(f"unknown device {device!r}; use cpu, cuda or cuda:N")


def get_backend(device="cpu", threads=None, local_ranks=1, local_rank=0, precision="fp32"):
    """The backend for `device`. threads: the CPU backend's partition (rnnkit/threads.py; 0:
    the cores this process may use, shared by `local_ranks` processes of one job on a node;
    None: leave the process's thread settings as they are). Plain "cuda" is GPU `local_rank`
    modulo the GPUs this process sees: one GPU per MPI rank on a node (under SLURM's
    --gpus-per-task each rank sees only its own, GPU 0). precision: the GPU's float32 products,
    "fp32" or "tf32" (kernels/cuda/products.py)."""
    kind, index = parse_device(device)
    if kind == "cpu":
        from rnnkit.backends.cpu import CPUBackend
        if threads is None:     # the default of Model, optimizers, clipping: made once
            global _default_cpu
            _default_cpu = _default_cpu or CPUBackend()
            return _default_cpu
        return CPUBackend(threads, local_ranks)
    try:
        from rnnkit.backends.cuda import CUDABackend
    except ImportError:
        raise BackendError(f"--device {device}: this rnnkit has no CUDA backend") from None
    return CUDABackend(index, local_rank, precision)
