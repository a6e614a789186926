"""Counter-based random numbers on the device: Philox4x32-10 (Salmon et al. 2011, Random123;
cuRAND's and JAX's generator), and dropout masks drawn from it.

A stream is a 64-bit key and a 64-bit counter. Draw i of a call that starts at counter c is
the Philox block of counter (c + i) under the key, so every element is computed on its own,
in any order, by any thread, with the same bits; a call that draws n numbers moves the
counter on by n. The state is two numbers, which a checkpoint stores exactly
(rnnkit/backends/cuda.py). Words are held in 64-bit integers and masked to 32 bits: the
product of two 32-bit words fits in 64, so no operation overflows (the simulator runs this as
numpy integer arithmetic).
"""
import numpy as np
from numba import cuda, float64

from rnnkit.kernels.cuda import launch as L
from rnnkit.kernels.cuda.launch import device, jit

_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_MASK = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_S5 = np.uint64(5)
_S6 = np.uint64(6)
_S8 = np.uint64(8)
_ZERO = np.uint64(0)
_TWO26 = float64(67108864.0)
_TWO_M53 = float64(1.0 / 9007199254740992.0)
_TWO_M24 = float64(1.0 / 16777216.0)


@device
def philox(c0, c1, c2, c3, k0, k1):
    """The four 32-bit words of Philox4x32-10 for counter (c0..c3) and key (k0, k1)."""
    for _ in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        c0, c1, c2, c3 = (((p1 >> _S32) ^ c1 ^ k0) & _MASK, p1 & _MASK,
                          ((p0 >> _S32) ^ c3 ^ k1) & _MASK, p0 & _MASK)
        k0 = (k0 + _W0) & _MASK
        k1 = (k1 + _W1) & _MASK
    return c0, c1, c2, c3


@device
def uniform(key, counter, wide):
    """A uniform draw in [0, 1) for the 64-bit counter `counter` (int64 >= 0) under the 64-bit
    key: 53 random bits when wide (float64 arrays), else 24 (float32), exact in both."""
    c = np.uint64(counter)
    k = np.uint64(key)
    w0, w1, _, _ = philox(c & _MASK, c >> _S32, _ZERO, _ZERO, k & _MASK, k >> _S32)
    if wide:
        return (float64(w0 >> _S5) * _TWO26 + float64(w1 >> _S6)) * _TWO_M53
    return float64(w0 >> _S8) * _TWO_M24


@jit
def dropout(x, p, scale, key, counter, wide, mask, out):
    """mask = scale where the draw is >= p, else 0; out = x * mask (inverted dropout)."""
    zero = scale - scale
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        m = scale if uniform(key, counter + i, wide) >= p else zero
        mask[i] = m
        out[i] = x[i] * m


def run_dropout(x, p, scale, key, counter, mask, out):
    """Flat x, mask, out of one dtype; p and scale in that dtype; key and counter ints."""
    wide = x.dtype == np.float64
    L.launch(dropout, L.blocks_for(x.shape[0]), L.THREADS, x, p, scale, key, counter, wide,
             mask, out)


SIGNATURES = [(dropout, "affiibaa", L.FLOATS)]
