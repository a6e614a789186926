"""The recurrence of every cell: one kernel skeleton (`steps_kernel`) that runs time steps and
takes each cell's pointwise epilogue, the block product it is built on, a grid-wide barrier,
and the plan that picks one persistent launch or one launch per step.

Layout, every cell: time-major, x (T, N, D), hs (T + 1, N, H) with hs[0] the initial state,
gates (T, N, G H); so h_{t-1} = hs[t] and BPTT's dg_{t+1} are contiguous (N, K) rows.

Ownership. Block b owns U hidden units j0 = b U ... with all their gates. The forward needs
the C = G U columns of W_h that feed them (C rows of K = H inputs), BPTT the C = U rows of W_h
that they feed (over K = G H gate gradients): G U H numbers either way, which the block copies
into shared memory once per launch (persistent: once for all T steps).

A step, per pass of NS streams: the block copies those streams' rows of h_{t-1} (dg_{t+1})
into shared memory, one contiguous coalesced copy; each warp takes CR x NR tiles of the
product (slice rows x streams), lane l summing inputs k = l, l + LANES, ... in registers, and
the LANES partial sums meet in a butterfly of warp shuffles; the tiles go to shared memory,
where the cell's epilogue reads them for (unit, stream) pairs. Persistent: a grid barrier
between steps. Per step (when the blocks cannot all be resident): one launch per step, and W_h
in chunks of KC inputs when a slice does not fit in 48 KB. The order of every sum depends on
LANES alone, not on U, NS, KC or the path, so every plan gives the same bits.

BPTT also sums each unit's bias gradient: per (stream, gate, unit), over the steps, into a
float64 scratch `acc` that only the owning block touches, then over the streams after step 0.
"""
import dataclasses
import sys
import types

import numpy as np
from numba import cuda, float64, int32

from rnnkit.kernels.cuda import launch as L
from rnnkit.kernels.cuda.launch import device, jit
from rnnkit.kernels.cuda.products import matmul

LANES, WARPS, CR, NR = L.LANES, L.WARPS, L.CR, L.NR
NT = LANES * WARPS                 # threads of a block
TILE = CR * NR                     # a thread's accumulators
SPIN = 1 << 22                     # barrier polls before a block gives up (seconds)
FLAG_EVERY = 64                    # barrier polls between looks at the timeout flag
SHARED = 48 * 1024                 # bytes of shared memory a block gets without opting in
NSMAX = 64                         # streams per pass, at most
FULL = 0xFFFFFFFF


if L.SIMULATOR or not hasattr(cuda, "ldcv"):
    @device
    def peek(bar, i):
        return cuda.atomic.add(bar, i, 0)
else:
    @device
    def peek(bar, i):
        """A load that bypasses L1 (ld.global.cv): polling reads no stale line, and no
        read-modify-write contends with the blocks arriving."""
        return cuda.ldcv(bar, i)


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
        while peek(bar, 0) < target:
            tries += 1
            if tries % FLAG_EVERY == 0 and (tries > SPIN or peek(bar, 1) != 0):
                cuda.atomic.max(bar, 1, 1)
                break
            cuda.nanosleep(32)
        cuda.threadfence()
    cuda.syncthreads()


if L.SIMULATOR:
    @device
    def lane_sum(scr, v, lane, warp):
        """The simulator has no shuffles: the same butterfly through shared memory."""
        off = LANES // 2
        while off > 0:
            scr[warp * LANES + lane] = v
            cuda.syncthreads()
            v = v + scr[warp * LANES + (lane ^ off)]
            cuda.syncthreads()
            off //= 2
        return v
else:
    @device
    def lane_sum(scr, v, lane, warp):
        """The sum of v over a warp's lanes, a butterfly: every lane gets the same bits."""
        off = LANES // 2
        while off > 0:
            v = v + cuda.shfl_xor_sync(FULL, v, off)
            off //= 2
        return v


@device
def load_slice(ws, w, C, CP, U, j0, H, GH, k0, KC, K, backward, tid):
    """ws[c KC + kk] = the block's slice of W_h (H, GH) at input k0 + kk: forward, row c =
    g U + u is column g H + j0 + u; backward, row u is row j0 + u. Zero past C, H or K."""
    zero = ws.dtype.type(0.0)
    for q in range(tid, CP * KC, NT):
        if backward:
            c, kk = q // KC, q % KC
            u, g = c, int32(0)
        else:
            c, kk = q % CP, q // CP
            u, g = c % U, c // U
        j, k = j0 + u, k0 + kk
        v = zero
        if c < C and j < H and k < K:
            v = w[j * GH + k] if backward else w[k * GH + g * H + j]
        ws[c * KC + kk] = v


