"""The kernels on other CPUs than this one (rnnkit/kernels/cpu/target.py): what each target
compiles to, that its builds stay apart in the cache, and the portable build's numbers.

Numba compiles for another CPU when NUMBA_CPU_NAME names one, on any host; each case runs in a
fresh process, since the target is fixed when Numba starts. Without a cache (RNNKIT_NO_CACHE)
the processes compile, so the assembly can be read.
"""
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VECTOR = re.compile(r"%([xyz])mm\d+")


def run(script, cpu, **env):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")}
    environ.update(env, PYTHONPATH=ROOT)
    if cpu:
        environ["NUMBA_CPU_NAME"] = cpu
    p = subprocess.run([sys.executable, "-c", script], env=environ, capture_output=True,
                       text=True, cwd=ROOT, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def hot_loops(asm):
    """The single-block loops that hold fused multiply-adds: a label, straight-line code and a
    jump back to the label (the tiles' loops over k; nothing else in the leaf multiplies)."""
    lines = [s for s in asm.splitlines() if s.strip() and not s.lstrip().startswith(("#", "."))
             or re.match(r"^\.?L\w+:", s)]
    loops, label = [], None
    for i, line in enumerate(lines):
        m = re.match(r"^(\.?L\w+|\w+):", line)
        if m:
            label = (m.group(1), i)
            continue
        jump = re.match(r"\s+j\w+\s+(\.?L\w+)", line)
        if jump:
            if label and jump.group(1) == label[0]:
                body = lines[label[1] + 1:i + 1]
                if any("vfmadd" in b for b in body):
                    loops.append(body)
            label = None
    return loops


def spills(body, frame_pointer):
    """Instructions that store a vector register to the stack or load one from it."""
    base = r"\((%rsp|%rbp)" if frame_pointer else r"\(%rsp"
    return [b for b in body if VECTOR.search(b) and re.search(base, b)]


ASM = """
import json
import numpy as np
from numba import njit, types
from rnnkit.kernels.cpu import leaf, target, tiles

leaf.ready(np.float32, [tiles.LEAF])
leaf.ready(np.float64, [tiles.LEAF])
out = {"isa": target.ISA, "MR": tiles.MR, "NV": tiles.NV,
       "leaf": [tiles.LEAF.compiled[t]._library.get_asm_str()
                for t in (types.float32, types.float64)]}
# A tile too big for the registers (4 x MR x 2 vectors of accumulators): the detector must flag it.
big = tiles.make_tile(4 * tiles.MR, tiles.NV)

@njit
def oversized(a, b, c, K):
    big(a, 0, K, 1, 0, b, 0, 64, 0, c, 0, 64, K, 1, 4 * tiles.MR, 2 * target.VECTOR_BYTES // 4)

a = np.ones((4 * tiles.MR, 16), np.float32)
b, c = np.ones((16, 64), np.float32), np.zeros((4 * tiles.MR, 64), np.float32)
oversized(a, b, c, 16)
assert (c[:, :2 * target.VECTOR_BYTES // 4] == 16).all()
out["oversized"] = oversized.inspect_asm(oversized.signatures[0])
print(json.dumps(out))
"""


@pytest.mark.parametrize("cpu,isa,register", [("haswell", "avx2", "y"),
                                              ("skylake-avx512", "avx512", "z")])
def test_tile_loops_keep_their_accumulators_in_registers(cpu, isa, register):
    """The tile shape chosen for each target (tiles.SHAPES) compiles to loops over k that never
    spill a vector register to the stack, for float32 and float64; on AVX2 the code is AVX2
    (no 512-bit registers) whatever the host."""
    out = run(ASM, cpu, RNNKIT_NO_CACHE="1")
    assert out["isa"] == isa
    for asm in out["leaf"]:
        loops = hot_loops(asm)
        # panels of MR rows and the remainder's powers of two, each whole and masked, for one
        # vector and for NV (and on AVX-512 their half-width forms): at least the full
        # panels' loops are there
        assert len(loops) >= 4, asm[:2000]
        # AVX-512 takes a last half-vector block of columns in 256-bit registers (tiles.HALF)
        allowed = {"z", "y", "x"} if register == "z" else {register, "x"}
        assert {m for b in loops for line in b for m in VECTOR.findall(line)} <= allowed
        assert any(register in VECTOR.findall(line) for b in loops for line in b)
        frame = "movq\t%rsp, %rbp" in asm
        for body in loops:
            assert not spills(body, frame), "\n".join(body)
    big = hot_loops(out["oversized"])
    assert big and any(spills(b, "movq\t%rsp, %rbp" in out["oversized"]) for b in big)


CACHED = """
import json
import numpy as np
from rnnkit.kernels.cpu import blocks, compile, leaf, target
from rnnkit.kernels.cpu.lstm import _forward

leaf.ready(np.float32)
blocks.add_row(np.zeros(3, np.float32), np.ones(3, np.float32))
print(json.dumps({"isa": target.ISA, "folder": compile.numba.config.CACHE_DIR,
                  "hits": sum(blocks.add_row.stats.cache_hits.values()),
                  "misses": sum(blocks.add_row.stats.cache_misses.values()),
                  "leaf_hits": sum(leaf.LEAVES[0].compiled[t].cache_hits
                                   for t in leaf.LEAVES[0].compiled)}))
"""


def test_builds_for_different_cpus_stay_apart_in_the_cache(tmp_path):
    """A haswell build is never loaded by a skylake-avx512 run, nor the other way round: each
    compiles its own, then loads it on the next run."""
    env = {"NUMBA_CACHE_DIR": str(tmp_path)}
    first = {cpu: run(CACHED, cpu, **env) for cpu in ("haswell", "skylake-avx512")}
    again = {cpu: run(CACHED, cpu, **env) for cpu in ("skylake-avx512", "haswell")}
    assert first["haswell"]["folder"] != first["skylake-avx512"]["folder"]
    for cpu in first:
        assert first[cpu]["misses"] == 1 and first[cpu]["hits"] == 0
        assert first[cpu]["leaf_hits"] == 0
        assert again[cpu]["hits"] == 1 and again[cpu]["misses"] == 0
        assert again[cpu]["leaf_hits"] > 0
        assert again[cpu]["folder"] == first[cpu]["folder"]


PORTABLE = """
import json
import numpy as np
from numba import njit
from rnnkit.kernels.cpu import leaf, target, tiles
from rnnkit.model.network import Model, ModelConfig
from tests import naive
from tests.test_backend import fd_errors, make

out = {"isa": target.ISA, "vector_bytes": target.VECTOR_BYTES}
product = njit(lambda *args: tiles.product(*args))
rng = np.random.default_rng(0)
errors = []
for dtype in (np.float32, np.float64):
    leaf.ready(dtype)
    a, b = rng.standard_normal((13, 9)).astype(dtype), rng.standard_normal((9, 7)).astype(dtype)
    c = np.zeros((13, 7), dtype)
    product(a, 0, 9, 1, 0, 13, 9, b, 0, 7, 7, c, 0, 7)
    errors.append(float(np.abs(c - a @ b).max()))
out["product"] = errors
out["fd"], out["naive"] = {}, {}
from rnnkit.backends import get_backend
cpu = get_backend("cpu")
for cell in ("lstm", "gru", "rnn-tanh", "rnn-relu"):
    model, x, y, state = make(cpu, cell, 2)
    out["fd"][cell] = max(fd_errors(model, x, y, state).values())
    loss = model.forward_backward(x, y, state.copy())[0]
    ref = naive.model_loss(model.cfg, model.p, x, y, state.h, state.c)[0]
    out["naive"][cell] = abs(loss - ref)
print(json.dumps(out))
"""


@pytest.mark.parametrize("cpu", ["generic", "nehalem"])
def test_a_cpu_without_avx2_runs_a_portable_build(cpu, tmp_path):
    """NUMBA_CPU_NAME=generic (SSE2), or a CPU with neither AVX2 nor AVX-512 (nehalem: SSE4.2,
    no fused multiply-add instruction): 16-byte vectors, the same numbers as the oracle and
    exact gradients."""
    out = run(PORTABLE, cpu, NUMBA_CACHE_DIR=str(tmp_path))
    assert out["isa"] == "portable" and out["vector_bytes"] == 16
    assert out["product"][0] < 1e-4 and out["product"][1] < 1e-12
    assert max(out["fd"].values()) < 1e-6, out["fd"]
    assert max(out["naive"].values()) < 1e-12, out["naive"]



TARGET = """
import json
from rnnkit.kernels.cpu import target
print(json.dumps({"isa": target.ISA, "tag": target.TAG, "key": list(target.KEY)}))
"""


def test_host_and_native_mean_this_machine():
    """Compilers' names for this machine, which LLVM does not know: it aborted the process
    ("64-bit code requested on a subtarget that doesn't support it")."""
    here = run(TARGET, None)
    for cpu in ("host", "native", "HOST"):
        assert run(TARGET, cpu) == here


UNKNOWN = """
import json
from numba.core.registry import cpu_target
from rnnkit.errors import RnnkitError
try:
    from rnnkit.kernels import cache
except RnnkitError as err:
    print(json.dumps({"error": str(err), "type": type(err).__name__,
                      "compiled": "_toplevel_target_context" in vars(cpu_target)}))
"""


def test_an_unknown_cpu_is_one_line_before_anything_compiles(tmp_path):
    """A misspelt NUMBA_CPU_NAME: a TargetError at import of the kernels, before Numba made
    its code generator (LLVM printed a warning a compile, then aborted the process); from
    the command line, one line and exit code 1."""
    from tests.tiny_run import make_corpus

    env = {**os.environ, "NUMBA_CPU_NAME": "haswel", "PYTHONPATH": ROOT}
    out = subprocess.run([sys.executable, "-c", UNKNOWN], capture_output=True, text=True,
                         cwd=ROOT, timeout=600, env=env)
    assert out.returncode == 0 and out.stderr == "", out.stderr
    assert json.loads(out.stdout) == {
        "error": "NUMBA_CPU_NAME=haswel is not a CPU LLVM knows; did you mean haswell? "
                 "(host: this machine)", "type": "TargetError", "compiled": False}
    corpus = make_corpus(tmp_path)
    for name, says in (("haswel", "did you mean haswell?"), ("no-such-cpu", "(e.g. haswell, ")):
        cli = subprocess.run([sys.executable, "-m", "rnnkit", "train", corpus, "-o",
                              str(tmp_path / "run"), "--threads", "1"], capture_output=True,
                             text=True, cwd=ROOT, timeout=600,
                             env={**env, "NUMBA_CPU_NAME": name})
        lines = cli.stderr.splitlines()
        assert cli.returncode == 1 and cli.stdout == "" and len(lines) == 1, cli.stderr
        assert lines[0].startswith(f"Error: NUMBA_CPU_NAME={name} is not a CPU LLVM knows")
        assert says in lines[0]
    assert not (tmp_path / "run").exists()


LATE = """
import json, os, subprocess, sys
import numba
numba.njit(lambda x: x + 1)(1)          # Numba's code generator is made here
from rnnkit.kernels.cpu import target
child = subprocess.run([sys.executable, "-c", "from rnnkit.kernels.cpu import target; "
                        "print(target.TAG)"], capture_output=True, text=True, check=True)
print(json.dumps({"isa": target.ISA, "tag": target.TAG, "child": child.stdout.strip(),
                  "child_stderr": child.stderr}))
"""


def test_a_cpu_name_numba_compiled_before_is_said_not_applied():
    """Where Numba compiled before rnnkit's kernels were imported, its code generator is this
    machine's, NUMBA_CPU_NAME notwithstanding: one line says so, the ISA is this machine's,
    and a compile worker (a child process) builds what the parent runs: the same tag."""
    here = run(TARGET, None)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")}
    p = subprocess.run([sys.executable, "-c", LATE], capture_output=True, text=True, cwd=ROOT,
                       timeout=600, env={**environ, "NUMBA_CPU_NAME": "haswell",
                                         "PYTHONPATH": ROOT})
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert p.stderr.splitlines() == [
        f"warning: NUMBA_CPU_NAME=haswell is not applied: Numba compiled before rnnkit's "
        f"kernels were imported; they are built for this machine ({here['isa']})"]
    assert out["isa"] == here["isa"]
    assert out["child"] == out["tag"] and out["child_stderr"] == ""


def test_the_first_line_the_metrics_and_info_name_the_target():
    """This machine's target in the first line of a run (the metrics and info: tests/
    test_compare.py), and "this machine" in the note before a first compile."""
    from rnnkit.backends.cpu import CPUBackend
    from rnnkit.kernels.cpu import target

    backend = CPUBackend(threads_=1)
    assert backend.describe() == f"cpu ({target.ISA}: {target.CPU}), threads: 1 (--threads 1)"
    # "this machine", or the CPU NUMBA_CPU_NAME chose where the suite runs under one
    assert backend.compiles_for() == (target.CHOSEN or "this machine")


@pytest.mark.slow                   # a cold compile for haswell, in a fresh process
def test_a_run_for_another_cpu_says_so(tmp_path):
    """NUMBA_CPU_NAME=haswell: train's first line, its note before compiling, metrics.jsonl's
    start event and rnnkit info name it (they said "cpu, threads: 1" and "for this machine")."""
    from tests.tiny_run import make_corpus

    corpus = make_corpus(tmp_path)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")},
           "NUMBA_CPU_NAME": "haswell", "NUMBA_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": ROOT}

    def rnnkit(*args):
        p = subprocess.run([sys.executable, "-m", "rnnkit", *map(str, args)], env=env,
                           capture_output=True, text=True, cwd=ROOT, timeout=900)
        assert p.returncode == 0, p.stderr[-3000:]
        return p

    run = tmp_path / "run"
    lines = rnnkit("train", corpus, "-o", run, "--hidden", 8, "--embed", 4, "--layers", 1,
                   "--batch-size", 4, "--seq-len", 8, "--max-steps", 1, "--threads", 1,
                   "--no-progress").stderr.splitlines()
    assert lines[0] == "cpu (avx2: haswell), threads: 1 (--threads 1)", lines
    assert any(line.startswith("compiling the lstm kernels for haswell (avx2): ")
               for line in lines), lines
    start = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert start == {"event": "start", "step": 0, "target": "cpu (avx2: haswell)"}
    assert " in 1 session on cpu (avx2: haswell); " in rnnkit("info", run).stdout
