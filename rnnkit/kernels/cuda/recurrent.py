"""What the three cells' recurrences share: W_h kept on chip, a block's product with it, a
grid-wide barrier on atomics, and the plan that picks a persistent kernel or one launch per
step.

A block owns U hidden units (a slice of H) with all their gates. It copies its slice of W_h
into shared memory (C rows of K: the forward's C = G U gate columns over K = H inputs, BPTT's
C = U rows of W_h over K = G H gate gradients) and, per step, multiplies it by the previous
state (or the next step's gate gradients) of every stream: thread (n, ks) of the block sums
the products of stream n over inputs k = ks, ks + KS, ... into C registers, and the KS partial
sums meet in a tree through shared memory, in the same order every run. The cell's pointwise
math follows, then all blocks meet at a grid barrier before the next step.

Persistent: one launch runs all T steps, each block loading its slice once (Diamos et al.
2016, "Persistent RNNs"); it needs every block resident at once, so the plan takes it when
ceil(H / U) blocks with their shared memory fit on the device together. Per step: one launch
per step, each block loading its slice again, in chunks of KC inputs when a slice does not fit
(the fallback for large H). Both paths run the same sums in the same order (the chunks are
multiples of KS), so they give the same bits.
"""
import dataclasses

import numpy as np
from numba import cuda

from rnnkit.kernels.cuda import launch as L
from rnnkit.kernels.cuda.gemm import View, product, row_sums
from rnnkit.kernels.cuda.launch import device

CMAX = 4 * L.UNITS                 # accumulators per thread: gate columns of a block
SPIN = 1 << 22                     # barrier polls before a block gives up (seconds)
SHARED = 48 * 1024                 # bytes of shared memory a block gets without opting in


@device
def grid_sync(bar, base, blocks, epoch):
    """Wait until all `blocks` blocks have arrived here `epoch` times in this launch; the
    counter bar[0] held `base` when the launch began. A block that waits more than SPIN polls
    sets bar[1] (the host then reports the timeout) and stops waiting, as do the others."""
    cuda.syncthreads()
    if cuda.threadIdx.x == 0 and blocks > 1:
        cuda.threadfence()
        cuda.atomic.add(bar, 0, 1)
        target = base + blocks * epoch
        tries = 0
        while cuda.atomic.add(bar, 0, 0) < target:
            tries += 1
            if tries > SPIN or cuda.atomic.add(bar, 1, 0) != 0:
                cuda.atomic.max(bar, 1, 1)
                break
            cuda.nanosleep(32)
        cuda.threadfence()
    cuda.syncthreads()