@device
def stage(xs, src, at, rows, K, k0, KC, NP, tid):
    """xs[m KC + kk] = src[at + m K + k0 + kk] for the first `rows` of NP rows (zeros past
    them and past K): one coalesced copy (contiguous when KC == K)."""
    zero = xs.dtype.type(0.0)
    for q in range(tid, NP * KC, NT):
        m, kk = q // KC, q % KC
        v = zero
        if m < rows and k0 + kk < K:
            v = src[at + m * K + k0 + kk]
        xs[q] = v


@device
def tile_product(tile, ws, xs, r0, m0, KC, kn, lane):
    """tile[i NR + m] += sum over kk = lane, lane + LANES, ... < kn of ws[(r0 + i) KC + kk]
    xs[(m0 + m) KC + kk]: CR + NR loads from shared memory feed CR NR multiply-adds."""
    wv = cuda.local.array(CR, ws.dtype)
    xv = cuda.local.array(NR, ws.dtype)
    for kk in range(lane, kn, LANES):
        for i in range(CR):
            wv[i] = ws[(r0 + i) * KC + kk]
        for m in range(NR):
            xv[m] = xs[(m0 + m) * KC + kk]
        for i in range(CR):
            for m in range(NR):
                tile[i * NR + m] += wv[i] * xv[m]


