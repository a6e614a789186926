"""Every CUDA kernel compiles to PTX for compute capability 8.0 (A100) and 9.0 (H100, H200)
with every dtype it runs with: the check of types and lowering that the simulator, which runs
kernels as Python, cannot make. No GPU needed: NVVM and libdevice from the CUDA toolkit are.

The signatures are each kernel module's SIGNATURES list; tests/test_cuda_kernels.py checks
under the simulator that every launch's argument types are among them. Beyond compiling: the
float32 kernels that hold no float64 by design do no float64 arithmetic (a Python float
literal in a body would promote it), and the hot kernels keep their accumulators in
registers (no local memory) and, assembled by the toolkit's ptxas where it is installed,
spill nothing and fit a block of the threads they launch with.
"""
import importlib
import os
import re
import shutil
import subprocess

import pytest

cuda = pytest.importorskip("numba.cuda", reason="numba-cuda is not installed")

from numba.core.config import ENABLE_CUDASIM  # noqa: E402

MODULES = ["elementwise", "embed", "gemm", "gru", "loss", "lstm", "optim", "rnn", "rng",
           "sample"]
CCS = [(8, 0), (9, 0)]
# float32 kernels allowed float64 arithmetic: sums kept in float64 on purpose, and the
# draws of the RNG (uniforms in [0, 1) as float64)
F64_BY_DESIGN = {"sumsq_blocks", "sum_rows", "xent_rows", "dropout", "sample_rows",
                 "sample_blocks"}
# kernels whose per-thread arrays must stay in registers
REGISTERS = {"gemm", "forward_steps", "backward_steps"}
F64_MATH = re.compile(r"\b(?:add|sub|mul|div|fma|sqrt)(?:\.rn)?\.f64\b")


def _usable():
    if ENABLE_CUDASIM:
        return "the CUDA simulator replaces the compiler (run without NUMBA_ENABLE_CUDASIM)"
    from numba.cuda.cudadrv import nvvm
    if not nvvm.is_available():
        return "NVVM (the CUDA toolkit's compiler library) is not available"
    return None


pytestmark = [pytest.mark.skipif(_usable() is not None, reason=str(_usable())),
              pytest.mark.slow]      # compiles every kernel to PTX, each time


def kernels():
    from rnnkit.kernels.cuda import launch
    out = []
    for name in MODULES:
        module = importlib.import_module(f"rnnkit.kernels.cuda.{name}")
        for kernel, codes, dtypes in module.SIGNATURES:
            for dtype in dtypes:
                out.append(pytest.param(kernel, launch.signature(codes, dtype), dtype,
                                        id=f"{name}.{kernel.__name__}-{dtype}"))
    return out


@pytest.fixture(params=CCS, ids=lambda cc: f"cc{cc[0]}{cc[1]}")
def cc(request, monkeypatch):
    """Device functions compile for the current device's capability; without a GPU there
    is none, so stand in the one being compiled for."""
    import numba.cuda.dispatcher as dispatcher

    class Device:
        compute_capability = request.param

    monkeypatch.setattr(dispatcher, "get_current_device", lambda: Device())
    return request.param


_COMPILED = {}


def compile_ptx(kernel, argtypes, cc):
    """PTX of kernel for argtypes on cc, compiled once for both tests."""
    from numba import types
    key = (kernel, argtypes, cc)
    if key not in _COMPILED:
        ptx, restype = cuda.compile_ptx(kernel.py_func, types.void(*argtypes), cc=cc)
        assert restype == types.void
        _COMPILED[key] = ptx
    return _COMPILED[key]


@pytest.mark.parametrize("kernel,argtypes,dtype", kernels() if _usable() is None else [])
def test_kernel_compiles_to_ptx(kernel, argtypes, dtype, cc):
    ptx = compile_ptx(kernel, argtypes, cc)
    assert f".target sm_{cc[0]}{cc[1]}" in ptx
    assert ".entry" in ptx
    name = kernel.__name__
    if dtype == "float32" and name not in F64_BY_DESIGN:
        assert not F64_MATH.findall(ptx), f"{name}: float64 arithmetic in a float32 kernel"
    if name in REGISTERS:
        assert "ld.local" not in ptx and "st.local" not in ptx, f"{name}: local memory"


def _ptxas():
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    found = shutil.which("ptxas") or os.path.join(home, "bin", "ptxas")
    return found if os.path.exists(found) else None


@pytest.mark.skipif(_ptxas() is None, reason="ptxas (CUDA toolkit) not found")
@pytest.mark.parametrize("kernel,argtypes,dtype", [
    k for k in (kernels() if _usable() is None else [])
    if k.values[0].__name__ in REGISTERS])
def test_hot_kernels_fit_a_block_without_spilling(kernel, argtypes, dtype, cc, tmp_path):
    from rnnkit.kernels.cuda import gemm, launch
    (tmp_path / "k.ptx").write_text(compile_ptx(kernel, argtypes, cc))
    out = subprocess.run([_ptxas(), "-v", f"-arch=sm_{cc[0]}{cc[1]}", str(tmp_path / "k.ptx"),
                          "-o", str(tmp_path / "k.cubin")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "0 bytes spill stores" in out.stderr, out.stderr
    registers = int(re.search(r"Used (\d+) registers", out.stderr).group(1))
    threads = gemm.NT if kernel.__name__ == "gemm" else launch.REC_THREADS
    assert registers * threads <= 65536, (registers, threads)
