"""Threads: the budget, the partition that fixes the numbers, and the governor."""
import numba
import numpy as np
import pytest

from rnnkit.backends import threads
from rnnkit.model.network import Model, ModelConfig

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
    from rnnkit.cores import _read_quota

    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert _read_quota(str(tmp_path), "cpu.max") == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _read_quota(str(tmp_path), "cpu.max") is None
    (tmp_path / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu.cfs_period_us").write_text("100000\n")
    assert _read_quota(str(tmp_path), "cpu.cfs_quota_us") == 1


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


def test_slurm_cpus_per_task_is_each_ranks_own(monkeypatch):
    """SLURM_CPUS_PER_TASK is per task, and so is a mask srun bound to it: neither is divided
    among the node's ranks (before: --cpus-per-task=4 with 2 ranks a node gave 2 threads
    each, half the allocation idle). A node-wide mask still is."""
    from rnnkit import cores
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(cores, "_cgroup_quota", lambda: None)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "4")
    for mask, want in ((4, (4, "the CPU affinity mask allows 4")),       # bound by srun
                       (8, (4, "the CPU affinity mask allows 8, shared by 2 ranks on this "
                               "node")),
                       (16, (4, "SLURM_CPUS_PER_TASK=4"))):
        monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid, m=mask: set(range(m)))
        assert cores.budget(2) == want
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")                          # mpiexec: the node's
    assert cores.budget(2) == (8, "the CPU affinity mask allows 16, shared by 2 ranks on "
                                  "this node")
