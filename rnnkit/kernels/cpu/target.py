"""The CPU the kernels compile for: its vector width, its vector registers, and its name.

Numba compiles for the host unless `NUMBA_CPU_NAME` (and `NUMBA_CPU_FEATURES`) name another
CPU. Given a name alone, Numba pairs it with the host's features, so `NUMBA_CPU_NAME=haswell`
on an AVX-512 host still compiles AVX-512 code; here a name given alone stands for that CPU
with its own features (`NUMBA_CPU_FEATURES` set empty, which LLVM reads as "the named CPU's"),
so any host can build and run another x86 CPU's code. `host` and `native` (the compilers'
names for this machine; LLVM knows neither) mean this machine, as when unset. A name LLVM does
not know is a TargetError before anything compiles: with no features, LLVM aborted the process.
This must run before Numba creates its code generator: rnnkit/kernels/cache.py imports this
module first. Where Numba compiled before (a program that used it before importing rnnkit's
kernels), its code generator stays as it was made: a line on stderr says that the name is not
applied, and the ISA and tag below are those of what runs.

What the code generator then emits is asked of it, not inferred from names: a small function
on vectors of 16 floats is compiled to assembly and read (zmm registers: 64-byte vectors and
32 registers; ymm: 32 bytes, and 32 registers where AVX-512's mask registers appear, else 16;
xmm: 16 bytes). Some AVX-512 CPUs prefer 256-bit vectors (LLVM then splits wider ones), which
the probe sees as it is. `ISA` names the result: "avx512", "avx2" (256-bit vectors with fused
multiply-add), or "portable" (anything else: SSE2 on x86, NEON on aarch64); a run names it
with the CPU, e.g. "avx2: haswell" (rnnkit/backends/cpu.py).
"""
import difflib
import hashlib
import os
import sys
import tempfile

import llvmlite.binding as ll
from llvmlite import ir

from numba.core import config

from rnnkit.errors import RnnkitError


class TargetError(RnnkitError):
    """NUMBA_CPU_NAME names a CPU that LLVM does not know."""


def _llvm_says(cpu):
    """What LLVM writes to stderr (file descriptor 2, under Python's sys.stderr) while it makes
    a target machine for `cpu`: it warns there of a CPU it does not know instead of failing,
    and lists the CPUs it knows for "help"."""
    ll.initialize_native_target()
    ll.initialize_native_asmprinter()
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as caught:
            os.dup2(caught.fileno(), 2)
            try:
                ll.Target.from_default_triple().create_target_machine(cpu=cpu, features="")
            finally:
                os.dup2(saved, 2)
            caught.seek(0)
            return caught.read().decode(errors="replace")
    finally:
        os.close(saved)


def _check(name):
    """TargetError unless LLVM knows the CPU `name` (a target machine for it, without
    features: about a tenth of a millisecond)."""
    if not _llvm_says(name):
        return
    # a heading, then a CPU a line (LLVM lists them once a process: then none)
    listed = _llvm_says("help").split("\n\n")
    known = [line.split()[0] for line in listed[1].splitlines() if line.strip()] \
        if len(listed) > 1 else []
    close = difflib.get_close_matches(name, known, n=2)
    if close:
        raise TargetError(f"NUMBA_CPU_NAME={name} is not a CPU LLVM knows; did you mean "
                          f"{' or '.join(close)}? (host: this machine)")
    examples = [c for c in ("haswell", "skylake-avx512", "znver3", "generic")
                if c in known or not known] or known[:4]
    raise TargetError(f"NUMBA_CPU_NAME={name} is not a CPU LLVM knows (e.g. "
                      f"{', '.join(examples)}; host: this machine)")


# Set in the environment, where Numba reads it again at each compile (a change there would
# reset its whole config) and compile workers inherit it.
NAME = os.environ.get("NUMBA_CPU_NAME")     # the CPU asked for (None: this machine)
if NAME is not None and NAME.strip().lower() in ("", "host", "native"):
    del os.environ["NUMBA_CPU_NAME"]
    NAME = None
    config.reload_config()
if NAME:
    _check(NAME)
    if os.environ.get("NUMBA_CPU_FEATURES") is None:
        os.environ["NUMBA_CPU_FEATURES"] = ""
        config.reload_config()


