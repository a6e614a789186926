"""Data-parallel training hooks: where gradients are averaged and decisions shared.

Training calls `comm.average(model.grads)` once per step, between backward and clipping. Each
process (rank) reads its own contiguous share of the batch's N streams, so averaging the
gradients of the equal-sized shares gives the gradient of the whole batch. Decisions (stop or
go on) are rank 0's, sent to all (`decide`), and `barrier` orders file writes before reads.
With one process every call is a no-op. An MPI communicator (mpi4py, the `mpi` extra)
implements the same members: rank, size, average(array) in place, mean(float), decide(value),
barrier().
"""


class SingleProcess:
    """The communicator of a run with one process: rank 0 of 1, nothing to exchange."""

    rank = 0
    size = 1
    local_size = 1          # ranks of this job on this node

    def average(self, array):
        """Average `array` in place over all ranks (here: leave it as it is)."""
        return array

    def mean(self, value):
        """The mean of a number over all ranks (here: the number)."""
        return value

    def decide(self, value):
        """Rank 0's value, on every rank (here: the value)."""
        return value

    def barrier(self):
        """Wait until every rank gets here (here: nothing to wait for)."""


def communicator():
    """The communicator for this process: for now always a single process."""
    return SingleProcess()
