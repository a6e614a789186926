"""Threads: how many the machine gives us, how the work is cut, and how many run right now.

Three numbers, kept apart on purpose:
- the budget: cores this process may use (affinity mask, cgroup CPU quota, SLURM, OpenMP;
  rnnkit/cores.py);
- the partition P: how many blocks each kernel cuts its work into (`--threads`, by default
  the budget). The blocks fix the order of every sum, so P alone decides the numbers;
- the running threads k <= P that execute those blocks. k changes while a job runs (the
  Governor below) and never changes a result: with k < P a thread runs several blocks.

Why a governor: the kernels meet at a barrier once per time step, hundreds of times a
training step. When another process takes a core, the thread the OS deschedules holds up the
others at every barrier, and two threads run several times slower than one (bench/RESULTS.md,
"Under load"). Sleeping at the barrier instead of spinning (OMP_WAIT_POLICY=passive) softens
that but costs a lone process a quarter of its speed at H=256 and half at H=64. So each job
times its own steps, now and then tries half (or twice) as many threads, and keeps what runs
faster.

BLAS always runs single-threaded inside a block: its own threads would spin between the small
per-step products and fight ours for the cores (bench/RESULTS.md, "Design figures").

This is the CPU backend's thread policy: it sets the partition in the kernels
(kernels/cpu/blocks.py), which read no thread state of their own.
"""
import os
import time

import numba
from threadpoolctl import threadpool_limits

from rnnkit.cores import budget
from rnnkit.kernels.cpu import blocks

# OpenMP first: it starts a parallel region a hundred times sooner than the workqueue layer
# (whose threads sleep), which matters with a region per time step. Its workers spin between
# regions; the governor (below) runs fewer when other work needs the cores. Set before Numba
# starts a threading layer (numba.set_num_threads or a first parallel kernel).
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]

_limits = None
_partition = None              # set_threads, or the budget at first use
_why = "as set for this process"    # what set _partition (the first line of a run says it)
_governor = None
_cap = None                    # most threads allowed to run for now (None: the partition)


def limit_blas():
    """BLAS runs single-threaded inside the kernels' blocks (applied when kernels load; once:
    threadpoolctl reads /proc/self/maps, about a millisecond)."""
    global _limits
    if _limits is not None:
        return
    import scipy.linalg.cython_blas  # noqa: F401  numba's BLAS: load it so the limit reaches it

    _limits = threadpool_limits(limits=1, user_api="blas")


def set_threads(n=None, local_ranks=1, adaptive=True):
    """Cut the kernels' work into `n` blocks (default: the budget) and run up to `n` threads,
    fewer while that is faster (adaptive). Returns (n, reason)."""
    global _partition, _governor, _why
    if n:
        n, why = int(n), f"--threads {int(n)}"
    else:
        n, why = budget(local_ranks)
    if n > numba.config.NUMBA_NUM_THREADS:
        n, why = numba.config.NUMBA_NUM_THREADS, \
            f"{why}, capped by " + (f"NUMBA_NUM_THREADS={numba.config.NUMBA_NUM_THREADS}"
                                    if os.environ.get("NUMBA_NUM_THREADS") else
                                    f"the {numba.config.NUMBA_NUM_THREADS} core(s) this process "
                                    f"may use")
    n = max(1, n)
    _partition, _why = n, why
    blocks.set_partition(n)
    numba.set_num_threads(n)
    _governor = Governor(n) if adaptive and n > 1 else None
    limit_blas()
    return n, why


def partition():
    """The number of blocks the kernels cut their work into."""
    if _partition is None:
        set_threads()
    return _partition


def reason():
    """What set partition(): the process's setting, which every backend shares."""
    return _why


def cap(k):
    """Run at most k threads until cap(None) (the threaded builds are still compiling)."""
    global _cap
    _cap = k
    if k is not None:
        numba.set_num_threads(max(1, min(k, numba.get_num_threads())))
    elif _governor is not None:
        _governor.next_probe = _governor.busy      # try more threads at once
    elif _partition:
        numba.set_num_threads(_partition)


def begin():
    """Steady work (training, evaluation, sampling) is about to start."""
    if _governor is not None:
        _governor.begin()


def observe(work, seconds):
    """Report one unit of steady work (a training step, an evaluation batch): `work` tokens
    in `seconds`. The governor may change the running threads before the next one."""
    if _governor is not None:
        _governor.observe(work, seconds)


