"""The run's runtime (rnnkit/training/runtime.py): which compile workers start on a cold cache and
when, the backward tasks shared with them, the thread cap and its end; and that compiling ahead in
the run's own process leaves the model as it was."""
import os
import subprocess
import sys
import threading
import time
import types

import numba
import numpy as np
import pytest

from rnnkit.training import compile_workers
from rnnkit.backends import threads
from rnnkit.backends.cpu import CPUBackend
from rnnkit.kernels import cache
from rnnkit.model.network import Model, ModelConfig
from rnnkit.training.runtime import Runtime


class FakeWorker:
    def __init__(self, group=None):
        self.group, self.done = group, False

    def poll(self):
        return 0 if self.done else None

    def wait(self):
        self.done = True
        return 0


def cold_cpu(monkeypatch, cell, compile_here=False):
    """A runtime on a CPU backend that sees an empty kernel cache and two threads, a model on
    it, and the list of the (fake) compile workers it starts. Without compile_here, the run's
    own share of compiling is skipped."""
    workers = []
    monkeypatch.setattr(compile_workers, "spawn",
                        lambda spec: workers.append(FakeWorker(spec["group"])) or workers[-1])
    monkeypatch.setattr(cache, "CACHE", True)
    monkeypatch.setattr(cache, "in_cache", lambda name, dtype=None: False)
    monkeypatch.setattr(threads, "partition", lambda: 2)
    monkeypatch.setattr(threads, "_cap", None)
    if not compile_here:
        monkeypatch.setattr(Runtime, "_compile_here", lambda self, model, spec: None)
    backend = CPUBackend()
    model = Model(ModelConfig(cell=cell, vocab_size=8, embed=4, hidden=4, layers=1),
                  backend=backend)
    return Runtime(backend), model, workers


def test_a_run_lifts_the_thread_cap_it_set(monkeypatch):
    """On a cold cache prepare() caps the process at one thread while the threaded builds
    compile; the run's end lifts it, or later work in the process stays on one thread."""
    runtime, model, workers = cold_cpu(monkeypatch, "gru")
    runtime.prepare(model, 2, 3, "adam")
    assert threads._cap == 1 and [w.group for w in workers] == ["backward"]
    runtime.end()
    assert threads._cap is None
    runtime.end()                   # twice is harmless
    assert threads._cap is None


def test_later_workers_start_in_turn(monkeypatch):
    """After the backward worker the threaded builds' worker starts; the cap on threads lifts
    when it is done, and the sampling worker starts."""
    runtime, model, workers = cold_cpu(monkeypatch, "lstm")
    runtime.prepare(model, 2, 3, "adam")

    def started():
        runtime._tend_workers()     # what each step's observe() does while workers remain
        return [w.group for w in workers]
    assert started() == ["backward"]
    workers[0].done = True
    assert started() == ["backward", "parallel"] and threads._cap == 1
    assert started() == ["backward", "parallel"]
    workers[1].done = True
    assert started() == ["backward", "parallel", "sampling"] and threads._cap is None
    workers[2].done = True
    assert started() == ["backward", "parallel", "sampling"] and not runtime._workers


def test_backward_tasks_go_to_whichever_process_is_free(tmp_path, monkeypatch):
    """A task another process holds is skipped by a worker and waited for by the run; a
    free one is taken (the run takes every free one once its forward kernels are built)."""
    monkeypatch.setattr(cache, "CACHE", True)
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path))
    spec = {"group": "backward", "N": 2, "T": 3}
    with compile_workers.turn(spec, "linear", wait=False) as mine:
        assert mine
        with compile_workers.turn(spec, "linear", wait=False) as again:    # held
            assert not again
        with compile_workers.turn(dict(spec, N=4), "linear", wait=False) as other_shapes:
            assert other_shapes
    ran = []
    monkeypatch.setattr(compile_workers, "forward", lambda model, N, T: ran.append("forward"))
    monkeypatch.setattr(compile_workers, "task", lambda model, spec, name: ran.append(name))
    runtime = Runtime(CPUBackend())
    here = threading.Thread(target=runtime._compile_here, args=(None, spec))
    with compile_workers.turn(spec, "cell", wait=False):    # a worker compiling the BPTT
        here.start()
        here.join(1.0)
        assert here.is_alive() and ran == ["forward", "linear", "rest"]   # waits for "cell"
    here.join(30)
    assert ran == ["forward", "linear", "rest", "cell"]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_compiling_ahead_leaves_the_model_as_it_was(monkeypatch, tmp_path, cell):
    """The run's share of compiling runs kernels on the run's own model before its first step
    (no second model): the parameters, and the first step's loss and gradients, are those of
    a model that never compiled ahead."""
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path))   # its own task locks
    runtime, model, workers = cold_cpu(monkeypatch, cell, compile_here=True)
    cfg = ModelConfig(cell=cell, vocab_size=8, embed=4, hidden=4, layers=1, dtype="float64")
    model = Model(cfg, backend=model.backend, seed=3)
    fresh = Model(cfg, backend=model.backend, seed=3)
    params = model.params.copy()
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 8, (2, 3)), rng.integers(0, 8, (2, 3))
    runtime.prepare(model, 2, 3, "adamw")
    assert [w.group for w in workers] == ["backward"]
    np.testing.assert_array_equal(model.params, params)
    a = model.forward_backward(x, y, model.init_state(2), model.backend.rng(1))[0]
    b = fresh.forward_backward(x, y, fresh.init_state(2), fresh.backend.rng(1))[0]
    assert a == b
    np.testing.assert_array_equal(model.grads, fresh.grads)
    runtime.end()


