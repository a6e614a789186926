"""The cores' peak: float32 fused multiply-adds a second, the ceiling under every GFLOP/s figure.

A loop of 12 independent vector fused multiply-adds (enough to cover the latency of the
FMA units of the CPUs we know), built in LLVM IR with llvmlite and compiled for the host, or
for the CPU that --isa names (bench/train_step.py's settings, as rnnkit's kernels take them),
with the vector width the kernels use there (kernels/cpu/target.py). Each of --threads
threads runs it at once (ctypes lets go of the GIL); each reports its own rate in its thread's
CPU time, so a neighbour's load shows as a lower clock, not as lost time.

    python bench/fma_peak.py --threads 2
    python bench/fma_peak.py --threads 2 --isa avx2
"""
import argparse
import ctypes
import os
import sys
import threading
import time

from train_step import ISA_ENV, ISA_MARK, host_has_avx512, isa_environ

ACCUMULATORS = 12


def build(lanes):
    """LLVM IR of `void loop(i64 n, float* out)`: n rounds of ACCUMULATORS fused
    multiply-adds on <lanes x float>, their sum stored to out[:lanes]."""
    from llvmlite import ir

    f32, i64 = ir.FloatType(), ir.IntType(64)
    vec = ir.VectorType(f32, lanes)
    module = ir.Module(name="fma_peak")
    fma = ir.Function(module, ir.FunctionType(vec, [vec] * 3), f"llvm.fma.v{lanes}f32")
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [i64, f32.as_pointer()]), "loop")
    n, out = fn.args
    entry, body, done = (fn.append_basic_block(s) for s in ("entry", "body", "done"))
    b = ir.IRBuilder(entry)

    def splat(x):
        return ir.Constant(vec, [ir.Constant(f32, x)] * lanes)

    mul, add = splat(1.0000001), splat(1e-8)
    b.branch(body)
    b.position_at_end(body)
    k = b.phi(i64)
    accs = [b.phi(vec) for _ in range(ACCUMULATORS)]
    nxt = [b.call(fma, [a, mul, add]) for a in accs]
    k1 = b.add(k, ir.Constant(i64, 1))
    b.cbranch(b.icmp_signed("<", k1, n), body, done)
    k.add_incoming(ir.Constant(i64, 0), entry)
    k.add_incoming(k1, body)
    for j, (a, x) in enumerate(zip(accs, nxt)):
        a.add_incoming(splat(float(j)), entry)
        a.add_incoming(x, body)
    b.position_at_end(done)
    total = nxt[0]
    for x in nxt[1:]:
        total = b.fadd(total, x)
    b.store(total, b.bitcast(out, vec.as_pointer()), align=4)
    b.ret_void()
    return str(module)


def compile_loop():
    """(the compiled loop as a ctypes function, lanes, the engine that owns its code)."""
    import llvmlite.binding as ll
    from rnnkit.kernels.cpu import target      # sets NUMBA_CPU_FEATURES for a bare name

    lanes = max(4, target.VECTOR_BYTES // 4)
    ll.initialize_native_target()
    ll.initialize_native_asmprinter()
    name = os.environ.get("NUMBA_CPU_NAME") or ll.get_host_cpu_name()
    features = os.environ.get("NUMBA_CPU_FEATURES")
    if features is None:
        features = ll.get_host_cpu_features().flatten()
    machine = ll.Target.from_default_triple().create_target_machine(
        cpu=name, features=features, opt=3)
    mod = ll.parse_assembly(build(lanes))
    mod.verify()
    engine = ll.create_mcjit_compiler(mod, machine)
    engine.finalize_object()
    proto = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.POINTER(ctypes.c_float))
    return proto(engine.get_function_address("loop")), lanes, engine


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.0, help="about this long a round")
    ap.add_argument("--isa", choices=list(ISA_ENV), default="native",
                    help="the CPU the loop compiles for, as bench/train_step.py --isa")
    args = ap.parse_args()
    if os.environ.get(ISA_MARK) != args.isa:
        # Numba and target.py read the CPU's name when they load: start again under it
        if args.isa == "avx512" and not host_has_avx512():
            sys.exit("--isa avx512: this CPU has no AVX-512")
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]],
                  isa_environ(args.isa))
    loop, lanes, _engine = compile_loop()
    flop = 2 * lanes * ACCUMULATORS
    out = (ctypes.c_float * lanes)()
    t0 = time.thread_time()
    loop(10 ** 6, out)
    n = max(10 ** 6, int(args.seconds * 10 ** 6 / (time.thread_time() - t0 + 1e-9)))
    print(f"{lanes}-lane vectors ({os.environ.get('NUMBA_CPU_NAME') or 'host'}), "
          f"{ACCUMULATORS} accumulators, {args.threads} thread(s) at once")
    for r in range(args.rounds):
        rates = [0.0] * args.threads

        def run(i):
            buf = (ctypes.c_float * lanes)()
            t = time.thread_time()
            loop(n, buf)
            rates[i] = n * flop / (time.thread_time() - t) / 1e9

        threads = [threading.Thread(target=run, args=(i,)) for i in range(args.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        print(f"round {r + 1}: " + ", ".join(f"{x:.1f}" for x in rates) +
              f" GFLOP/s a thread; {sum(rates):.1f} in all")


if __name__ == "__main__":
    main()
