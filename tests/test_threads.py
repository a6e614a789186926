"""Threads: the budget, the partition that fixes the numbers, and the governor."""
import threading

import numba
import numpy as np
import pytest

from rnnkit import threads
from rnnkit.model import Model, ModelConfig

CELLS = ["rnn-tanh", "rnn-relu", "lstm", "gru"]


@pytest.fixture
def two_blocks():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two threads")
    threads.set_threads(2, adaptive=False)
    yield
    threads.set_threads(None, adaptive=False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", CELLS)
def test_running_threads_never_change_the_numbers(cell, dtype, two_blocks):
    """Two blocks run by two threads, by one thread (serial build), and by the parallel build
    with one thread: the same bits."""
    cfg = ModelConfig(cell=cell, vocab_size=11, embed=8, hidden=64, layers=2)
    model = Model(cfg, dtype=dtype, seed=1)
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 11, (32, 16)), rng.integers(0, 11, (32, 16))
    state = model.init_state(32)
    runs = []
    for running in (2, 1, 2):
        numba.set_num_threads(running)
        loss, new = model.forward_backward(x, y, state.copy())
        runs.append((loss, model.grads.copy(), new.h.copy()))
    for loss, grads, h in runs[1:]:
        assert loss == runs[0][0]
        assert np.array_equal(grads, runs[0][1])
        assert np.array_equal(h, runs[0][2])


