"""Data-parallel training over MPI: the gradients averaged, the decisions shared.

    mpiexec -n 4 rnnkit train corpus.h5 -o runs/x --batch-size 64     # or: srun rnnkit train
    comm = communicator()        # MPI when launched by mpiexec/srun with several ranks

Each process (rank) reads its own contiguous share of the batch's N streams, so averaging the
gradients of the equal-sized shares gives the gradient of the whole batch: training calls
`comm.average(model.grads)` once per step (one in-place allreduce of the flat gradient),
between backward and clipping. Every decision (stop or go on, roll back) is rank 0's, sent to
all (`decide`); a signal to any rank counts (`first`); `barrier` orders rank 0's file writes
before the others read. With one process every call is a no-op.

MPI is mpi4py over the system's MPI (the `mpi` extra; the `mpich` wheel for tests). A rank
that dies must not leave the others waiting forever: collectives return errors instead of
aborting, and a watchdog ends a rank that waits longer than HANG_S in a collective once
training runs, each with one line on stderr and a non-zero exit; the last checkpoint stays.
A rank that stops alone (an error only it met, a second Ctrl-C) says why, then tells the
others (`leave_alone`), whose watchdogs end them at once with its exit code and no line.
"""
import atexit
import os
import sys
import threading
import time

import numpy as np

from rnnkit.errors import RnnkitError

HANG_S = 30.0                   # longest wait in a collective once the first step is done
FIRST_HANG_S = 900.0            # ... and before it (compiling takes minutes on a cold cache)
# world size as launchers set it: Open MPI, MPICH's hydra (PMI), srun (one job step)
LAUNCHER_SIZE = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS")


class DistributedError(RnnkitError):
    """MPI cannot be used, or a rank is gone (one line)."""


class SingleProcess:
    """The communicator of a run with one process: rank 0 of 1, nothing to exchange."""

    rank = 0
    size = 1
    local_size = 1          # ranks of this job on this node
    local_rank = 0          # this rank's place among them

    def average(self, array, backend=None, ranges=None):
        """Average `array` in place over all ranks (here: leave it as it is); with ranges,
        (R, 2) [start, stop) runs of a 1-D array that is zero outside them on every rank,
        only there."""
        return array

    def mean(self, value):
        """The mean of a number over all ranks (here: the number)."""
        return value

    def decide(self, value):
        """Rank 0's value, on every rank (here: the value)."""
        return value

    def first(self, value):
        """The first rank's value that is not None (here: the value)."""
        return value

    def gather(self, value):
        """Every rank's value, in rank order, on every rank (here: [value])."""
        return [value]

    def barrier(self, seconds=0.0):
        """Wait until every rank gets here (here: nothing to wait for)."""

    def armed(self):
        """Training runs: from now on a rank that waits too long ends the job."""

    alone = False               # this rank stopped in the middle of a run (see leave_alone)


class MPIComm:
    """MPI_COMM_WORLD through mpi4py; see the module docstring."""

    def __init__(self, world):
        from mpi4py import MPI

        self.MPI = MPI
        self.world = world
        world.Set_errhandler(MPI.ERRORS_RETURN)
        self.rank, self.size = world.Get_rank(), world.Get_size()
        node = world.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_size, self.local_rank = node.Get_size(), node.Get_rank()
        node.Free()
        self.waiting = None         # (what, since) while in a collective
        self._armed = False
        self.alone = False          # this rank stopped in the middle of a run (leave_alone)
        # the exit code of a rank that stopped alone, which the watchdog looks for (it may
        # call MPI beside the main thread only where MPI allows threads to)
        self.alarm = world.Dup()
        self.notice = np.zeros(1, np.int32)
        self.lock = threading.Lock()
        self.request = self.alarm.Irecv(self.notice, MPI.ANY_SOURCE) \
            if MPI.Query_thread() == MPI.THREAD_MULTIPLE else None
        atexit.register(self.close)     # before mpi4py's MPI_Finalize (atexit runs LIFO)
        threading.Thread(target=self._watch, daemon=True, name="rnnkit-watchdog").start()

    def _call(self, what, fn, *args, limit=None):
        self.waiting = (what, time.monotonic(), limit)
        try:
            return fn(*args)
        except self.MPI.Exception as err:
            why = err.Get_error_string().splitlines()[0].split(", error stack")[0]
            self._fail(f"{what} failed ({why}): another rank has stopped")
        finally:
            self.waiting = None

    def _fail(self, why):
        print(f"Error: rank {self.rank} of {self.size}: {why}; the job ends here, the last "
              f"checkpoint is intact (resume with --resume)", file=sys.stderr, flush=True)
        os._exit(1)                 # MPI_Finalize would wait for the missing rank

    def _watch(self):
        while True:
            time.sleep(0.2)
            with self.lock:
                try:
                    told = self.request is not None and self.request.Test()
                except self.MPI.Exception:
                    told, self.request = False, None
            if told:                # another rank stopped and said why: leave with its code
                os._exit(int(self.notice[0]))
            waiting = self.waiting
            limit = (waiting and waiting[2]) or (HANG_S if self._armed else FIRST_HANG_S)
            if waiting and time.monotonic() - waiting[1] > limit:
                self._fail(f"no answer from the other ranks for {limit:.0f} s in "
                           f"{waiting[0]}")

    def armed(self):
        self._armed = True

    def close(self):
        """No more notices (before MPI_Finalize, which a pending receive would upset)."""
        with self.lock:
            request, self.request = self.request, None
            if request is not None:
                try:
                    request.Cancel()
                    request.Wait()
                except self.MPI.Exception:
                    pass

    def tell_others(self, code):
        """Every other rank's watchdog ends it with `code` (this one has said why)."""
        self.close()
        note = np.array([code], np.int32)
        try:
            sends = [self.alarm.Isend(note, rank) for rank in range(self.size)
                     if rank != self.rank]
            deadline = time.monotonic() + 5.0
            while not self.MPI.Request.Testall(sends) and time.monotonic() < deadline:
                time.sleep(0.01)
        except self.MPI.Exception:
            pass                    # a rank gone already: the others have their watchdog

    def average(self, array, backend=None, ranges=None):
        """In place, over all ranks: one allreduce of the whole array, or of its runs `ranges`
        packed together (a device array goes through a host copy)."""
        MPI = self.MPI
        host = array if isinstance(array, np.ndarray) else backend.to_host(array)
        runs = [host] if ranges is None else [host[s:e] for s, e in ranges]
        packed = host if ranges is None else np.concatenate(runs)
        self._call("allreduce", self.world.Allreduce, MPI.IN_PLACE, packed, MPI.SUM)
        packed *= packed.dtype.type(1.0 / self.size)
        if packed is not host:
            at = 0
            for run in runs:
                run[...] = packed[at:at + run.size]
                at += run.size
        if host is not array:
            backend.copy(array, host)
        return array

    def mean(self, value):
        total = self._call("allreduce", self.world.allreduce, float(value), self.MPI.SUM)
        return total / self.size

    def decide(self, value):
        return self._call("broadcast", self.world.bcast, value, 0)

    def first(self, value):
        return next((v for v in self.gather(value) if v is not None), None)

    def gather(self, value):
        return self._call("allgather", self.world.allgather, value)

    def barrier(self, seconds=0.0):
        """`seconds`: how long rank 0 may take to get here beyond the usual wait."""
        self._call("barrier", self.world.Barrier, limit=HANG_S + seconds)


