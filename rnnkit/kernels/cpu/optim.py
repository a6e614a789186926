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

The passes over P elements (the updates, scale, clamp, fill) run in blocks of the partition,
one per thread (a word-level model's 4.6 M parameters are 18 MB an array: one thread's memory
bandwidth bounds them); each element's arithmetic is the same in any block, so the bits are
too. sum_squares stays one pass in one order: its sum is the clipping's, and a split would
round it differently.
"""
from numba import njit, prange

from rnnkit.kernels import pointwise
from rnnkit.kernels.cpu.activations import tanh
from rnnkit.kernels.cpu.blocks import parts_for, span
from rnnkit.kernels.cpu.compile import JIT, Twin
from rnnkit.kernels.cpu.lanes import vsumsq

# Elements per block at least: below this a pass is not worth a parallel region.
MIN_BLOCK = 1 << 16

# The per-element updates (kernels/pointwise.py, shared with kernels/cuda/optim.py), inlined
# into each loop; module globals, as Numba resolves a call's target by name.
_P = pointwise.build(njit(**dict(JIT, cache=False, inline="always")), tanh)
_sgd, _adam, _rmsprop, _adagrad = _P.sgd, _P.adam, _P.rmsprop, _P.adagrad


@njit(**JIT)
def _sgd_range(p, g, buf, lr, momentum, one_minus_damp, weight_decay, nesterov, first, lo, hi):
    use_wd = weight_decay != 0
    use_momentum = momentum != 0
    for i in range(lo, hi):
        b = buf[i] if use_momentum else g[i]
        p[i], b = _sgd(p[i], g[i], b, lr, momentum, one_minus_damp, weight_decay, nesterov,
                       first, use_wd, use_momentum)
        if use_momentum:
            buf[i] = b


def _sgd_blocks(p, g, buf, lr, momentum, one_minus_damp, weight_decay, nesterov, first,
                parts):
    for k in prange(parts):
        lo, hi = span(p.shape[0], parts, k)
        _sgd_range(p, g, buf, lr, momentum, one_minus_damp, weight_decay, nesterov, first,
                   lo, hi)


def sgd_update(p, g, buf, lr, momentum, one_minus_damp, weight_decay, nesterov, first):
    """d = g + wd p; b = d (first step) else mu b + (1 - dampening) d;
    d = d + mu b (nesterov) else b; p -= lr d.  With mu == 0, `buf` is unused."""
    parts = _parts(p)
    _sgd_blocks(parts, p, g, buf, lr, momentum, one_minus_damp, weight_decay, nesterov, first,
                parts)


@njit(**JIT)
def _adam_range(p, g, m, v, step_size, beta1c, beta2, beta2c, bc2_sqrt, eps, weight_decay,
                shrink, lo, hi):
    use_wd = weight_decay != 0
    use_shrink = shrink != 1
    for i in range(lo, hi):
        p[i], m[i], v[i] = _adam(p[i], g[i], m[i], v[i], step_size, beta1c, beta2, beta2c,
                                 bc2_sqrt, eps, weight_decay, shrink, use_wd, use_shrink)


def _adam_blocks(p, g, m, v, step_size, beta1c, beta2, beta2c, bc2_sqrt, eps, weight_decay,
                 shrink, parts):
    for k in prange(parts):
        lo, hi = span(p.shape[0], parts, k)
        _adam_range(p, g, m, v, step_size, beta1c, beta2, beta2c, bc2_sqrt, eps, weight_decay,
                    shrink, lo, hi)


def adam_update(p, g, m, v, step_size, beta1c, beta2, beta2c, bc2_sqrt, eps, weight_decay,
                shrink):
    """Adam: d = g + wd p.  AdamW: p *= shrink (= 1 - lr wd) first and weight_decay is 0.
    m = m + (1 - b1)(d - m)   (torch's lerp_);  v = b2 v + (1 - b2) d^2;
    p -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""
    parts = _parts(p)
    _adam_blocks(parts, p, g, m, v, step_size, beta1c, beta2, beta2c, bc2_sqrt, eps,
                 weight_decay, shrink, parts)


@njit(**JIT)
def _rmsprop_range(p, g, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps,
                   weight_decay, momentum, centered, lo, hi):
    use_wd = weight_decay != 0
    use_momentum = momentum > 0
    for i in range(lo, hi):
        ga = grad_avg[i] if centered else g[i]
        b = buf[i] if use_momentum else g[i]
        p[i], square_avg[i], ga, b = _rmsprop(p[i], g[i], square_avg[i], ga, b, lr, alpha,
                                              one_minus_alpha, eps, weight_decay, momentum,
                                              centered, use_wd, use_momentum)
        if centered:
            grad_avg[i] = ga
        if use_momentum:
            buf[i] = b


def _rmsprop_blocks(p, g, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps,
                    weight_decay, momentum, centered, parts):
    for k in prange(parts):
        lo, hi = span(p.shape[0], parts, k)
        _rmsprop_range(p, g, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps,
                       weight_decay, momentum, centered, lo, hi)


def rmsprop_update(p, g, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps,
                   weight_decay, momentum, centered):
    """d = g + wd p; s = a s + (1 - a) d^2; avg = sqrt(s - ga^2) with ga += (1 - a)(d - ga)
    when centered, else sqrt(s); avg += eps; b = mu b + d / avg and p -= lr b (momentum > 0),
    else p -= lr d / avg.  `grad_avg` and `buf` are unused when not centered / no momentum."""
    parts = _parts(p)
    _rmsprop_blocks(parts, p, g, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps,
                    weight_decay, momentum, centered, parts)


@njit(**JIT)
def _adagrad_range(p, g, state_sum, clr, eps, weight_decay, lo, hi):
    use_wd = weight_decay != 0
    for i in range(lo, hi):
        p[i], state_sum[i] = _adagrad(p[i], g[i], state_sum[i], clr, eps, weight_decay, use_wd)


def _adagrad_blocks(p, g, state_sum, clr, eps, weight_decay, parts):
    for k in prange(parts):
        lo, hi = span(p.shape[0], parts, k)
        _adagrad_range(p, g, state_sum, clr, eps, weight_decay, lo, hi)


def adagrad_update(p, g, state_sum, clr, eps, weight_decay):
    """d = g + wd p; sum += d^2; p -= clr d / (sqrt(sum) + eps), clr = lr / (1 + (t - 1) decay)."""
    parts = _parts(p)
    _adagrad_blocks(parts, p, g, state_sum, clr, eps, weight_decay, parts)


@njit(**JIT)
def sum_squares(g):
    """Sum of g^2 accumulated in float64 (a float32 sum over millions of terms loses digits)."""
    return vsumsq(g, 0, g.shape[0])


@njit(**JIT)
def _scale_range(g, factor, lo, hi):
    for i in range(lo, hi):
        g[i] = g[i] * factor


def _scale_blocks(g, factor, parts):
    for k in prange(parts):
        lo, hi = span(g.shape[0], parts, k)
        _scale_range(g, factor, lo, hi)


def scale(g, factor):
    """g *= factor (a scalar of g's dtype)."""
    parts = _parts(g)
    _scale_blocks(parts, g, factor, parts)


@njit(**JIT)
def _clamp_range(g, low, high, lo, hi):
    for i in range(lo, hi):
        x = g[i]
        if x < low:
            g[i] = low
        elif x > high:
            g[i] = high


def _clamp_blocks(g, low, high, parts):
    for k in prange(parts):
        lo, hi = span(g.shape[0], parts, k)
        _clamp_range(g, low, high, lo, hi)


def clamp(g, low, high):
    """Clamp in place; NaN stays NaN so the trainer still sees a bad gradient."""
    parts = _parts(g)
    _clamp_blocks(parts, g, low, high, parts)


@njit(**JIT)
def _fill_range(a, value, lo, hi):
    for i in range(lo, hi):
        a[i] = value


def _fill_blocks(a, value, parts):
    for k in prange(parts):
        lo, hi = span(a.shape[0], parts, k)
        _fill_range(a, value, lo, hi)


def fill(a, value):
    """a[:] = value for a 1-D contiguous array (value: a scalar of a's dtype)."""
    parts = _parts(a)
    _fill_blocks(parts, a, value, parts)


_sgd_blocks, _adam_blocks, _rmsprop_blocks, _adagrad_blocks = map(
    Twin, (_sgd_blocks, _adam_blocks, _rmsprop_blocks, _adagrad_blocks))
_scale_blocks, _clamp_blocks, _fill_blocks = map(Twin, (_scale_blocks, _clamp_blocks,
                                                        _fill_blocks))


def _parts(a):
    return parts_for(a.shape[0] // MIN_BLOCK)