class Governor:
    """Chooses the running threads k among P, P/2, ..., 1 by timing the work.

    It keeps the seconds per token of the current k (the median of its last few units), and
    now and then runs a short probe at the next smaller or larger k: at least PROBE_UNITS units
    and PROBE_SECONDS, or a single unit when that one is ABORT times slower than usual. A probe
    of fewer threads wins when its median unit is faster by more than MARGIN, one of more
    threads when every unit is. Probes come often at
    first and after any change, then every twice as long up to MAX_INTERVAL; and at once when
    the current k gets much slower than it was (someone else started work).
    """

    PROBE_UNITS, PROBE_SECONDS = 3, 0.15
    FIRST_INTERVAL, LOADED_INTERVAL, MAX_INTERVAL = 0.25, 2.0, 30.0
    MARGIN, SLOWDOWN, ABORT = 0.03, 1.3, 1.5
    HISTORY = 7

    def __init__(self, parts, apply=None, sampler=None):
        self.parts = parts
        self.apply = apply or _apply
        self.sampler = sampler or cpu_sample
        self.current = parts
        self.recent = []           # seconds per token of the current k, newest last
        self.baseline = None       # its typical value when last confirmed
        self.probe = None          # (k, [seconds per token]) while probing
        self.interval = self.FIRST_INTERVAL
        self.next_probe = None
        self.busy = 0.0            # seconds of work seen
        self.warm = False
        self.sample = self.sampler()  # the last look at what other processes use
        self.log = []              # (work seen in seconds, old k, new k): for tests and reports

    def _free_cores(self):
        """Cores that other processes left free since the last call (None: unknown)."""
        then, now = self.sample, self.sampler()
        if then is None or now is None or now[0] - then[0] < 0.05:
            return None
        self.sample = now
        others = max(0.0, (now[1] - then[1]) - (now[2] - then[2])) / (now[0] - then[0])
        return len(now[3]) - others

    def begin(self):
        """Work starts: run as many threads as the cores others left free since set_threads
        (a first unit with too many threads costs seconds under heavy load)."""
        free = self._free_cores()
        if free is None:
            return
        k = max(1, min(self.parts, _cap or self.parts, int(free + 0.5)))
        while k not in self.ladder():
            k -= 1
        if k != self.current:
            self.log.append((0.0, self.current, k))
            self.current = k
            self.interval = self.LOADED_INTERVAL
            self.apply(k)

    def ladder(self):
        out, k = [], self.parts
        while k > 1:
            out.append(k)
            k //= 2
        return out + [1]

    def candidates(self):
        k = self.current
        out = []
        if k > 1:
            out.append(max(1, k // 2))
        if k < min(self.parts, _cap or self.parts):
            out.append(min(self.parts, k * 2))
        return out

    def observe(self, work, seconds):
        if work <= 0 or seconds <= 0:
            return
        per = seconds / work
        if not self.warm:               # the first unit pays for compiling and first touches
            self.warm = True
            return
        self.busy += seconds
        if self.next_probe is None:
            self.next_probe = self.busy + self.interval
        if self.probe is not None:
            k, samples = self.probe
            samples.append(per)
            # a unit far slower than usual ends the probe at once: under load one unit at too
            # many threads can take seconds
            if per > self.ABORT * _median(self.recent) or (
                    len(samples) >= self.PROBE_UNITS and sum(samples) * work >= self.PROBE_SECONDS):
                self._decide(k, samples)
            return
        self.recent = (self.recent + [per])[-self.HISTORY:]
        typical = _median(self.recent)
        if self.baseline is None and len(self.recent) >= 3:
            self.baseline = typical
        slower = (self.baseline is not None and len(self.recent) >= 3
                  and typical > self.SLOWDOWN * self.baseline)
        if self.busy >= self.next_probe or slower:
            options = self.candidates()
            if options:
                # both directions in turn; fewer threads first when the work got slower
                k = options[0] if slower else options[len(self.log) % len(options)]
                free = self._free_cores()
                if k > self.current and free is not None and free < k - 0.5:
                    # others hold the cores: a probe would only wait for them
                    self.next_probe = self.busy + self.interval
                    return
                self.probe = (k, [])
                self.apply(k)

    def _decide(self, k, samples):
        mine = _median(self.recent)
        # more threads must win in every unit (a busy machine makes single units look
        # fast by luck); fewer threads, by the median
        theirs = max(samples) if k > self.current else _median(samples)
        old = self.current
        self.probe = None
        if theirs < mine * (1 - self.MARGIN):
            self.current = k
            self.recent = samples[-self.HISTORY:]
            self.baseline = theirs
            self.interval = self.FIRST_INTERVAL
        else:
            self.baseline = mine
            self.interval = min(self.MAX_INTERVAL, self.interval * 2)
        self.apply(self.current)
        self.log.append((self.busy, old, self.current))
        self.next_probe = self.busy + self.interval


def cpu_sample():
    """(wall seconds, CPU seconds spent on our cores by everyone, CPU seconds of this process,
    our cores), from /proc/stat; None where that file does not exist."""
    try:
        cores = os.sched_getaffinity(0)
        with open("/proc/stat", encoding="ascii") as f:
            lines = f.read().splitlines()
    except (OSError, AttributeError):
        return None
    busy = 0
    for line in lines:
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores:
            user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fields[:8])
            busy += user + nice + system + irq + softirq + steal
    times = os.times()
    return (time.monotonic(), busy / os.sysconf("SC_CLK_TCK"), times.user + times.system,
            cores)


def _median(values):
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def _apply(k):
    numba.set_num_threads(k)