def agreed(comm, fn):
    """fn() on every rank; if it raises an RnnkitError on any rank, the same error on all (so
    no rank goes on to wait for one that stopped)."""
    try:
        result, error = fn(), None
    except RnnkitError as err:
        result, error = None, err
    messages = comm.gather(None if error is None else str(error))
    first = next((m for m in messages if m), None)
    if first is not None:
        if error is None or str(error) != first:
            error = type(error)(first) if error is not None else RnnkitError(first)
        error.quiet = comm.rank != 0        # rank 0 says it, for all
        error.shared = True                 # every rank stops with it
        raise error
    return result


def world_rank():
    """This process's rank as the launcher set it (0 without one): before MPI is up, who
    prints an error that every rank meets."""
    for var in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID"):
        value = os.environ.get(var, "")
        if value.isdigit() and launched_ranks() > 1:
            return int(value)
    return 0


def launched_ranks():
    """How many ranks the launcher (mpiexec, srun) started, from its environment."""
    for var in LAUNCHER_SIZE:
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return 1


_joined = False                 # this process made its MPI communicator (communicator())
_made = None                    # ... and this is it


def leave_alone(code):
    """When this rank stopped in the middle of a run alone (`comm.alone`: an error only it met,
    a second Ctrl-C) and has said why: the others stop too, at once and with `code`, instead of
    waiting for it in a collective (then HANG_S, and a second line). Exits; returns without
    such a stop."""
    if _made is not None and _made.alone:
        _made.tell_others(code)
        os._exit(code)          # MPI_Finalize would wait for the ranks just told to go


def finish():
    """MPI_Finalize now, where MPI was started: every rank stopped at the same step and leaves
    without the interpreter's teardown (rnnkit/training/stop_signals.py)."""
    if _made is not None and _made.MPI.Is_initialized() and not _made.MPI.Is_finalized():
        _made.close()
        _made.MPI.Finalize()


def join_to_fail(message):
    """An error met before the run's communicator was made (a flag, a path this rank cannot
    see, a config file), in a job of several ranks: make it and hand `message` to the run's
    first agreement (agreed's gather), so that ranks that met no error stop with it instead of
    waiting for this one in MPI's start-up. False where there is nothing to join (one process,
    MPI unusable: the other ranks then meet the same)."""
    if _joined or launched_ranks() <= 1:
        return False
    try:
        comm = communicator()
    except RnnkitError:
        return False
    if comm.size <= 1:
        return False
    comm.gather(message)
    return True


def communicator():
    """MPI when launched with several ranks, else a single process."""
    global _joined, _made
    ranks = launched_ranks()
    if ranks <= 1:
        return SingleProcess()
    try:
        from mpi4py import MPI
    except ImportError:
        raise _setup_error(f"started as {ranks} ranks, but mpi4py is not installed: "
                           f"pip install 'rnnkit[mpi]'") from None
    world = MPI.COMM_WORLD
    if world.Get_size() != ranks:
        raise _setup_error(f"the launcher started {ranks} ranks but MPI sees "
                           f"{world.Get_size()}: mpi4py is not built for this launcher's "
                           f"MPI (srun needs --mpi=pmi2 with MPICH)")
    if world.Get_size() == 1:
        return SingleProcess()
    _joined = True
    _made = MPIComm(world)
    return _made


def _setup_error(message):
    """A DistributedError that every rank raises and the launcher's rank 0 alone prints."""
    error = DistributedError(message)
    error.quiet = world_rank() != 0
    return error


def split_streams(array, rank, size, axis=1):
    """Rank `rank`'s contiguous share of `array`'s streams (axis 1 of an (L, N, H) state)."""
    N = array.shape[axis]
    if N % size:
        raise DistributedError(f"{N} streams cannot be shared evenly by {size} ranks")
    share = N // size
    return np.take(array, range(rank * share, (rank + 1) * share), axis=axis)
