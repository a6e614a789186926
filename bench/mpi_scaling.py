"""Weak scaling over MPI: R ranks x 1 thread, each with N streams, against 1 rank x 1 thread.

Each side trains the same model (LSTM 2x512, char level, T=64, Adam, clip 5) for a fixed time
in fresh processes, alternating; a rank's throughput is its N*T tokens per step over the step
time. The allreduce of the flat gradient is timed on its own inside the 2-rank job (the same
message, back to back), which gives the bandwidth that a ring allreduce model extends to more
ranks: t(R) = 2 (R - 1) / R * bytes / bandwidth + 2 (R - 1) * latency.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/mpi_scaling.py
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys

CHILD = r"""
import json, sys, time
import numpy as np
from rnnkit.training.distributed import communicator
comm = communicator()
from rnnkit.backends import get_backend
from rnnkit.model.network import Model, ModelConfig
from rnnkit.model.optim import clip_gradients, make_optimizer
N, T, H = (int(a) for a in sys.argv[1:4])
seconds = float(sys.argv[4])
backend = get_backend("cpu", threads=1)
model = Model(ModelConfig(cell="lstm", vocab_size=65, embed=64, hidden=H, layers=2),
              backend=backend)
rng = np.random.default_rng(comm.rank)
x, y = rng.integers(0, 65, (N, T)), rng.integers(0, 65, (N, T))
opt = make_optimizer("adam", model.params, backend)
state = [model.init_state(N)]
reduce_s = []

def step():
    _, state[0] = model.forward_backward(x, y, state[0])
    t = time.perf_counter()
    comm.average(model.grads)
    reduce_s.append(time.perf_counter() - t)
    clip_gradients(model.grads, 5.0, backend=backend)
    opt.step(model.grads)

for _ in range(3):
    step()
comm.barrier()
reduce_s.clear()
times, start = [], time.perf_counter()
while comm.decide(time.perf_counter() - start < seconds):
    t = time.perf_counter()
    step()
    times.append(time.perf_counter() - t)
# the allreduce alone, the same message back to back
grads = model.grads.copy()
comm.barrier()
alone = []
for _ in range(20):
    t = time.perf_counter()
    comm.average(grads)
    alone.append(time.perf_counter() - t)
if comm.rank == 0:
    print(json.dumps({"tokens_per_s": N * T / float(np.median(times)),
                      "step_s": float(np.median(times)),
                      "allreduce_in_step_s": float(np.median(reduce_s)) if reduce_s else 0.0,
                      "allreduce_alone_s": float(np.median(alone)),
                      "grad_bytes": int(model.grads.nbytes), "steps": len(times)}))
"""


def run(ranks, args):
    cmd = [sys.executable, "-c", CHILD, str(args.batch), "64", str(args.hidden), str(args.seconds)]
    if ranks > 1:
        mpiexec = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or "mpiexec"
        cmd = [mpiexec, "-n", str(ranks), *cmd]
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
           and not k.startswith(("PMI_", "OMPI_", "SLURM_"))}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ring(R, nbytes, bandwidth, latency):
    return 2 * (R - 1) / R * nbytes / bandwidth + 2 * (R - 1) * latency


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32, help="streams per rank")
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    run(1, argparse.Namespace(**{**vars(args), "seconds": 1.0}))     # compile, warm the cache
    one, many = [], []
    for r in range(args.rounds):
        for ranks in ((1, args.ranks) if r % 2 == 0 else (args.ranks, 1)):
            (one if ranks == 1 else many).append(run(ranks, args))
        print(f"round {r + 1}: 1 rank {one[-1]['tokens_per_s']:,.0f} tok/s, "
              f"{args.ranks} ranks {many[-1]['tokens_per_s']:,.0f} tok/s per rank", flush=True)
    solo = statistics.median(x["tokens_per_s"] for x in one)
    per_rank = statistics.median(x["tokens_per_s"] for x in many)
    ratios = [m["tokens_per_s"] / o["tokens_per_s"] for o, m in zip(one, many)]
    nbytes = many[0]["grad_bytes"]
    alone = statistics.median(x["allreduce_alone_s"] for x in many)
    in_step = statistics.median(x["allreduce_in_step_s"] for x in many)
    step = statistics.median(x["step_s"] for x in many)
    # 2 ranks: a ring moves bytes once each way; the latency term from a tiny message is
    # below what this measures, so it is taken as 20 us (a typical MPI latency on one node)
    bandwidth = nbytes / max(alone - 2 * 20e-6, 1e-9) * (2 * (args.ranks - 1) / args.ranks)
    print(f"\nLSTM 2x{args.hidden}, N={args.batch} streams per rank, T=64, 1 thread per rank")
    print(f"1 rank: {solo:,.0f} tok/s; {args.ranks} ranks: {per_rank:,.0f} tok/s per rank "
          f"({per_rank / solo:.2f}x; per round {', '.join(f'{x:.2f}' for x in ratios)})")
    print(f"gradient {nbytes / 1e6:.1f} MB; allreduce {alone * 1e3:.2f} ms alone, "
          f"{in_step * 1e3:.2f} ms inside a step of {step * 1e3:.1f} ms "
          f"({in_step / step:.1%}); bandwidth {bandwidth / 1e9:.2f} GB/s")
    print("ring allreduce at that bandwidth, 20 us latency (one node; across nodes the "
          "network's bandwidth replaces it):")
    for R in (8, 64, 512):
        t = ring(R, nbytes, bandwidth, 20e-6)
        net = ring(R, nbytes, 12.5e9, 5e-6)
        print(f"  R={R:>3}: {t * 1e3:7.2f} ms ({t / step:.1%} of this step); over 100 Gb/s "
              f"InfiniBand (12.5 GB/s, 5 us): {net * 1e3:.2f} ms ({net / step:.1%})")


if __name__ == "__main__":
    main()
