"""The CPU profiling scripts of bench/ run to their end at tiny sizes (a script nobody ran
since an interface under it changed is found here, not in the middle of a measurement).
The figures themselves are not checked: benchmarks are scripts, not timed tests."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
pytestmark = pytest.mark.slow


def host_has_avx2():
    try:
        return " avx2" in Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False


def run(script, *args):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}
    res = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True,
                         text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def test_lstm_profile_prints_a_row_per_config():
    out = run("lstm_profile.py", "--threads", "1", "--configs", "16x8,32x4", "--T", "3")
    rows = [line for line in out.splitlines() if line.startswith("| 16 |") or
            line.startswith("| 32 |")]
    assert len(rows) == 2 and all(len(r.split("|")) == 11 for r in rows)


def test_step_phases_accounts_for_the_step():
    out = run("step_phases.py", "--threads", "1", "-V", "30", "-E", "8", "-H", "16", "-L", "1",
              "-N", "8", "-T", "4", "--steps", "2")
    assert "tokens/s" in out and "cell_forward" in out and "(the rest)" in out


@pytest.mark.parametrize("isa", ["native", "avx2"])
def test_fma_peak_reports_each_thread(isa):
    if isa == "avx2" and not host_has_avx2():
        pytest.skip("runs AVX2 code: this host has none")
    out = run("fma_peak.py", "--threads", "2", "--rounds", "1", "--seconds", "0.05",
              "--isa", isa)
    line = [x for x in out.splitlines() if x.startswith("round 1:")][0]
    rates = [float(x) for x in line.split(":")[1].split("GFLOP/s")[0].split(",")]
    assert len(rates) == 2 and all(r > 0.5 for r in rates)
    if isa == "avx2":
        assert out.startswith("8-lane vectors (haswell)")
