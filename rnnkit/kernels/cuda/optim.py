"""Fused optimizer updates on the device: one grid-stride pass over the flat parameters.

Each element's arithmetic is kernels/pointwise.py's, the same source the CPU's updates
(kernels/cpu/optim.py, whose docstrings write the equations out) compile. Every scalar
arrives cast to the parameters' dtype (rnnkit/model/optim.py), and no float literal appears in a
body, so float32 stays float32.
"""
import math

from numba import cuda

from rnnkit.kernels import pointwise
from rnnkit.kernels.cuda import launch as L
from rnnkit.kernels.cuda.launch import jit

_P = pointwise.build(cuda.jit(**L.DEVICE), math.tanh)
_sgd, _adam, _rmsprop, _adagrad = _P.sgd, _P.adam, _P.rmsprop, _P.adagrad


@jit
def sgd_update(p, g, buf, lr, momentum, one_minus_damp, weight_decay, nesterov, first):
    use_wd = weight_decay != 0
    use_momentum = momentum != 0
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        b = buf[i] if use_momentum else g[i]
        p[i], b = _sgd(p[i], g[i], b, lr, momentum, one_minus_damp, weight_decay, nesterov,
                       first, use_wd, use_momentum)
        if use_momentum:
            buf[i] = b


@jit
def adam_update(p, g, m, v, step_size, beta1c, beta2, beta2c, bc2_sqrt, eps, weight_decay,
                shrink):
    use_wd = weight_decay != 0
    use_shrink = shrink != 1
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        p[i], m[i], v[i] = _adam(p[i], g[i], m[i], v[i], step_size, beta1c, beta2, beta2c,
                                 bc2_sqrt, eps, weight_decay, shrink, use_wd, use_shrink)


@jit
def rmsprop_update(p, g, square_avg, grad_avg, buf, lr, alpha, one_minus_alpha, eps,
                   weight_decay, momentum, centered):
    use_wd = weight_decay != 0
    use_momentum = momentum > 0
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        ga = grad_avg[i] if centered else g[i]
        b = buf[i] if use_momentum else g[i]
        p[i], square_avg[i], ga, b = _rmsprop(p[i], g[i], square_avg[i], ga, b, lr, alpha,
                                              one_minus_alpha, eps, weight_decay, momentum,
                                              centered, use_wd, use_momentum)
        if centered:
            grad_avg[i] = ga
        if use_momentum:
            buf[i] = b


@jit
def adagrad_update(p, g, state_sum, clr, eps, weight_decay):
    use_wd = weight_decay != 0
    for i in range(cuda.grid(1), p.shape[0], cuda.gridsize(1)):
        p[i], state_sum[i] = _adagrad(p[i], g[i], state_sum[i], clr, eps, weight_decay, use_wd)


def update(kernel, p, *args):
    """Run one update kernel over the P parameters."""
    L.launch(kernel, L.blocks_for(p.shape[0]), L.THREADS, p, *args)


SIGNATURES = [
    (sgd_update, "aaaffffbb", L.FLOATS), (adam_update, "aaaaffffffff", L.FLOATS),
    (rmsprop_update, "aaaaaffffffb", L.FLOATS), (adagrad_update, "aaafff", L.FLOATS),
]
