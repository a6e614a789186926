"""The CUDA backend where it meets the machine: the one-line errors without numba-cuda or a
GPU, and, on a real GPU only (bench/gpu_check.sh runs these): the persistent recurrence
across many blocks against one launch per step, bit for bit; shapes that need the shared
memory opt-in or W_h in chunks; cuBLAS against the tiled kernel, TF32 against FP32; repeated
runs bit for bit; the launches and readbacks of a step; and the persistent path's speed.
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
        get_backend("cuda:5")
    assert "device cuda:5: no CUDA GPU found" in str(err.value) and "\n" not in str(err.value)


def test_plain_cuda_is_the_ranks_own_gpu(monkeypatch):
    """--device cuda on MPI rank r of a node selects GPU r modulo those seen; cuda:N is N."""
    from numba.core.config import ENABLE_CUDASIM
    if ENABLE_CUDASIM:
        pytest.skip("the simulator has one device")
    from types import SimpleNamespace

    from numba import cuda
    from numba.cuda.cudadrv import driver, nvvm

    from rnnkit.backends import parse_device
    from rnnkit.backends.cuda_device import select
    assert parse_device("cuda") == ("cuda", None) and parse_device("CUDA:1") == ("cuda", 1)
    chosen = []
    monkeypatch.setattr(driver, "driver", SimpleNamespace(is_available=True))
    monkeypatch.setattr(nvvm, "is_available", lambda: True)
    monkeypatch.setattr(cuda, "gpus", [0, 1])
    monkeypatch.setattr(cuda, "select_device", chosen.append)
    assert [select(None, rank)[1] for rank in range(4)] == [0, 1, 0, 1] == chosen
    assert select(1, 0)[1] == 1
    with pytest.raises(BackendError, match="has 2 CUDA GPU"):
        select(2, 0)


def _model(cell, H, N, T, layers=2, seed=0, backend=None):
    from rnnkit.model.network import Model, ModelConfig
    cfg = ModelConfig(cell=cell, vocab_size=65, embed=64, hidden=H, layers=layers)
    model = Model(cfg, dtype=np.float32, seed=seed, backend=backend or GPU)
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
    assert all(p.persistent and p.blocks > 1 and p.cooperative for p in plans), plans
    GPU.rec.reset("steps")
    steps = _step(model, x, y)
    GPU.rec.reset("auto")
    assert persistent[0] == steps[0]
    np.testing.assert_array_equal(persistent[1], steps[1])
    np.testing.assert_array_equal(persistent[2], steps[2])


@needs_gpu
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn-tanh"])
def test_runs_repeat_bit_for_bit_on_the_gpu(cell):
    """cuBLAS products included (one stream, its default algorithms)."""
    assert GPU.blas is not None, "the products did not go to cuBLAS (is CuPy installed?)"
    model, x, y = _model(cell, 256, 8, 16)
    a, b = _step(model, x, y), _step(model, x, y)
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_array_equal(a[2], b[2])


@needs_gpu
@pytest.mark.parametrize("cell,H,N", [("lstm", 1100, 1), ("lstm", 1100, 4), ("gru", 2048, 3),
                                      ("rnn-tanh", 4096, 2)])
def test_shapes_that_need_the_opt_in_or_chunks_run(cell, H, N):
    """fp32 LSTM at N = 1, H = 1100 once asked for 64 KB per step without opting in
    (CUDA_ERROR_INVALID_VALUE); large H runs per step with W_h in chunks. Both paths, the
    same bits; any refused opt-in said on stderr."""
    model, x, y = _model(cell, H, N, 3, layers=1)
    GPU.rec.reset("auto")
    auto = _step(model, x, y)
    GPU.rec.reset("steps")
    steps = _step(model, x, y)
    GPU.rec.reset("auto")
    assert np.isfinite(auto[0]) and auto[0] == steps[0]
    np.testing.assert_array_equal(auto[1], steps[1])


@needs_gpu
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cublas_products_match_the_tiled_kernel(dtype):
    """Every layout the model uses (op(A) op(B), accumulate, bias) through cuBLAS against
    rnnkit's tiled kernel and numpy, twice each: the same bits on a repeat."""
    from rnnkit.kernels.cuda.products import matmul
    rng = np.random.default_rng(0)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for (M, N, K) in ((700, 10000, 650), (64 * 16, 2048, 64), (33, 17, 5)):
        for ta, tb in ((False, False), (True, False), (False, True)):
            a = rng.normal(size=(K, M) if ta else (M, K)).astype(dtype)
            b = rng.normal(size=(N, K) if tb else (K, N)).astype(dtype)
            bias, c0 = rng.normal(size=N).astype(dtype), rng.normal(size=(M, N)).astype(dtype)
            want = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b)
            da, db, dbias = GPU.from_host(a), GPU.from_host(b), GPU.from_host(bias)
            for acc, add in ((False, None), (True, None), (False, dbias)):
                got = []
                for blas in (GPU.blas, GPU.blas, None):
                    c = GPU.from_host(c0)
                    matmul(blas, c, da, db, ta, tb, accumulate=acc, bias=add)
                    got.append(GPU.to_host(c))
                ref = want + (c0 if acc else 0) + (bias if add is not None else 0)
                scale = np.abs(ref).max()
                np.testing.assert_array_equal(got[0], got[1])
                assert np.abs(got[0] - ref).max() <= tol * scale * np.sqrt(K)
                assert np.abs(got[2] - ref).max() <= tol * scale * np.sqrt(K)


@needs_gpu
def test_tf32_changes_only_the_float32_products_within_its_tolerance():
    """--precision tf32: float32 products on tensor cores (10-bit mantissas): within 1e-2
    of fp32 relative to the operands' scale, visibly not fp32; float64 untouched."""
    from rnnkit.kernels.cuda.products import Blas, matmul
    tf32 = Blas("tf32")
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(512, 512)), rng.normal(size=(512, 512))
    for dtype in (np.float32, np.float64):
        da, db = GPU.from_host(a.astype(dtype)), GPU.from_host(b.astype(dtype))
        out = {}
        for name, blas in (("fp32", GPU.blas), ("tf32", tf32)):
            c = GPU.zeros((512, 512), dtype)
            matmul(blas, c, da, db)
            out[name] = GPU.to_host(c)
        diff = np.abs(out["tf32"] - out["fp32"]).max() / np.sqrt(512)
        if dtype == np.float32:
            assert 0 < diff < 1e-2, diff
        else:
            np.testing.assert_array_equal(out["tf32"], out["fp32"])


@needs_gpu
def test_a_training_step_on_the_gpu_makes_at_most_25_launches_and_one_readback():
    from rnnkit.model.optim import clip_gradients, make_optimizer
    model, x, y = _model("lstm", 512, 16, 64)
    opt = make_optimizer("adam", model.params, GPU)
    state = model.init_state(16)
    for i in range(2):
        launches, reads, _ = GPU.counters()
        loss, state = model.forward_backward(x, y, state)
        clip_gradients(model.grads, 1e-3, backend=GPU)
        opt.step(model.grads)
    assert GPU.counters()[0] - launches <= 25
    assert GPU.counters()[1] - reads == 1 and np.isfinite(float(loss))


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
