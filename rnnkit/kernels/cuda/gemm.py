"""Tiled products in shared memory: every large product of the model (the input projection of
all steps, the output layer, the weight and input gradients) is one launch of `gemm`.

    C[b][i, j] (+)= sum over kb < KB, k < K of A[b][i, kb, k] * B[b][kb, k, j]  (+ bias)

Operands are flat arrays with a stride per index, so one kernel reads any layout without a
copy: a transpose is a swap of strides, a batch over time steps is a stride b, and a sum over
(time step, stream) whose strides do not combine into one (the LSTM's feature-major caches) is
the pair (kb, k). Each block computes BM x BN tiles of C (TS x TS threads, an R x R tile
each) through BK-deep tiles of A and B staged in shared memory; a grid-stride loop covers the
tiles. Every entry of C is one thread's sum in a fixed order of k: no atomics, the same bits
on every run. The loads run along whichever index of A (and B) has stride 1, so they coalesce.
"""
from numba import cuda, float64

from rnnkit.kernels.cuda import launch as L
from rnnkit.kernels.cuda.launch import jit

TS, R, BK = L.TS, L.R, L.BK
BM = TS * R
NT = TS * TS
PAD = BM + 1            # a row of a staged tile: one more than BM keeps column writes apart


@jit
def gemm(A, a_off, a_b, a_i, a_kb, a_k, B, b_off, b_b, b_kb, b_k, b_j, C, c_off, c_b, c_i, c_j,
         bias, bias_i, bias_j, use_bias, batches, M, N, KB, K, accumulate):
    staged = cuda.shared.array(0, C.dtype)
    As = staged[:BK * PAD]                            # As[k PAD + i]
    Bs = staged[BK * PAD:2 * BK * PAD]                # Bs[k PAD + j]
    acc = cuda.local.array((R, R), C.dtype)
    af = cuda.local.array(R, C.dtype)
    bf = cuda.local.array(R, C.dtype)
    zero = C.dtype.type(0.0)
    tid = cuda.threadIdx.x
    tx = tid % TS
    ty = tid // TS
    tiles_m = (M + BM - 1) // BM
    tiles_n = (N + BM - 1) // BM
    KT = KB * K
    for tile in range(cuda.blockIdx.x, batches * tiles_m * tiles_n, cuda.gridDim.x):
        tn = tile % tiles_n
        tm = (tile // tiles_n) % tiles_m
        b = tile // (tiles_n * tiles_m)
        i0 = tm * BM
        j0 = tn * BM
        for r in range(R):
            for s in range(R):
                acc[r, s] = zero
        for k0 in range(0, KT, BK):
            for q in range(tid, BK * BM, NT):
                if a_i == 1:
                    ii, kk = q % BM, q // BM
                else:
                    ii, kk = q // BK, q % BK
                i, k = i0 + ii, k0 + kk
                v = zero
                if i < M and k < KT:
                    kb, kr = (0, k) if KB == 1 else (k // K, k % K)
                    v = A[a_off + b * a_b + i * a_i + kb * a_kb + kr * a_k]
                As[kk * PAD + ii] = v
            for q in range(tid, BK * BM, NT):
                if b_j == 1:
                    jj, kk = q % BM, q // BM
                else:
                    jj, kk = q // BK, q % BK
                j, k = j0 + jj, k0 + kk
                v = zero
                if j < N and k < KT:
                    kb, kr = (0, k) if KB == 1 else (k // K, k % K)
                    v = B[b_off + b * b_b + kb * b_kb + kr * b_k + j * b_j]
                Bs[kk * PAD + jj] = v
            cuda.syncthreads()
            for kk in range(BK):
                for r in range(R):
                    af[r] = As[kk * PAD + ty + r * TS]
                for s in range(R):
                    bf[s] = Bs[kk * PAD + tx + s * TS]
                for r in range(R):
                    for s in range(R):
                        acc[r, s] += af[r] * bf[s]
            cuda.syncthreads()
        for r in range(R):
            i = i0 + ty + r * TS
            for s in range(R):
                j = j0 + tx + s * TS
                if i < M and j < N:
                    v = acc[r, s]
                    if use_bias:
                        v += bias[i * bias_i + j * bias_j]
                    at = c_off + b * c_b + i * c_i + j * c_j
                    if accumulate:
                        v += C[at]
                    C[at] = v


@jit
def sum_rows(src, off, s_i, s_b, s_k, out, I, B, K):
    """out[i] += sum over b < B, k < K of src[off + i s_i + b s_b + k s_k] (a bias gradient:
    a gate gradient summed over steps and streams), one thread per i adding in float64 in
    (b, k) order."""
    for i in range(cuda.grid(1), I, cuda.gridsize(1)):
        acc = float64(0.0)
        for b in range(B):
            for k in range(K):
                acc += src[off + i * s_i + b * s_b + k * s_k]
        out[i] = out[i] + acc


@jit
def rows_of(c, bias, M, N):
    """c[i, j] = bias[j] for the M x N entries of c (the bias row a cuBLAS product then adds
    onto: kernels/cuda/products.py)."""
    for q in range(cuda.grid(1), M * N, cuda.gridsize(1)):
        c[q] = bias[q % N]


class View:
    """A strided operand: flat array `a`, offset, strides (batch, row, col) or, for a product's
    K side, (batch, kb, k)."""

    def __init__(self, a, off=0, *strides):
        self.a, self.off, self.strides = a.reshape(a.size), off, strides


def product(C, A, B, batches, M, N, K, KB=1, bias=None, bias_ij=(0, 0), accumulate=False):
    """C (+)= A @ B (+ bias): C strides (b, i, j), A (b, i, kb, k), B (b, kb, k, j)."""
    use_bias = bias is not None
    tiles = batches * -(-M // BM) * -(-N // BM)
    L.launch(gemm, min(tiles, L.GEMM_BLOCKS), NT,
             A.a, A.off, *A.strides, B.a, B.off, *B.strides, C.a, C.off, *C.strides,
             bias.reshape(bias.size) if use_bias else C.a, bias_ij[0], bias_ij[1], use_bias,
             batches, M, N, KB, K, bool(accumulate),
             shared=2 * BK * PAD * C.a.dtype.itemsize)


def bias_rows(c, bias):
    """c (M, N) = bias in every row."""
    M, N = c.shape
    L.launch(rows_of, L.blocks_for(M * N), L.THREADS, c.reshape(c.size), bias.reshape(bias.size),
             M, N)


def row_sums(src, out, I, B, K, off, s_i, s_b, s_k):
    L.launch(sum_rows, L.blocks_for(I), L.THREADS, src.reshape(src.size), off, s_i, s_b, s_k,
             out.reshape(out.size), I, B, K)


SIGNATURES = [(gemm, "aiiiii aiiiii aiiii aiib iiiiib", L.FLOATS),
              (sum_rows, "aiiiiaiii", L.FLOATS), (rows_of, "aaii", L.FLOATS)]
