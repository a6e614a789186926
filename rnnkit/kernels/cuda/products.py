"""Every large product of the model, C (+)= op(A) op(B) (+ a bias row) on 2-D row-major device
arrays: the input projection of all steps, the weight and input gradients, the output layer.

On a GPU they go to cuBLAS, through CuPy's bindings (`cupy-cuda12x`/`cupy-cuda13x`, the
`[cuda]` extra) on the very memory Numba allocated (the pointers its arrays export, the ones
`__cuda_array_interface__` names) and on the same stream (the default one, where Numba
launches every kernel): no copy, no synchronisation. Under the simulator, or without CuPy,
they run in kernels/cuda/gemm.py's tiled kernel. cuBLAS gives the same bits on a repeat on one
GPU (one stream, its default atomics-free algorithms; docs/cuda.md).

Precision of float32 products: "fp32" (IEEE single precision, cuBLAS's default math) or
"tf32" (tensor cores with 10-bit mantissas for the products, float32 accumulation: about 8x
the throughput on an A100/H100, relative error about 1e-3 per product). float64 arrays run in
float64 whatever the precision.
"""
import sys

import numpy as np

from rnnkit.kernels.cuda import launch as L
from rnnkit.kernels.cuda.elementwise import fill, run
from rnnkit.kernels.cuda.gemm import View, bias_rows, product

PRECISIONS = ("fp32", "tf32")
_OP_N, _OP_T = 0, 1                     # cublasOperation_t
_DEFAULT_MATH, _TF32_MATH = 0, 3        # cublasMath_t


class Blas:
    """cuBLAS on Numba's memory and stream: one handle, its math mode set by `precision`."""

    def __init__(self, precision="fp32"):
        from cupy_backends.cuda.libs import cublas
        self.cublas, self.precision = cublas, precision
        self.handle = cublas.create()
        cublas.setStream(self.handle, 0)     # the legacy default stream: Numba's stream 0
        cublas.setMathMode(self.handle, _TF32_MATH if precision == "tf32" else _DEFAULT_MATH)

    def gemm(self, c, a, b, trans_a, trans_b, beta):
        """Row-major C = op(A) op(B) + beta C as cuBLAS's column-major C^T = op(B)^T op(A)^T."""
        M, N = c.shape
        K = a.shape[0] if trans_a else a.shape[1]
        fn = self.cublas.sgemm if c.dtype == np.float32 else self.cublas.dgemm
        fn(self.handle, _OP_T if trans_b else _OP_N, _OP_T if trans_a else _OP_N, N, M, K, 1.0,
           _ptr(b), b.shape[1], _ptr(a), a.shape[1], float(beta), _ptr(c), N)


def _ptr(a):
    return a.device_ctypes_pointer.value


def make_blas(precision):
    """A Blas, or None (the tiled kernel) under the simulator or without CuPy, said on stderr
    once when a GPU is there."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if L.SIMULATOR:
        return None
    try:
        return Blas(precision)
    except ImportError as err:
        print(f"rnnkit: cuBLAS is not available ({err}; pip install 'rnnkit[cuda]'): the "
              f"products run in rnnkit's own tiled kernel", file=sys.stderr, flush=True)
        return None


def matmul(blas, c, a, b, trans_a=False, trans_b=False, accumulate=False, bias=None):
    """c (M, N) (+)= op(a) @ op(b) (+ bias[None, :]), op a transpose when asked; all 2-D
    C-contiguous device arrays of one dtype. blas: a Blas, or None for the tiled kernel."""
    M, N = c.shape
    K = a.shape[0] if trans_a else a.shape[1]
    if blas is not None:
        if M == 0 or N == 0:
            return
        if bias is not None:
            bias_rows(c, bias)
        if K == 0:
            if bias is None and not accumulate:
                run(fill, c.size, c.reshape(c.size), c.dtype.type(0.0))
            return
        L.COUNT[0] += 1
        blas.gemm(c, a, b, trans_a, trans_b, 1.0 if accumulate or bias is not None else 0.0)
        return
    A = View(a, 0, 0, 1, 0, M) if trans_a else View(a, 0, 0, K, 0, 1)
    B = View(b, 0, 0, 0, 1, K) if trans_b else View(b, 0, 0, 0, N, 1)
    product(View(c, 0, 0, N, 1), A, B, 1, M, N, K, bias=bias, bias_ij=(0, 1),
            accumulate=accumulate)
