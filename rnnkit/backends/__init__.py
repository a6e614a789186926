"""Backends: where a model's arrays live and its kernels run.

    backend = get_backend("cpu", threads=4)        # or "cuda", "cuda:1"
    model = Model(cfg, backend=backend)

A backend owns every array of a model (parameters, gradients, optimizer state, activations,
the carried state) and dispatches every operation on them to its kernels: each cell's forward
and backward, embedding, output projection, softmax cross-entropy, dropout masks from its own
RNG, the optimizer updates, gradient norm and clipping, sampling, and the copies between host
and backend. `Backend` (interface.py) is the interface, which the model (rnnkit/model/network.py),
the optimizers (rnnkit/model/optim.py) and the loops call and both backends implement
(tests/test_architecture.py checks their methods and signatures against it); the CPU backend
(cpu.py) is the reference. Each backend registers, per cell (rnnkit/cells.py), its kernels and
their arrays (`KERNELS`, `CellKernels`). Compiling ahead and pacing threads are not a
backend's business but the run's (rnnkit/training/runtime.py).
"""
from rnnkit.backends.interface import (Backend, BackendError, CellKernels,  # noqa: F401
                                      derived_seed)

_default_cpu = None


def parse_device(device):
    """("cpu", None) or ("cuda", index) from "cpu", "cuda", "cuda:N" (index None for "cuda":
    the process's own GPU, get_backend)."""
    text = "cpu" if device is None else str(device).strip().lower()
    if text == "cpu":
        return "cpu", None
    if text == "cuda":
        return "cuda", None
    if text.startswith("cuda:") and text[5:].isdigit():
        return "cuda", int(text[5:])
    raise BackendError(f"unknown device {device!r}; use cpu, cuda or cuda:N")


def get_backend(device="cpu", threads=None, local_ranks=1, local_rank=0, precision="fp32"):
    """The backend for `device`. threads: the CPU backend's partition (rnnkit/backends/threads.py;
    0: the cores this process may use, shared by `local_ranks` processes of one job on a node;
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