def test_budget_follows_the_environment(monkeypatch):
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores, why = threads.budget()
    assert cores >= 1 and any(word in why for word in ("affinity", "quota", "machine"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.budget() == (1, "OMP_NUM_THREADS=1")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "1")
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.budget() == (1, "SLURM_CPUS_PER_TASK=1")
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")
    n, why = threads.budget(local_ranks=cores + 1)
    assert n == 1 and f"shared by {cores + 1} ranks" in why


def test_cgroup_quota_files(tmp_path, monkeypatch):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads._read_quota(str(tmp_path), "cpu.max") == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads._read_quota(str(tmp_path), "cpu.max") is None
    (tmp_path / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu.cfs_period_us").write_text("100000\n")
    assert threads._read_quota(str(tmp_path), "cpu.cfs_quota_us") == 1


class FakeMachine:
    """Seconds per token for each running-thread count, as a machine under load gives."""

    def __init__(self, speed):
        self.speed, self.k, self.applied = speed, None, []

    def apply(self, k):
        self.k = k
        self.applied.append(k)


def drive(gov, machine, units, work=1000):
    for _ in range(units):
        gov.observe(work, work * machine.speed[machine.k])


class FakeWorker:
    def __init__(self, group=None):
        self.group, self.done = group, False

    def poll(self):
        return 0 if self.done else None

    def wait(self):
        self.done = True
        return 0


def cold_cpu(monkeypatch, cell):
    """A CPU backend that sees an empty kernel cache and two threads, a model on it, and the
    list of the (fake) compile workers it starts."""
    from rnnkit.backends.cpu import CPUBackend
    from rnnkit.kernels.cpu import jit, warm
    workers = []
    monkeypatch.setattr(warm, "spawn", lambda spec: workers.append(FakeWorker(spec["group"]))
                        or workers[-1])
    monkeypatch.setattr(jit, "CACHE", True)
    monkeypatch.setattr(jit, "in_cache", lambda name: False)
    monkeypatch.setattr(threads, "partition", lambda: 2)
    monkeypatch.setattr(threads, "_cap", None)
    backend = CPUBackend()
    model = Model(ModelConfig(cell=cell, vocab_size=8, embed=4, hidden=4, layers=1),
                  backend=backend)
    return backend, model, workers


def test_a_run_lifts_the_thread_cap_it_set(monkeypatch):
    """On a cold cache prepare() caps the process at one thread while the threaded builds
    compile; the run's end lifts it, or later work in the process stays on one thread."""
    backend, model, workers = cold_cpu(monkeypatch, "gru")
    backend.prepare(model, 2, 3, "adam")
    assert threads._cap == 1 and [w.group for w in workers] == ["backward"]
    backend.end()
    assert threads._cap is None
    backend.end()                   # twice is harmless
    assert threads._cap is None


def test_later_workers_start_in_turn(monkeypatch):
    """After the backward worker the threaded builds' worker starts; the cap on threads lifts
    when it is done, and the sampling worker starts."""
    backend, model, workers = cold_cpu(monkeypatch, "lstm")
    backend.prepare(model, 2, 3, "adam")

    def started():
        backend._tend_workers()     # what each step's observe() does while workers remain
        return [w.group for w in workers]
    assert started() == ["backward"]
    workers[0].done = True
    assert started() == ["backward", "parallel"] and threads._cap == 1
    assert started() == ["backward", "parallel"]
    workers[1].done = True
    assert started() == ["backward", "parallel", "sampling"] and threads._cap is None
    workers[2].done = True
    assert started() == ["backward", "parallel", "sampling"] and not backend._workers


def test_backward_tasks_go_to_whichever_process_is_free(tmp_path, monkeypatch):
    """A task another process holds is skipped by a worker and waited for by the run; a
    free one is taken (the run's first backward takes every free one at once)."""
    from rnnkit.backends.cpu import CPUBackend
    from rnnkit.kernels.cpu import jit, warm
    monkeypatch.setattr(jit, "CACHE", True)
    monkeypatch.setattr(numba.config, "CACHE_DIR", str(tmp_path))
    spec = {"group": "backward", "N": 2, "T": 3}
    with warm.turn(spec, "linear", wait=False) as mine:
        assert mine
        with warm.turn(spec, "linear", wait=False) as again:    # another open file: held
            assert not again
        with warm.turn(dict(spec, N=4), "linear", wait=False) as other_shapes:
            assert other_shapes
    ran = []
    monkeypatch.setattr(warm, "task", lambda spec, name: ran.append(name))
    backend = CPUBackend()
    backend._spec, backend._tasks = spec, set(warm.TASKS)
    first_backward = threading.Thread(target=backend._backward_tasks)
    with warm.turn(spec, "cell", wait=False):           # a worker compiling the cell's BPTT
        first_backward.start()
        first_backward.join(1.0)
        assert first_backward.is_alive() and ran == ["linear", "rest"]    # waits for "cell"
    first_backward.join(30)
    assert ran == ["linear", "rest", "cell"] and not backend._tasks
    backend._backward_tasks()                           # later steps: nothing left
    assert ran == ["linear", "rest", "cell"]


def test_generating_on_a_cold_cache_waits_for_its_step_worker(monkeypatch):
    """prepare_sampling() starts a worker for the step kernels when none is cached; the first
    sampling step waits for it instead of compiling them too; nothing starts when cached."""
    from rnnkit.backends.cpu import CPUBackend
    from rnnkit.kernels.cpu import jit
    backend, model, workers = cold_cpu(monkeypatch, "gru")
    backend.prepare_sampling(model)
    assert [w.group for w in workers] == ["step"] and not workers[0].done
    model.step(np.zeros(1, np.int64), model.init_state(1))
    assert workers[0].done and not backend._workers
    monkeypatch.setattr(jit, "in_cache", lambda name: name == "step._layer_step")
    CPUBackend().prepare_sampling(model)
    assert len(workers) == 1


def test_governor_drops_threads_under_load_and_comes_back(monkeypatch):
    monkeypatch.setattr(threads, "_cap", None)      # no cap left by an earlier test's run
    machine = FakeMachine({4: 1e-4, 2: 2e-4, 1: 3e-4})   # alone: more threads are faster
    gov = threads.Governor(4, apply=machine.apply, sampler=lambda: None)
    machine.k = 4
    drive(gov, machine, 400)
    assert gov.current == 4
    probes = len(machine.applied)
    assert probes <= 20                         # probes get rarer while nothing changes
    machine.speed = {4: 9e-4, 2: 3e-4, 1: 3.2e-4}   # someone took cores: 4 threads collapse
    drive(gov, machine, 200)
    assert gov.current == 2
    machine.speed = {4: 1e-4, 2: 2e-4, 1: 3e-4}     # the machine is free again
    drive(gov, machine, 2000)
    assert gov.current == 4


def test_governor_cost_when_nothing_changes():
    """Alone, the probes of fewer threads cost under 2% over a long run."""
    machine = FakeMachine({2: 1e-4, 1: 2e-4})
    gov = threads.Governor(2, apply=machine.apply, sampler=lambda: None)
    machine.k = 2
    spent = 0.0
    for _ in range(6000):                       # 600 s of work at 0.1 s a unit
        seconds = 1000 * machine.speed[machine.k]
        spent += seconds
        gov.observe(1000, seconds)
    assert gov.current == 2
    assert spent < 1.02 * 6000 * 0.1


def test_governor_starts_with_the_free_cores(monkeypatch):
    """Others use 1.5 of our 2 cores: start with one thread, and do not probe two while they
    still do; once they stop, probe and take two."""
    monkeypatch.setattr(threads, "_cap", None)
    clock = {"t": 0.0, "others": 1.5}

    def sampler():  # one second passes between looks; we use 0.1 of a core
        clock["t"] += 1.0
        clock.setdefault("busy", 0.0)
        clock["busy"] += clock["others"] + 0.1
        return clock["t"], clock["busy"], 0.1 * clock["t"], {0, 1}

    machine = FakeMachine({2: 1e-4, 1: 2e-4})
    gov = threads.Governor(2, apply=machine.apply, sampler=sampler)
    machine.k = 2
    gov.begin()
    assert gov.current == 1 and machine.applied == [1]
    drive(gov, machine, 30, work=10000)
    assert machine.applied == [1]           # no probe of two threads
    clock["others"] = 0.0
    drive(gov, machine, 30, work=10000)
    assert gov.current == 2