def steps_kernel(name, epilogue, G, GB, backward):
    """The recurrence kernel `name` of a cell with G gates: steps t0, t0 + 1, ... (BPTT: t0, t0 - 1,
    ..., down to -1, the initial state's phase), `count` of them, for the units of each block.
    epilogue(t, T, n, j, N, H, red, r, RS, live, b, b2, a0, ..., a6, acc, flag) is the cell's
    pointwise work for unit j of stream n, its products at red[r + g RS] for gate g (BPTT: one,
    at red[r]); live: whether a product was computed (BPTT's last step has none). b, b2: the
    biases (BPTT: their gradients, GB blocks of H, the last GB - G of them into b2)."""

    def steps(w_h, b, b2, src, a0, a1, a2, a3, a4, a5, a6, acc, T, N, H, t0, count, flag, U,
              KC, NS, bar, base, blocks):
        sm = cuda.shared.array(0, src.dtype)
        tile = cuda.local.array(TILE, src.dtype)
        zero = src.dtype.type(0.0)
        T, N, H, U, KC, NS = int32(T), int32(N), int32(H), int32(U), int32(KC), int32(NS)
        tid = int32(cuda.threadIdx.x)
        lane, warp = tid % LANES, tid // LANES
        j0 = int32(cuda.blockIdx.x) * U
        K = G * H if backward else H
        C = U if backward else G * U
        CP = (C + CR - 1) // CR * CR
        NP = (NS + NR - 1) // NR * NR
        ST = NP // NR
        tiles = CP // CR * ST
        ws = sm[:CP * KC]
        xs = sm[CP * KC:(CP + NP) * KC]
        red = sm[(CP + NP) * KC:(CP + NP) * KC + CP * NP]
        scr = sm[(CP + NP) * KC + CP * NP:]
        whole = KC >= K
        if whole:
            load_slice(ws, w_h, C, CP, U, j0, H, G * H, 0, KC, K, backward, tid)
        for s in range(count):
            t = int32(t0 - s if backward else t0 + s)
            live = t < T - 1 if backward else True
            at = (t + 1) * N * K if backward else t * N * K
            for n0 in range(0, N, NS):
                ns = min(NS, N - n0)
                if live:
                    if whole:
                        stage(xs, src, at + n0 * K, ns, K, 0, KC, NP, tid)
                    cuda.syncthreads()
                    for g0 in range(0, tiles, WARPS):
                        tl = g0 + warp
                        r0, m0 = tl // ST * CR, tl % ST * NR
                        for q in range(TILE):
                            tile[q] = zero
                        for k0 in range(0, K, KC):
                            if not whole:
                                load_slice(ws, w_h, C, CP, U, j0, H, G * H, k0, KC, K,
                                           backward, tid)
                                stage(xs, src, at + n0 * K, ns, K, k0, KC, NP, tid)
                                cuda.syncthreads()
                            if tl < tiles:
                                tile_product(tile, ws, xs, r0, m0, KC, min(KC, K - k0), lane)
                            if not whole:
                                cuda.syncthreads()
                        for q in range(TILE):
                            v = lane_sum(scr, tile[q], lane, warp)
                            if lane == 0 and tl < tiles:
                                red[(r0 + q // NR) * NP + m0 + q % NR] = v
                    cuda.syncthreads()
                for q in range(tid, U * ns, NT):
                    u, m = q % U, q // U
                    if j0 + u < H:
                        epilogue(t, T, n0 + m, j0 + u, N, H, red, u * NP + m, U * NP, live, b,
                                 b2, a0, a1, a2, a3, a4, a5, a6, acc, flag)
                cuda.syncthreads()
            if s < count - 1:
                grid_sync(bar, base, blocks, s + 1)
        if backward and t0 - count == -2:       # after step 0's phase: the bias gradients
            for q in range(tid, GB * U, NT):
                g, u = q // U, q % U
                j = j0 + u
                if j < H:
                    total = float64(0.0)
                    for n in range(N):
                        total += acc[(int32(n) * GB + g) * H + j]
                    if g < G:
                        b[g * H + j] = b[g * H + j] + total
                    else:
                        b2[(g - G) * H + j] = b2[(g - G) * H + j] + total

    # its own name: Numba's cache files and profiles tell the six kernels apart by it
    kernel = types.FunctionType(steps.__code__, steps.__globals__, name, None,
                                steps.__closure__)
    kernel.__qualname__, kernel.__module__ = name, steps.__module__
    return jit(kernel)


# -- the plan ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Plan:
    persistent: bool
    U: int             # hidden units per block
    blocks: int
    NS: int            # streams per pass
    K: int             # inputs: H (forward) or G H (BPTT)
    KC: int            # inputs per chunk of the W_h slice (K: all of it)
    C: int             # rows of the slice: gate columns (forward) or units (BPTT)
    shared: int        # bytes of dynamic shared memory
    cooperative: bool  # launched cooperatively: the driver guarantees all blocks resident
    why: str = ""      # why not persistent

    def describe(self):
        path = (f"persistent{' cooperative' if self.cooperative else ''}" if self.persistent
                else "per step")
        text = (f"{path}, U {self.U}, {self.blocks} blocks, {self.NS} streams a pass, "
                f"{self.shared} B shared")
        return text + (f" ({self.why})" if self.why else "")


def _round_up(n, m):
    return -(-int(n) // m) * m


def shared_bytes(C, NS, KC, itemsize):
    """Dynamic shared memory of a launch: W_h slice, staged state, products, lane scratch."""
    CP, NP = _round_up(C, CR), _round_up(NS, NR)
    return itemsize * ((CP + NP) * KC + CP * NP + (NT if L.SIMULATOR else 0))


def make_plan(G, backward, H, N, itemsize, sms, shared_max, resident, mode="auto"):
    """The launch shape of a recurrence with G gates. sms: multiprocessors; shared_max: bytes
    of shared memory a block may opt in to; resident(shared): how many blocks with that much
    shared memory can be resident at once (the kernel opted in; a failure raises). mode:
    "auto", "persistent" or "steps"."""
    K = G * H if backward else H
    cols = 1 if backward else G
    why = ""
    if mode != "steps":
        U = max(1, min(L.UNITS, -(-H // sms)))
        blocks = -(-H // U)
        NS = min(N, NSMAX)
        while NS > 1 and shared_bytes(cols * U, NS, K, itemsize) > shared_max:
            NS = max(1, NS // 2)
        need = shared_bytes(cols * U, NS, K, itemsize)
        if need > shared_max:
            why = f"a W_h slice needs {need} B of shared memory, the GPU gives {shared_max}"
        else:
            fit = blocks if blocks == 1 else resident(need)
            if fit >= blocks:
                return Plan(True, U, blocks, NS, K, K, cols * U, need, blocks > 1)
            why = f"{blocks} blocks of {need} B, {fit} resident at once"
        if mode == "persistent":
            raise ValueError(f"the persistent recurrence does not fit here: {why}")
    U = L.STEP_UNITS or max(1, min(L.UNITS, -(-H // sms)))
    C = cols * U
    NS = min(N, NSMAX)
    KC = _round_up(K, LANES)
    while shared_bytes(C, NS, KC, itemsize) > SHARED and KC > LANES:
        KC = max(LANES, _round_up(KC // 2, LANES))
    while shared_bytes(C, NS, KC, itemsize) > SHARED and NS > 1:
        NS = max(1, NS // 2)
    KC = K if KC >= K else KC
    return Plan(False, U, -(-H // U), NS, K, KC, C, shared_bytes(C, NS, KC, itemsize), False,
                why or "mode steps")


class Recurrence:
    """Launches the cells' recurrence kernels by a plan per (kernel, H, N, dtype). device:
    the GPU's side (backends/cuda.py): sms, shared_max and resident(kernel, argtypes,
    threads, shared), the blocks that can be resident at once, after opting kernel in to
    `shared` bytes. The grid barrier's counter (bar[0]) only grows: each persistent launch
    starts from the arrivals of the ones before it."""

    def __init__(self, sms, shared_max, resident, blas=None, mode="auto"):
        self.sms, self.shared_max, self.resident = sms, shared_max, resident
        self.blas, self.mode = blas, mode
        self.bar = cuda.to_device(np.zeros(2, np.int64))
        self.arrivals = 0
        self._plans = {}
        self._acc = cuda.to_device(np.zeros(1, np.float64))

    def acc(self, n):
        """The bias gradients' float64 scratch, at least n long (kept between calls)."""
        if self._acc.size < n:
            self._acc = cuda.device_array(n, np.float64)
        return self._acc

    def reset(self, mode=None):
        """A fresh counter (after a timed-out barrier) and, optionally, another mode."""
        self.mode = mode or self.mode
        self.bar.copy_to_device(np.zeros(2, np.int64))
        self.arrivals = 0
        self._plans = {}

    def plans(self):
        """{(kernel name, H, N, dtype): Plan} so far, for describe() and the bench."""
        return {(k[0], k[2], k[3], str(k[4])): p for k, p in self._plans.items()}

    def plan(self, kernel, G, backward, H, N, dtype, args):
        key = (kernel.__name__, kernel.__module__, H, N, np.dtype(dtype), self.mode)
        if key not in self._plans:
            types_ = tuple(L.arg_type(a) for a in args)

            def resident(shared):
                return self.resident(kernel, types_, NT, shared)

            self._plans[key] = make_plan(G, backward, H, N, np.dtype(dtype).itemsize, self.sms,
                                         self.shared_max, resident, self.mode)
        return self._plans[key]

    def run(self, kernel, G, backward, T, N, H, arrays, acc, flag):
        """kernel(w_h, b, b2, src, a0..a6, acc, T, N, H, t0, count, flag, U, KC, NS, bar,
        base, blocks) over all steps: T forward, T + 1 BPTT phases (T - 1 down to -1)."""
        flat = [a.reshape(a.size) for a in arrays]
        acc = acc.reshape(acc.size)
        probe = (*flat, acc, T, N, H, 0, 1, flag, 1, 1, 1, self.bar, 0, 1)
        p = self.plan(kernel, G, backward, H, N, flat[0].dtype, probe)
        first, total = (T - 1, T + 1) if backward else (0, T)
        spans = [(first, total)] if p.persistent else [
            (first - s if backward else s, 1) for s in range(total)]
        for t0, count in spans:
            L.launch(kernel, p.blocks, NT, *flat, acc, T, N, H, t0, count, flag, p.U, p.KC,
                     p.NS, self.bar, self.arrivals, p.blocks, shared=p.shared,
                     cooperative=p.cooperative)
        if p.persistent and p.blocks > 1:
            self.arrivals += p.blocks * (total - 1)
        return p


# -- the products around the recurrence, over all T N rows at once -----------------------------

def project(blas, x, w_x, gates):
    """gates (T N, G H) = x (T N, D) W_x: the input projection of all steps (the recurrence
    adds the bias)."""
    T, N, D = x.shape
    matmul(blas, gates.reshape(T * N, w_x.shape[1]), x.reshape(T * N, D), w_x)


def layer_grads(blas, x, hs, dgx, dgh, w_x, dx, dw_x, dw_h):
    """dW_x += x^T dgx, dW_h += hs[:T]^T dgh, dx = dgx W_x^T (dgx: the gradient on the input
    side's gate sums, dgh on the hidden side's; the same array but for the GRU)."""
    T, N, D = x.shape
    H, GH = dw_h.shape
    M = T * N
    dgx, dgh = dgx.reshape(M, GH), dgh.reshape(M, GH)
    matmul(blas, dw_x, x.reshape(M, D), dgx, trans_a=True, accumulate=True)
    matmul(blas, dw_h, hs[:T].reshape(M, H), dgh, trans_a=True, accumulate=True)
    matmul(blas, dx.reshape(M, D), dgx, w_x, trans_b=True)


def say(text):
    """One line on stderr: what the GPU refused and what runs instead."""
    print(f"rnnkit: {text}", file=sys.stderr, flush=True)
