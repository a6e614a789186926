"""The cores this process may use: the affinity mask, a cgroup CPU quota, SLURM, OpenMP.

Apart from rnnkit/backends/threads.py (the kernels' thread policy), which needs Numba: the corpus
writer sizes its compression threads from this without loading a compiler.
"""
import math
import os


def cgroup_folders(controller):
    """(folder, is v2) of this process's cgroup and each above it, for `controller` ("cpu",
    "memory"): where its limits are (the tightest may be on the way up)."""
    try:
        with open("/proc/self/cgroup", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            roots = [("/sys/fs/cgroup", True)]
        elif controller in controllers.split(","):
            roots = [(f"/sys/fs/cgroup/{controllers}", False),
                     (f"/sys/fs/cgroup/{controller}", False)]
        else:
            continue
        parts = path.strip("/").split("/") if path.strip("/") else []
        out += [(os.path.join(root, *parts[:depth]), v2) for root, v2 in roots
                for depth in range(len(parts), -1, -1)]
    return list(dict.fromkeys(out))     # v1's "memory" root may be named twice


def _cgroup_quota():
    """CPUs allowed by this process's cgroup CPU quota (v2 cpu.max or v1 cfs), or None."""
    quotas = [_read_quota(folder, "cpu.max" if v2 else "cpu.cfs_quota_us")
              for folder, v2 in cgroup_folders("cpu")]
    return min((q for q in quotas if q is not None), default=None)


def _read_quota(folder, name):
    try:
        with open(os.path.join(folder, name), encoding="ascii") as f:
            fields = f.read().split()
        if name == "cpu.max":
            quota, period = fields[0], fields[1] if len(fields) > 1 else "100000"
        else:
            quota = fields[0]
            with open(os.path.join(folder, "cpu.cfs_period_us"), encoding="ascii") as f:
                period = f.read().split()[0]
        if quota in ("max", "-1"):
            return None
        return max(1, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError, IndexError):
        return None


def budget(local_ranks=1):
    """(cores, reason): the cores this process may use, and what limits them. The affinity
    mask and the cgroup quota are the node's, so with several ranks of one job on a node each
    gets its share of them; but a mask no larger than SLURM_CPUS_PER_TASK is this task's own
    (srun bound it), and SLURM_CPUS_PER_TASK and OMP_NUM_THREADS are each process's already."""
    own = {}
    for var in ("SLURM_CPUS_PER_TASK", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").split(",")[0].strip()
        if value.isdigit() and int(value) > 0:
            own[var] = int(value)
    try:
        cores = len(os.sched_getaffinity(0))
        mask = (cores, f"the CPU affinity mask allows {cores}")
    except AttributeError:  # macOS
        cores = os.cpu_count() or 1
        mask = (cores, f"the machine has {cores}")
    shared = [mask] if cores > own.get("SLURM_CPUS_PER_TASK", cores - 1) else []
    found = [] if shared else [mask]
    quota = _cgroup_quota()
    if quota is not None:
        shared.append((quota, f"the cgroup CPU quota allows {quota}"))
    if local_ranks > 1:
        shared = [(max(1, n // local_ranks), f"{why}, shared by {local_ranks} ranks on this "
                   f"node") for n, why in shared]
    found += shared + [(n, f"{var}={n}") for var, n in own.items()]
    return min(found, key=lambda f: f[0])
