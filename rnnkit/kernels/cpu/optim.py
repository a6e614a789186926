"""Fused optimizer updates: one pass over the flat parameter array per step.

PyTorch's single-tensor optimizers read and write each parameter several times per step (one
pass per `mul_`, `add_`, `addcdiv_`, ...). Here every update is one loop: load p, g and the
state once, do the arithmetic in registers, store once. The equations are PyTorch's
(torch/optim/*.py, for-loop implementation, maximize=False); the docstring of each kernel
writes them out, and kernels/pointwise.py holds the one copy of each element's arithmetic that
this module and the GPU's (kernels/cuda/optim.py) compile.

Every scalar arrives already cast to the parameters' dtype by the wrapper in rnnkit/model/optim.py,
and no float literal appears in a loop body, so float32 parameters are updated in float32
arithmetic as PyTorch does (a Python float literal would promote the loop to float64).
Arrays: p, g and every state buffer are 1-D, contiguous, of one dtype, of the same length P.

The `*_in` kernels do the same over runs of g only, `ranges` (R, 2) int64 [start, stop) pairs,
sorted, each start and stop a multiple of ALIGN (or P): for a gradient that is zero outside
them (a step's embedding rows: rnnkit/model/sparse_rows.py), where the work elsewhere would
leave every number as it is. They give the dense kernels' bits: sum_squares_in keeps
vsumsq's lanes, order and tail, and only skips blocks of zeros (lanes.vsumsq_in).
"""
from numba import njit

from rnnkit.kernels import pointwise
from rnnkit.kernels.cpu.activations import tanh
from rnnkit.kernels.cpu.compile import JIT
from rnnkit.kernels.cpu.lanes import U, vsumsq, vsumsq_in
from rnnkit.kernels.cpu.target import VECTOR_BYTES

# Starts and stops of ranges: a multiple of vsumsq's block (U vectors of float64) on every
# target, so that the numbers a sum of squares visits keep their lanes.
ALIGN = 64
assert ALIGN % (U * VECTOR_BYTES // 8) == 0

# The per-element updates (kernels/pointwise.py, shared with kernels/cuda/optim.py), inlined
# into each loop; module globals, as Numba resolves a call's target by name.
_P = pointwise.build(njit(**dict(JIT, cache=False, inline="always")), tanh)
_sgd, _adam, _rmsprop, _adagrad = _P.sgd, _P.adam, _P.rmsprop, _P.adagrad


@njit(**JIT)
def sgd_update(p, g, buf, lr, momentum, one_minus_damp, weight_decay, nesterov, first):
    """d = g + wd p; b = d (first step) else mu b + (1 - dampening) d;
    d = d + mu b (nesterov) else b; p -= lr d.  With mu == 0, `buf` is unused."""
    use_wd = weight_decay != 0
    use_momentum = momentum != 0
    for i in range(p.shape[0]):
        b = buf[i] if use_momentum else g[i]
        p[i], b = _sgd(p[i], g[i], b, lr, momentum, one_minus_damp, weight_decay, nesterov,
                       first, use_wd, use_momentum)
        if use_momentum:
            buf[i] = b


@njit(**JIT)
def adam_update(p, g, m, v, step_size, beta1c, beta2, beta2c, bc2_sqrt, eps, weight_decay,
                shrink):
    """Adam: d = g + wd p.  AdamW: p *= shrink (= 1 - lr wd) first and weight_decay is 0.
    m = m + (1 - b1)(d - m)   (torch's lerp_);  v = b2 v + (1 - b2) d^2;
    p -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""
    use_wd = weight_decay != 0
    use_shrink = shrink != 1
    for i in range(p.shape[0]):
        p[i], m[i], v[i] = _adam(p[i], g[i], m[i], v[i], step_size, beta1c, beta2, beta2c,
                                 bc2_sqrt, eps, weight_decay, shrink, use_wd, use_shrink)


@njit(**JIT)
def rmsprop_update(p, g, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps,
                   weight_decay, momentum, centered):
    """d = g + wd p; s = a s + (1 - a) d^2; avg = sqrt(s - ga^2) with ga += (1 - a)(d - ga)
    when centered, else sqrt(s); avg += eps; b = mu b + d / avg and p -= lr b (momentum > 0),
    else p -= lr d / avg.  `grad_avg` and `buf` are unused when not centered / no momentum."""
    use_wd = weight_decay != 0
    use_momentum = momentum > 0
    for i in range(p.shape[0]):
        ga = grad_avg[i] if centered else g[i]
        b = buf[i] if use_momentum else g[i]
        p[i], square_avg[i], ga, b = _rmsprop(p[i], g[i], square_avg[i], ga, b, lr, alpha,
                                              one_minus_alpha, eps, weight_decay, momentum,
                                              centered, use_wd, use_momentum)
        if centered:
            grad_avg[i] = ga
        if use_momentum:
            buf[i] = b


@njit(**JIT)
def adagrad_update(p, g, state_sum, clr, eps, weight_decay):
    """d = g + wd p; sum += d^2; p -= clr d / (sqrt(sum) + eps), clr = lr / (1 + (t - 1) decay)."""
    use_wd = weight_decay != 0
    for i in range(p.shape[0]):
        p[i], state_sum[i] = _adagrad(p[i], g[i], state_sum[i], clr, eps, weight_decay, use_wd)


@njit(**JIT)
def sum_squares(g):
    """Sum of g^2 accumulated in float64 (a float32 sum over millions of terms loses digits)."""
    return vsumsq(g, 0, g.shape[0])


@njit(**JIT)
def scale(g, factor):
    for i in range(g.shape[0]):
        g[i] = g[i] * factor


@njit(**JIT)
def clamp(g, low, high):
    """Clamp in place; NaN stays NaN so the trainer still sees a bad gradient."""
    for i in range(g.shape[0]):
        x = g[i]
        if x < low:
            g[i] = low
        elif x > high:
            g[i] = high


@njit(**JIT)
def sum_squares_in(g, ranges):
    """sum_squares(g), with its bits, for a g that is zero outside `ranges`."""
    return vsumsq_in(g, ranges)


# Each run as a view, looped from 0: indexing g by a run's own bounds kept these loops scalar
# (a fill ran at a sixth of memset's speed).
@njit(**JIT)
def scale_in(g, factor, ranges):
    for r in range(ranges.shape[0]):
        x = g[ranges[r, 0]:ranges[r, 1]]
        for i in range(x.shape[0]):
            x[i] = x[i] * factor


@njit(**JIT)
def clamp_in(g, low, high, ranges):
    for r in range(ranges.shape[0]):
        x = g[ranges[r, 0]:ranges[r, 1]]
        for i in range(x.shape[0]):
            if x[i] < low:
                x[i] = low
            elif x[i] > high:
                x[i] = high


@njit(**JIT)
def fill_in(g, value, ranges):
    for r in range(ranges.shape[0]):
        x = g[ranges[r, 0]:ranges[r, 1]]
        for i in range(x.shape[0]):
            x[i] = value


@njit(**JIT)
def sgd_in(p, g, lr, ranges):
    """sgd_update without momentum or weight decay (p -= lr g) in `ranges`: elsewhere g is
    zero, and p - lr * 0 is p."""
    for r in range(ranges.shape[0]):
        q, d = p[ranges[r, 0]:ranges[r, 1]], g[ranges[r, 0]:ranges[r, 1]]
        for i in range(q.shape[0]):
            # momentum, dampening and decay: off (the lr in their places is never read)
            q[i], _ = _sgd(q[i], d[i], d[i], lr, lr, lr, lr, False, False, False, False)
