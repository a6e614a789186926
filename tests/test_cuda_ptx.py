"""Every CUDA kernel compiles to PTX for compute capability 8.0 (A100) and 9.0 (H100, H200)
with every dtype it runs with: the check of types and lowering that the simulator, which runs
kernels as Python, cannot make. No GPU needed: NVVM and libdevice from the CUDA toolkit are.

The signatures are each kernel module's SIGNATURES list; tests/test_cuda_kernels.py checks
under the simulator that every launch's argument types are among them. Beyond compiling: the
float32 kernels that hold no float64 by design do no float64 arithmetic (a Python float
literal in a body would promote it), and the hot kernels keep their accumulators in
registers (no local memory) and, assembled by the toolkit's ptxas where it is installed,
spill nothing, and as many of their blocks fit on a multiprocessor (registers, shared memory)
as the plans assume: the persistent recurrence at the issue's shapes on an A100 and an H100.
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
F64_BY_DESIGN = {"sumsq", "sum_rows", "xent_rows", "dropout", "sample_rows",
                 "sample_blocks", "lstm_backward_steps", "gru_backward_steps",
                 "rnn_backward_steps"}           # BPTT: the bias gradients' float64 sums
# kernels whose per-thread arrays must stay in registers
REGISTERS = {"gemm", "lstm_forward_steps", "lstm_backward_steps", "gru_forward_steps",
             "gru_backward_steps", "rnn_forward_steps", "rnn_backward_steps"}
# (multiprocessors, shared memory a block may opt in to, shared memory per multiprocessor)
GPUS = {(8, 0): (108, 163 * 1024, 164 * 1024), (9, 0): (132, 227 * 1024, 228 * 1024)}
F64_MATH = re.compile(r"\b(?:add|sub|mul|div|fma|sqrt)(?:\.rn)?\.f64\b")


def _usable():
    if ENABLE_CUDASIM:
        return "the CUDA simulator replaces the compiler (run without NUMBA_ENABLE_CUDASIM)"
    from numba.cuda.cudadrv import nvvm
    if not nvvm.is_available():
        return "NVVM (the CUDA toolkit's compiler library) is not available"
    return None


pytestmark = pytest.mark.skipif(_usable() is not None, reason=str(_usable()))


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
    if name.endswith("_steps"):         # the recurrence: warp shuffles and a light poll
        assert "shfl.sync.bfly" in ptx and "nanosleep" in ptx, name
        assert "ld.global.cv" in ptx or not hasattr(cuda, "ldcv"), name


def _ptxas():
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or "/usr/local/cuda"
    found = shutil.which("ptxas") or os.path.join(home, "bin", "ptxas")
    return found if os.path.exists(found) else None


def ptxas_report(kernel, argtypes, cc, tmp_path):
    """(registers, spill bytes, static shared bytes) of kernel, assembled by ptxas -v."""
    (tmp_path / "k.ptx").write_text(compile_ptx(kernel, argtypes, cc))
    out = subprocess.run([_ptxas(), "-v", f"-arch=sm_{cc[0]}{cc[1]}", str(tmp_path / "k.ptx"),
                          "-o", str(tmp_path / "k.cubin")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    spills = sum(int(n) for n in re.findall(r"(\d+) bytes spill (?:stores|loads)", out.stderr))
    registers = int(re.search(r"Used (\d+) registers", out.stderr).group(1))
    smem = re.search(r"(\d+) bytes smem", out.stderr)
    return registers, spills, int(smem.group(1)) if smem else 0


def blocks_per_sm(registers, threads, shared, sm_shared):
    """Blocks of `threads` threads resident on one multiprocessor of compute capability 8.x or
    9.x: 64K registers (allocated per warp in units of 256), 64 warps, and its shared memory
    (1 KB of it reserved per block)."""
    warps = -(-threads // 32)
    per_warp = -(-registers * 32 // 256) * 256
    by_regs = 65536 // (per_warp * warps)
    by_shared = sm_shared // (shared + 1024) if shared else 64
    return min(by_regs, by_shared, 64 // warps)


@pytest.mark.skipif(_ptxas() is None, reason="ptxas (CUDA toolkit) not found")
@pytest.mark.parametrize("kernel,argtypes,dtype", [
    k for k in (kernels() if _usable() is None else [])
    if k.values[0].__name__ in REGISTERS])
def test_hot_kernels_spill_nothing_and_fit_the_plan(kernel, argtypes, dtype, cc, tmp_path):
    """ptxas's report of each hot kernel: no spills; the tiled product 2 blocks per SM (float64:
    1); each
    recurrence's persistent plan for the char model's layer (H = 512) at N = 1, 16 and 128,
    and the word model's (H = 650, N = 20), resident on every SM at once on that GPU (the
    grid barrier needs it)."""
    from rnnkit.kernels.cuda import gemm, recurrent
    registers, spills, static = ptxas_report(kernel, argtypes, cc, tmp_path)
    assert spills == 0, (kernel.__name__, registers, spills)
    name = kernel.__name__
    sms, shared_max, sm_shared = GPUS[cc]
    if name == "gemm":
        shared = 2 * gemm.BK * gemm.PAD * argtypes[0].dtype.bitwidth // 8
        want = 2 if dtype == "float32" else 1
        assert blocks_per_sm(registers, gemm.NT, static + shared, sm_shared) >= want, registers
        return
    if dtype != "float32":
        return                          # float64 runs the same code; its plans may differ
    G = {"lstm": 4, "gru": 3, "rnn": 1}[name.split("_")[0]]
    backward = "backward" in name
    for H, N in ((512, 1), (512, 16), (512, 128), (650, 20)):
        def resident(shared):
            return sms * blocks_per_sm(registers, recurrent.NT, static + shared, sm_shared)
        plan = recurrent.make_plan(G, backward, H, N, 4, sms, shared_max, resident)
        assert plan.persistent and plan.blocks <= sms, (H, N, registers, plan)