@device
def load_w(ws, w, C, U, j0, H, gstride, ustride, k0, KC, K, sk):
    """ws[c KC + kk] = w[(c // U) gstride + (j0 + c % U) ustride + (k0 + kk) sk] for c < C and
    kk < KC (zero past unit H or input K). The loads run along whichever side of w is
    contiguous."""
    zero = ws.dtype.type(0.0)
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    for q in range(tid, C * KC, nt):
        if sk == 1:
            c, kk = q // KC, q % KC
        else:
            c, kk = q % C, q // C
        j = j0 + c % U
        v = zero
        if j < H and k0 + kk < K:
            v = w[(c // U) * gstride + j * ustride + (k0 + kk) * sk]
        ws[c * KC + kk] = v


@device
def accumulate(acc, ws, C, KC, KK, x, base, sk, ks, KS):
    """acc[c] += ws[c KC + kk] x[base + kk sk] over kk = ks, ks + KS, ... < KK."""
    for kk in range(ks, KK, KS):
        xv = x[base + kk * sk]
        for c in range(CMAX):
            if c < C:
                acc[c] += ws[c * KC + kk] * xv


@device
def reduce_parts(part, acc, C, NS, KS, nl, ks, active):
    """Sum the KS partial sums of each (c, stream nl) in a tree; the total of c for stream nl
    ends in part[c KS NS + nl]. Every thread of the block calls this."""
    zero = part.dtype.type(0.0)
    if ks < KS and nl < NS:
        for c in range(CMAX):
            if c < C:
                part[(c * KS + ks) * NS + nl] = acc[c] if active else zero
    cuda.syncthreads()
    s = KS // 2
    while s > 0:
        if ks < s and nl < NS:
            for c in range(CMAX):
                if c < C:
                    part[(c * KS + ks) * NS + nl] += part[(c * KS + ks + s) * NS + nl]
        cuda.syncthreads()
        s //= 2


@device
def roles(NS, KS, n_fast):
    """(stream nl, input slice ks) of this thread: streams vary fastest across threads when
    the state is feature-major (loads along n coalesce), inputs when it is time-major."""
    tid = cuda.threadIdx.x
    if n_fast:
        return tid % NS, tid // NS
    return tid // KS, tid % KS


@dataclasses.dataclass(frozen=True)
class Plan:
    persistent: bool
    U: int             # hidden units per block
    blocks: int
    NS: int            # streams per pass
    KS: int            # threads per stream (input slices)
    K: int             # inputs: H (forward) or G H (BPTT)
    KC: int            # inputs per chunk of the W_h slice (K: all of it)
    C: int             # rows of the slice: gate columns (forward) or units (BPTT)
    threads: int
    shared: int        # bytes of dynamic shared memory


def _pow2_floor(n):
    return 1 << (max(1, int(n)).bit_length() - 1)


def make_plan(cols, K, H, N, itemsize, sms, shared_max, resident, mode="auto"):
    """The launch shape of a recurrence whose blocks hold `cols` rows of W_h per unit (the
    forward: G gate columns; BPTT: 1 row) over K inputs (forward: H; BPTT: G H). sms:
    multiprocessors; shared_max: bytes of shared memory a block may have (opted in);
    resident(threads, blocks, shared): whether that many blocks can all be resident at once.
    mode: "auto", "persistent" or "steps"."""
    NT = L.REC_THREADS
    NS = min(N, NT)
    KS = _pow2_floor(NT // NS)

    def need(U, KC):
        return itemsize * cols * U * (KC + KS * NS)

    if mode != "steps":
        U = max(1, min(L.UNITS, -(-H // sms)))
        while U > 1 and need(U, K) > shared_max:
            U -= 1
        blocks = -(-H // U)
        plan = Plan(True, U, blocks, NS, KS, K, K, cols * U, NT, need(U, K))
        if need(U, K) <= shared_max and (blocks == 1 or resident(NT, blocks, need(U, K))):
            return plan
        if mode == "persistent":
            raise ValueError(f"the persistent recurrence does not fit here: {blocks} blocks "
                             f"of {need(U, K)} bytes of shared memory")
    U = L.STEP_UNITS or max(1, min(L.UNITS, -(-H // sms)))
    KC = (SHARED // itemsize // (cols * U) - KS * NS) // KS * KS
    KC = K if KC >= K else max(KS, KC)
    return Plan(False, U, -(-H // U), NS, KS, K, KC, cols * U, NT, need(U, KC))


class Recurrence:
    """Launches the cells' recurrence kernels, persistent or one launch per step, by a plan
    per (kernel, H, N, dtype). device: sms, shared_max and resident(kernel, argtypes, threads,
    blocks, shared) of the GPU (backends/cuda.py). The grid barrier's counter (bar[0]) only
    grows: each persistent launch starts from the arrivals of the ones before it."""

    def __init__(self, sms, shared_max, resident, mode="auto"):
        self.sms, self.shared_max, self.resident = sms, shared_max, resident
        self.mode = mode
        self.bar = cuda.to_device(np.zeros(2, np.int64))
        self.arrivals = 0
        self._plans = {}

    def reset(self, mode=None):
        """A fresh counter (after a timed-out barrier) and, optionally, another mode."""
        self.mode = mode or self.mode
        self.bar.copy_to_device(np.zeros(2, np.int64))
        self.arrivals = 0
        self._plans = {}

    def plan(self, kernel, cols, K, H, N, dtype, args):
        key = (kernel.__name__, kernel.__module__, cols, K, H, N, np.dtype(dtype), self.mode)
        if key not in self._plans:
            types_ = tuple(L.arg_type(a) for a in args)

            def resident(threads, blocks, shared):
                return self.resident(kernel, types_, threads, blocks, shared)

            self._plans[key] = make_plan(cols, K, H, N, np.dtype(dtype).itemsize, self.sms,
                                         self.shared_max, resident, self.mode)
        return self._plans[key]

    def _run(self, kernel, cols, K, T, N, H, arrays, extras, spans, syncs):
        flat = [a.reshape(a.size) for a in arrays]
        probe = (*flat, T, N, H, *extras, 0, 0, 1, 1, 1, 1, self.bar, 0, 1)
        p = self.plan(kernel, cols, K, H, N, flat[0].dtype, probe)
        if p.persistent:
            spans = [(spans[0][0], spans[-1][1])]
        for lo, hi in spans:
            L.launch(kernel, p.blocks, p.threads, *flat, T, N, H, *extras, lo, hi, p.U, p.KC,
                     p.NS, p.KS, self.bar, self.arrivals, p.blocks, shared=p.shared)
        if p.persistent and p.blocks > 1:
            self.arrivals += p.blocks * syncs
        return p

    def forward(self, kernel, G, T, N, H, arrays, extras):
        """Steps 0 .. T - 1: kernel(*arrays, T, N, H, *extras, t0, t1, U, KC, NS, KS, bar,
        base, blocks)."""
        return self._run(kernel, G, H, T, N, H, arrays, extras,
                         [(t, t + 1) for t in range(T)], T - 1)

    def backward(self, kernel, G, T, N, H, arrays, extras):
        """Steps T - 1 down to -1 (the initial state's gradient): kernel(*arrays, T, N, H,
        *extras, t_hi, t_lo, ...)."""
        return self._run(kernel, 1, G * H, T, N, H, arrays, extras,
                         [(t, t) for t in range(T - 1, -2, -1)], T)


# -- the products of the time-major cells (GRU, Elman RNN) ------------------------------------

def project(x, w_x, b, gates):
    """gates (T N, G H) = x (T N, D) W_x + b: the input projection of all steps."""
    T, N, D = x.shape
    GH = w_x.shape[1]
    product(View(gates, 0, 0, GH, 1), View(x, 0, 0, D, 0, 1), View(w_x, 0, 0, 0, GH, 1), 1,
            T * N, GH, D, bias=b, bias_ij=(0, 1))


def weight_grads(x, hs, dgx, dgh, w_x, dx, dw_x, dw_h, db):
    """dW_x += x^T dgx, dW_h += hs[:T]^T dgh, db += the sum of dgx's rows, dx = dgx W_x^T,
    all over the T N rows at once (dgx: the gradient on the input side's gate sums, dgh on
    the hidden side's; the same array but for the GRU)."""
    T, N, D = x.shape
    H, GH = dw_h.shape
    M = T * N
    product(View(dw_x, 0, 0, GH, 1), View(x, 0, 0, 1, 0, D), View(dgx, 0, 0, 0, GH, 1), 1, D,
            GH, M, accumulate=True)
    product(View(dw_h, 0, 0, GH, 1), View(hs, 0, 0, 1, 0, H), View(dgh, 0, 0, 0, GH, 1), 1, H,
            GH, M, accumulate=True)
    row_sums(dgx, db, GH, 1, M, 0, 1, 0, GH)
    product(View(dx, 0, 0, D, 1), View(dgx, 0, 0, GH, 0, 1), View(w_x, 0, 0, 0, 1, GH), 1, M,
            D, GH)
