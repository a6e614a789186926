"""Fused optimizer updates on the device: one grid-stride pass over the flat parameters.

The equations are those of rnnkit/kernels/cpu/optim.py (PyTorch's, written out in each CPU
kernel's docstring), line for line. Every scalar arrives cast to the parameters' dtype
(rnnkit/optim.py), and no float literal appears in a body, so float32 stays float32.
"""
import math

from numba import cuda

from rnnkit.kernels.cuda import launch as L
from rnnkit.kernels.cuda.launch import jit


@jit
def sgd_update(p, g, buf, lr, momentum, one_minus_damp, weight_decay, nesterov, first):
    use_wd = weight_decay != 0
    use_momentum = momentum != 0
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
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


@jit
def adam_update(p, g, m, v, step_size, beta1c, beta2, beta2c, bc2_sqrt, eps, weight_decay,
                shrink):
    use_wd = weight_decay != 0
    use_shrink = shrink != 1
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
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
        p[i] = pi - step_size * (mi / (math.sqrt(vi) / bc2_sqrt + eps))


@jit
def rmsprop_update(p, g, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps,
                   weight_decay, momentum, centered):
    use_wd = weight_decay != 0
    use_momentum = momentum > 0
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        d = g[i]
        if use_wd:
            d = d + weight_decay * p[i]
        s = alpha * square_avg[i] + one_minus_alpha * d * d
        square_avg[i] = s
        if centered:
            ga = grad_avg[i] + one_minus_alpha * (d - grad_avg[i])
            grad_avg[i] = ga
            avg = math.sqrt(s - ga * ga) + eps
        else:
            avg = math.sqrt(s) + eps
        if use_momentum:
            b = momentum * buf[i] + d / avg
            buf[i] = b
            p[i] = p[i] - lr * b
        else:
            p[i] = p[i] - lr * (d / avg)


@jit
def adagrad_update(p, g, state_sum, clr, eps, weight_decay):
    use_wd = weight_decay != 0
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        d = g[i]
        if use_wd:
            d = d + weight_decay * p[i]
        s = state_sum[i] + d * d
        state_sum[i] = s
        p[i] = p[i] - clr * (d / (math.sqrt(s) + eps))


def update(kernel, p, *args):
    """Run one update kernel over the P parameters."""
    L.launch(kernel, L.blocks_for(p.shape[0]), L.THREADS, p, *args)


SIGNATURES = [
    (sgd_update, "aaaffffbb", L.FLOATS), (adam_update, "aaaaffffffff", L.FLOATS),
    (rmsprop_update, "aaaaaffffffb", L.FLOATS), (adagrad_update, "aaafff", L.FLOATS),
]
