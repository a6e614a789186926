"""Data-parallel training hooks: where gradients are averaged across processes.

Training calls `comm.average(model.grads)` once per step, between backward and clipping. Each
process (rank) reads its own contiguous share of the batch's N streams, so averaging the
gradients of the equal-sized shares gives the gradient of the whole batch. With one process
every call is a no-op. An MPI communicator (mpi4py, the `mpi` extra) will implement the same
four members: rank, size, average(array) in place, mean(float).
"""


class SingleProcess:
    """The communicator of a run with one process: rank 0 of 1, nothing to exchange."""

    rank = 0
    size = 1

    def average(self, array):
        """Average `array` in place over all ranks (here: leave it as it is)."""
        return array

    def mean(self, value):
        """The mean of a number over all ranks (here: the number)."""
        return value


def communicator():
    """The communicator for this process: for now always a single process."""
    return SingleProcess()
