"""The CUDA backend where it meets the machine: the one-line errors without numba-cuda or a
GPU, and, on a real GPU only (bench/gpu_check.sh runs these), the persistent recurrence
across many blocks against one launch per step, bit for bit, repeated runs, and its speed.
"""
import importlib.util
import time

import numpy as np
import pytest

from rnnkit.backends import BackendError, get_backend


def _gpu():
    """The CUDA backend on a real GPU, else None."""
    try:
        from numba.core.config import ENABLE_CUDASIM
        if ENABLE_CUDASIM:
            return None
        return get_backend("cuda")
    except (BackendError, ImportError):
        return None


GPU = _gpu()
needs_gpu = pytest.mark.skipif(GPU is None, reason="needs a CUDA GPU (bench/gpu_check.sh)")


def test_without_numba_cuda_the_error_names_the_extra(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "numba_cuda" else real(name, *a))
    with pytest.raises(BackendError) as err:
        get_backend("cuda")
    assert "pip install 'rnnkit[cuda]'" in str(err.value) and "\n" not in str(err.value)


def test_without_a_gpu_the_error_is_one_line():
    from numba.core.config import ENABLE_CUDASIM
    if GPU is not None or ENABLE_CUDASIM:
        pytest.skip("a GPU (or the simulator) is here")
    with pytest.raises(BackendError) as err:
        get_backend("cuda:0")
    assert "no CUDA GPU found" in str(err.value) and "\n" not in str(err.value)


def test_plain_cuda_is_the_ranks_own_gpu(monkeypatch):
    """--device cuda on MPI rank r of a node selects GPU r modulo those seen; cuda:N is N."""
    from numba.core.config import ENABLE_CUDASIM
    if ENABLE_CUDASIM:
        pytest.skip("the simulator has one device")
    from types import SimpleNamespace

    from numba import cuda
    from numba.cuda.cudadrv import driver, nvvm

    from rnnkit.backends import parse_device
    from rnnkit.backends.cuda import _cuda
    assert parse_device("cuda") == ("cuda", None) and parse_device("CUDA:1") == ("cuda", 1)
    chosen = []
    monkeypatch.setattr(driver, "driver", SimpleNamespace(is_available=True))
    monkeypatch.setattr(nvvm, "is_available", lambda: True)
    monkeypatch.setattr(cuda, "gpus", [0, 1])
    monkeypatch.setattr(cuda, "select_device", chosen.append)
    assert [_cuda(None, rank)[1] for rank in range(4)] == [0, 1, 0, 1] == chosen
    assert _cuda(1, 0)[1] == 1
    with pytest.raises(BackendError, match="has 2 CUDA GPU"):
        _cuda(2, 0)


def _model(cell, H, N, T, layers=2, seed=0):
    from rnnkit.model import Model, ModelConfig
    cfg = ModelConfig(cell=cell, vocab_size=65, embed=64, hidden=H, layers=layers)
    model = Model(cfg, dtype=np.float32, seed=seed, backend=GPU)
    rng = np.random.default_rng(seed)
    x, y = rng.integers(0, 65, (N, T)), rng.integers(0, 65, (N, T))
    return model, x, y


def _step(model, x, y):
    b = model.backend
    loss, new = model.forward_backward(x, y, model.init_state(x.shape[0]))
    return loss, b.to_host(model.grads), b.to_host(new.h)


@needs_gpu
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn-tanh"])
def test_persistent_kernel_across_blocks_gives_the_per_step_bits(cell):
    model, x, y = _model(cell, 512, 16, 12)
    GPU.rec.reset("auto")
    persistent = _step(model, x, y)
    plans = list(GPU.rec._plans.values())
    assert all(p.persistent and p.blocks > 1 for p in plans), plans
    GPU.rec.reset("steps")
    steps = _step(model, x, y)
    GPU.rec.reset("auto")
    assert persistent[0] == steps[0]
    np.testing.assert_array_equal(persistent[1], steps[1])
    np.testing.assert_array_equal(persistent[2], steps[2])


@needs_gpu
def test_runs_repeat_bit_for_bit_on_the_gpu():
    model, x, y = _model("lstm", 256, 8, 16)
    a, b = _step(model, x, y), _step(model, x, y)
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])


@needs_gpu
def test_the_persistent_recurrence_is_faster_than_a_launch_per_step():
    """The point of keeping W_h on chip: at small batch, per-step launches re-read it."""
    model, x, y = _model("lstm", 512, 4, 64)
    times = {}
    for mode in ("auto", "steps"):
        GPU.rec.reset(mode)
        _step(model, x, y)
        started = time.perf_counter()
        for _ in range(5):
            _step(model, x, y)
        times[mode] = time.perf_counter() - started
    GPU.rec.reset("auto")
    assert times["auto"] < times["steps"], times
