"""Which runs of the flat gradient a training step can make non-zero: all of it but the
embedding's rows that none of the step's input ids names.

A word model's embedding is most of its parameters (V x E: 51 M of 60 M at V = 100k, E = 512),
and a step's N * T ids name at most N * T of its rows. Its gradient is zero on the others, so
zeroing, clipping and plain SGD's update (p - lr * 0 is p) can pass them by with the same bits
(kernels/cpu/optim.py, the *_in kernels). An update that moves a parameter whose gradient is
zero (momentum, weight decay, Adam's moments) still runs over every number.
"""
import numpy as np


MOST = 0.9      # the largest share of the gradient worth skipping from


def worth_it(V, E, P, most=MOST):
    """Whether a table of V x E numbers in a gradient of P can leave less than `most` to do."""
    return V * E > (1 - most) * P


def embedding_ranges(ids, V, E, P, align, most=MOST):
    """(R, 2) int64 [start, stop) runs of a flat array of P numbers whose first V * E are the
    embedding table (V, E): the rows named in `ids` and all that follows the table, each run
    widened to multiples of `align` (the backend's range_align) and merged with its
    neighbours. None when they would cover more than `most` of P: the dense kernels are then
    about as fast."""
    if not worth_it(V, E, P, most):     # a character model's table: not worth np.unique
        return None
    rows = np.unique(np.asarray(ids, dtype=np.int64))
    starts = np.append(rows * E // align * align, V * E // align * align)
    stops = np.append(np.minimum(-(-(rows + 1) * E // align) * align, P), P)
    # both rise with the rows; a run that meets or overlaps the one before joins it
    new = np.ones(starts.size, bool)
    new[1:] = starts[1:] > stops[:-1]
    last = np.append(new[1:], True)
    ranges = np.stack([starts[new], stops[last]], axis=1)
    if (ranges[:, 1] - ranges[:, 0]).sum() > most * P:
        return None
    return np.ascontiguousarray(ranges)