def test_generating_on_a_cold_cache_waits_for_its_step_worker(monkeypatch):
    """prepare_sampling() starts a worker for the step kernels when none is cached, and
    sampling_ready() waits for it instead of compiling them too; nothing starts when cached."""
    runtime, model, workers = cold_cpu(monkeypatch, "gru")
    runtime.prepare_sampling(model)
    assert [w.group for w in workers] == ["step"] and not workers[0].done
    runtime.sampling_ready()
    assert workers[0].done and not runtime._workers
    monkeypatch.setattr(cache, "in_cache",
                        lambda name, dtype=None: name == "sampling_step._layer_step")
    Runtime(model.backend).prepare_sampling(model)
    assert len(workers) == 1


def test_a_gpu_run_compiles_nothing_ahead_and_paces_nothing(monkeypatch):
    calls = []
    monkeypatch.setattr(compile_workers, "spawn", lambda spec: calls.append(spec))
    monkeypatch.setattr(threads, "observe", lambda *a: calls.append(a))
    monkeypatch.setattr(threads, "cap", lambda k: calls.append(k))
    runtime = Runtime(types.SimpleNamespace(name="cuda"))
    runtime.prepare(None, 2, 3, "adam")
    runtime.prepare_sampling(None)
    runtime.begin()
    runtime.observe(10, 0.1)
    runtime.sampling_ready()
    runtime.end()
    assert calls == []


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="looks for the worker in /proc")
def test_a_worker_ends_with_a_run_that_ended_before_it_started(tmp_path):
    """A run of a step or two can end while the worker it spawned is still importing, before
    the worker asks to end with its parent: it must still end, not compile on for tens of
    seconds beside whatever runs next."""
    script = tmp_path / "parent.py"
    script.write_text(
        "from rnnkit.backends.cpu import CPUBackend\n"
        "from rnnkit.model.network import Model, ModelConfig\n"
        "from rnnkit.training import compile_workers\n"
        "m = Model(ModelConfig(cell='gru', vocab_size=8, embed=4, hidden=4, layers=1),\n"
        "          backend=CPUBackend())\n"
        "w = compile_workers.spawn(compile_workers.spec(m, 2, 3, 'adam', 'parallel', 2))\n"
        "print(w.pid)\n")                 # and end at once
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    pid = int(subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                             text=True, check=True).stdout)
    deadline = time.monotonic() + 20
    while os.path.isdir(f"/proc/{pid}") and time.monotonic() < deadline:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().split(") ")[-1].startswith("Z"):
                break                   # a zombie has ended
        time.sleep(0.05)
    assert not os.path.isdir(f"/proc/{pid}") or time.monotonic() < deadline
    assert not list((tmp_path / "cache").rglob("*.nbi"))    # it compiled nothing


def test_a_build_for_another_dtype_is_not_taken_for_cached(tmp_path, monkeypatch):
    # before: a float64 run after float32 ones was told nothing of the compiling it waited
    # for, and compiled alone (no workers): a look for the kernel's name found the float32 build
    (tmp_path / "cached_kernel.py").write_text(
        "import numba\n\n\n@numba.njit(cache=True)\ndef first(x):\n    return x[0]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path / "cache"))
    import cached_kernel

    assert not cache.in_cache("cached_kernel.first")
    cached_kernel.first(np.zeros(2, np.float32))
    assert cache.in_cache("cached_kernel.first") and cache.in_cache("cached_kernel.first",
                                                                    np.dtype(np.float32))
    assert not cache.in_cache("cached_kernel.first", np.dtype(np.float64))
    cached_kernel.first(np.zeros(2, np.float64))
    assert cache.in_cache("cached_kernel.first", np.dtype(np.float64))
