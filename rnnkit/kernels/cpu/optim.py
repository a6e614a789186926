"""Fused optimizer updates: one pass over the flat parameter array per step.

PyTorch's single-tensor optimizers read and write each parameter several times per step (one
pass per `mul_`, `add_`, `addcdiv_`, ...). Here every update is one loop: load p, g and the
state once, do the arithmetic in registers, store once. The equations are PyTorch's
(torch/optim/*.py, for-loop implementation, maximize=False); the docstring of each kernel
writes them out.

Every scalar arrives already cast to the parameters' dtype by the wrapper in rnnkit/optim.py,
and no float literal appears in a loop body, so float32 parameters are updated in float32
arithmetic as PyTorch does (a Python float literal would promote the loop to float64).
Arrays: p, g and every state buffer are 1-D, contiguous, of one dtype, of the same length P.
"""
import numpy as np
from numba import njit

from rnnkit.kernels.cpu.jit import JIT
from rnnkit.kernels.cpu.lanes import vsumsq


@njit(**JIT)
def sgd_update(p, g, buf, lr, momentum, one_minus_damp, weight_decay, nesterov, first):
    """d = g + wd p; b = d (first step) else mu b + (1 - dampening) d;
    d = d + mu b (nesterov) else b; p -= lr d.  With mu == 0, `buf` is unused."""
    use_wd = weight_decay != 0
    use_momentum = momentum != 0
    for i in range(p.shape[0]):
        d = g[i]
        if use_wd:
            d = d + weight_decay * p[i]
        if use_momentum:
            if first:
                b = d
            else:
                b = momentum * buf[i] + one_minus_damp * d
            buf[i] = b
            if nesterov:
                d = d + momentum * b
            else:
                d = b
        p[i] = p[i] - lr * d


@njit(**JIT)
def adam_update(p, g, m, v, step_size, beta1c, beta2, beta2c, bc2_sqrt, eps, weight_decay,
                shrink):
    """Adam: d = g + wd p.  AdamW: p *= shrink (= 1 - lr wd) first and weight_decay is 0.
    m = m + (1 - b1)(d - m)   (torch's lerp_);  v = b2 v + (1 - b2) d^2;
    p -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""
    use_wd = weight_decay != 0
    use_shrink = shrink != 1
    for i in range(p.shape[0]):
        pi = p[i]
        d = g[i]
        if use_shrink:
            pi = pi * shrink
        if use_wd:
            d = d + weight_decay * pi
        mi = m[i] + beta1c * (d - m[i])
        vi = beta2 * v[i] + beta2c * d * d
        m[i] = mi
        v[i] = vi
        p[i] = pi - step_size * (mi / (np.sqrt(vi) / bc2_sqrt + eps))


@njit(**JIT)
def rmsprop_update(p, g, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps,
                   weight_decay, momentum, centered):
    """d = g + wd p; s = a s + (1 - a) d^2; avg = sqrt(s - ga^2) with ga += (1 - a)(d - ga)
    when centered, else sqrt(s); avg += eps; b = mu b + d / avg and p -= lr b (momentum > 0),
    else p -= lr d / avg.  `grad_avg` and `buf` are unused when not centered / no momentum."""
    use_wd = weight_decay != 0
    use_momentum = momentum > 0
    for i in range(p.shape[0]):
        d = g[i]
        if use_wd:
            d = d + weight_decay * p[i]
        s = alpha * square_avg[i] + one_minus_alpha * d * d
        square_avg[i] = s
        if centered:
            ga = grad_avg[i] + one_minus_alpha * (d - grad_avg[i])
            grad_avg[i] = ga
            avg = np.sqrt(s - ga * ga) + eps
        else:
            avg = np.sqrt(s) + eps
        if use_momentum:
            b = momentum * buf[i] + d / avg
            buf[i] = b
            p[i] = p[i] - lr * b
        else:
            p[i] = p[i] - lr * (d / avg)


@njit(**JIT)
def adagrad_update(p, g, state_sum, clr, eps, weight_decay):
    """d = g + wd p; sum += d^2; p -= clr d / (sqrt(sum) + eps), clr = lr / (1 + (t - 1) decay)."""
    use_wd = weight_decay != 0
    for i in range(p.shape[0]):
        d = g[i]
        if use_wd:
            d = d + weight_decay * p[i]
        s = state_sum[i] + d * d
        state_sum[i] = s
        p[i] = p[i] - clr * (d / (np.sqrt(s) + eps))


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
