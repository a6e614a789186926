"""Scalar activations for the kernels, fast in float32 and exact in float64.

Numba's float32 `math.tanh`/`math.exp` are scalar libm calls (the pip llvmlite has no SVML),
which would make gate math cost as much as the matrix products. In float32 we use Eigen's
rational tanh (max error 2.6e-7, float32's own rounding) and a Cephes-style exp: plain
arithmetic (with explicit fused multiply-adds, kernels/cpu/lanes.py) that LLVM vectorises.
float64, used by the gradient checks, calls libm.
The overloads are inlined, so they take the calling kernel's compile flags.
"""
import math

import numpy as np
from numba import types
from numba.extending import overload

from rnnkit.kernels.cpu.lanes import fma

_F32 = np.float32
_CLAMP = _F32(7.90531110763549805)  # tanh(x) rounds to +-1 in float32 beyond this


def tanh(x):
    return math.tanh(x)


def sigmoid(x):
    return 0.5 * math.tanh(0.5 * x) + 0.5


def exp(x):
    return math.exp(x)


def _tanh32(x):
    x = min(max(x, -_CLAMP), _CLAMP)
    x2 = x * x
    p = fma(x2, _F32(-2.76076847742355e-16), _F32(2.00018790482477e-13))
    p = fma(x2, p, _F32(-8.60467152213735e-11))
    p = fma(x2, p, _F32(5.12229709037114e-08))
    p = fma(x2, p, _F32(1.48572235717979e-05))
    p = fma(x2, p, _F32(6.37261928875436e-04))
    p = fma(x2, p, _F32(4.89352455891786e-03))
    q = fma(x2, _F32(1.19825839466702e-06), _F32(1.18534705686654e-04))
    q = fma(x2, q, _F32(2.26843463243900e-03))
    q = fma(x2, q, _F32(4.89352518554385e-03))
    return x * p / q


def _exp32(x):
    # exp(x) = 2^k * exp(r), |r| <= ln2/2; 2^k is added straight into the exponent bits.
    x = min(max(x, _F32(-87.3)), _F32(88.7))
    k = _F32(math.floor(fma(x, _F32(1.44269504088896341), _F32(0.5))))
    r = fma(k, _F32(2.12194440e-4), fma(k, _F32(-0.693359375), x))
    p = fma(_F32(1.9875691500e-4), r, _F32(1.3981999507e-3))
    p = fma(p, r, _F32(8.3334519073e-3))
    p = fma(p, r, _F32(4.1665795894e-2))
    p = fma(p, r, _F32(1.6666665459e-1))
    p = fma(p, r, _F32(5.0000001201e-1))
    p = fma(p * r, r, r) + _F32(1.0)
    bits = np.float32(p).view(np.int32) + (np.int32(k) << np.int32(23))
    return np.int32(bits).view(np.float32)


def _is32(x):
    return isinstance(x, types.Float) and x.bitwidth == 32


@overload(tanh)
def _ov_tanh(x):
    if _is32(x):
        return _tanh32
    return lambda x: math.tanh(x)


@overload(sigmoid)
def _ov_sigmoid(x):
    if _is32(x):
        return lambda x: _F32(0.5) * tanh(_F32(0.5) * x) + _F32(0.5)
    return lambda x: 0.5 * math.tanh(0.5 * x) + 0.5


@overload(exp)
def _ov_exp(x):
    if _is32(x):
        return _exp32
    return lambda x: math.exp(x)
