"""bench/gpu_bench.py's own logic under Numba's CUDA simulator: each PyTorch side runs with its
own TF32 flags (set before its warm-up and each round, not when it was built), a config that
fails is one line and the next one runs, and the table reports launches, host time and the
recurrence's plan.

Run with NUMBA_ENABLE_CUDASIM=1 (make test's second pass); a normal run skips the module.
"""
import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from numba.core.config import ENABLE_CUDASIM

pytestmark = pytest.mark.skipif(not ENABLE_CUDASIM, reason="runs under Numba's CUDA "
                                "simulator: NUMBA_ENABLE_CUDASIM=1 (make test's second pass)")


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).resolve().parents[1] / "bench" / "gpu_bench.py"
    spec = importlib.util.spec_from_file_location("gpu_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeTorch:
    """What Torch.enter touches: torch.backends' two TF32 flags."""

    def __init__(self):
        self.backends = SimpleNamespace(cudnn=SimpleNamespace(allow_tf32=None),
                                        cuda=SimpleNamespace(matmul=SimpleNamespace(
                                            allow_tf32=None)))


def test_each_torch_side_runs_under_its_own_flags(bench):
    """The review's bug: the TF32 side, built last, left TF32 on for the fp32 side too."""
    torch, seen = FakeTorch(), []

    def side(tf32):
        s = bench.Torch.__new__(bench.Torch)
        s.torch, s.tf32 = torch, tf32

        def step():
            seen.append((tf32, torch.backends.cudnn.allow_tf32,
                         torch.backends.cuda.matmul.allow_tf32))
        s.train_step = step
        return s

    sides = {"torch_fp32": side(False), "torch_tf32": side(True)}
    backend = SimpleNamespace(counters=lambda: (0, 0, 0.0))
    bench.best_rate(sides, dict(kind="train", N=1, T=1), 2, 3, 0, backend)
    assert len(seen) == 12 and all(a == b == c for a, b, c in seen)


def test_a_failing_config_is_one_line_and_the_next_runs(bench, monkeypatch, capsys):
    real = bench.Rnnkit
    tiny = dict(V=11, E=4, L=1, H=4, T=3)
    monkeypatch.setattr(bench, "configs", lambda dry: [
        dict(kind="train", cell="lstm", N=2, **tiny), dict(kind="train", cell="gru", N=2, **tiny)])

    def rnnkit(c, backend):
        if c["cell"] == "lstm":
            raise RuntimeError("CUDA_ERROR_INVALID_VALUE\nsecond line")
        return real(c, backend)

    monkeypatch.setattr(bench, "Rnnkit", rnnkit)
    assert bench.main(["--dry-run", "--no-torch"]) == 0
    out = capsys.readouterr().out.splitlines()
    failed = [line for line in out if "failed:" in line]
    assert failed == [f"{'train char lstm 1x4 N=2':36s} failed: RuntimeError: "
                      f"CUDA_ERROR_INVALID_VALUE"]
    rows = [json.loads(line[5:]) for line in out if line.startswith("json ")]
    assert rows[0]["error"].startswith("RuntimeError") and rows[1]["cell"] == "gru"
    assert rows[1]["launches"] > 0 and rows[1]["host_ms"] > 0 and rows[1]["readbacks"] == 1
    assert rows[1]["recurrence"].startswith("P1x")        # one block under the simulator