def _asm(build):
    """The assembly of a one-function module that `build(module)` fills, as Numba's code
    generator emits it for its target."""
    from numba.core.registry import cpu_target

    codegen = cpu_target.target_context.codegen()
    module = codegen._create_empty_module("rnnkit_target_probe")
    build(module)
    parsed = ll.parse_assembly(str(module))
    parsed.verify()
    return codegen._tm.emit_assembly(parsed)


def _probe():
    """(vector bytes, vector registers, whether fused multiply-add is an instruction)."""
    f32 = ir.FloatType()
    v16 = ir.VectorType(f32, 16)
    v8 = ir.VectorType(f32, 8)

    def fma(module):
        fnty = ir.FunctionType(ir.VoidType(), [v16.as_pointer()] * 2)
        fn = ir.Function(module, fnty, "probe")
        b = ir.IRBuilder(fn.append_basic_block())
        x, y = (b.load(p, align=4) for p in fn.args)
        llvm_fma = ir.Function(module, ir.FunctionType(v16, [v16] * 3), "llvm.fma.v16f32")
        b.store(b.call(llvm_fma, [x, y, x]), fn.args[0], align=4)
        b.ret_void()

    def masked(module):
        mask_ty = ir.VectorType(ir.IntType(1), 8)
        fnty = ir.FunctionType(ir.VoidType(), [v8.as_pointer(), ir.VectorType(ir.IntType(32), 8)])
        fn = ir.Function(module, fnty, "probe")
        b = ir.IRBuilder(fn.append_basic_block())
        ptr, lim = fn.args
        mask = b.icmp_signed("<", ir.Constant(ir.VectorType(ir.IntType(32), 8), list(range(8))),
                             lim)
        assert mask.type == mask_ty
        ptr_ty = "p0" if ll.llvm_version_info[0] >= 15 else "p0v8f32"
        load = ir.Function(module, ir.FunctionType(v8, [v8.as_pointer(), ir.IntType(32),
                                                        mask_ty, v8]),
                           f"llvm.masked.load.v8f32.{ptr_ty}")
        value = b.call(load, [ptr, ir.Constant(ir.IntType(32), 4), mask,
                              ir.Constant(v8, [0.0] * 8)])
        b.store(b.fadd(value, value), ptr, align=4)
        b.ret_void()

    text = _asm(fma)
    has_fma = "vfmadd" in text or "fmla" in text
    x86 = ll.get_process_triple().startswith(("x86_64", "i386", "i686"))
    if not x86:
        return 16, 32, has_fma
    if "zmm" in text:
        return 64, 32, has_fma
    if "ymm" in text:
        return 32, 32 if "%k" in _asm(masked) else 16, has_fma
    return 16, 16, has_fma


def _codegen_key():
    """(triple, CPU name, features) as Numba's code generator compiles for them."""
    from numba.core.registry import cpu_target

    return cpu_target.target_context.codegen().magic_tuple()


def _made_before():
    """Whether Numba's code generator was made before this module set the config (Numba
    compiled before): its features then differ from those the config asks for now. It is
    kept (remaking it would leave what Numba compiled before, and its runtime, with the old
    one), and the environment is made to ask for it, so that compile workers build the same."""
    from numba.core.registry import cpu_target

    made = getattr(cpu_target.target_context.codegen(), "_tm_features", config.CPU_FEATURES)
    if made == config.CPU_FEATURES:
        return False
    os.environ["NUMBA_CPU_FEATURES"] = made
    config.reload_config()
    return True


NOT_APPLIED = bool(NAME) and _made_before()
VECTOR_BYTES, REGISTERS, FMA = _probe()
ISA = ("avx512" if REGISTERS == 32 and VECTOR_BYTES >= 32 and FMA else
       "avx2" if VECTOR_BYTES == 32 and FMA else "portable")
KEY = _codegen_key()
CPU = KEY[1]                # the CPU whose instruction timings LLVM schedules for
# What the note before a first compile names: the CPU of NUMBA_CPU_NAME (None: this machine)
CHOSEN = f"{NAME} ({ISA})" if NAME and not NOT_APPLIED else None
if NOT_APPLIED:
    print(f"warning: NUMBA_CPU_NAME={NAME} is not applied: Numba compiled before rnnkit's "
          f"kernels were imported; they are built for this machine ({ISA})", file=sys.stderr,
          flush=True)
# The end of the cache folder's name (rnnkit/kernels/cache.py), e.g. "avx2-1f0e9d8c".
TAG = f"{ISA}-{hashlib.sha256(repr(KEY).encode()).hexdigest()[:8]}"
