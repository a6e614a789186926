"""Drawing the next token of N streams on the device: temperature, top-k, top-p, greedy, with
the semantics of rnnkit/backends/sampling.py (the reference the tests compare with).

Per row, in float64: z = logits / temperature; top-k keeps z >= the k-th largest z (ties at
the k-th all kept); p = exp(z - max) over what is kept; top-p keeps the most likely tokens,
in order of probability and then of index, while the mass before each is < top_p; the draw
is the first token whose running sum reaches u times the kept total, u uniform from the
device's Philox stream (counter + row). For long rows the k-th largest value and the top-p
cut are found by bisection on the floats' bits read as ordered integers (64 halvings at
most), so no sort and
no scratch the size of the vocabulary. Rows of at most ROW_V tokens take one thread each,
which applies the definitions pairwise (V^2 comparisons); longer rows take one block each,
which bisects with block-wide reductions and scans.
"""
import math

import numpy as np
from numba import cuda, float64, int64

from rnnkit.kernels.cuda import launch as L
from rnnkit.kernels.cuda.launch import device, jit
from rnnkit.kernels.cuda.reduce import block_argmax, block_max, block_scan, block_sum
from rnnkit.kernels.cuda.rng import uniform

_FLIP = np.int64(0x7FFFFFFFFFFFFFFF)
LOWEST = np.int64(-0x8000000000000000)           # below every order_key: top-k off

if L.SIMULATOR:
    def _bits(x):
        return np.float64(x).view(np.int64)
else:
    from numba.cuda import libdevice

    @device
    def _bits(x):
        return libdevice.double_as_longlong(x)


@device
def order_key(x):
    """An int64 that orders as the float64 x does."""
    b = _bits(x)
    return b if b >= 0 else b ^ _FLIP


@device
def midpoint(lo, hi):
    """floor((lo + hi) / 2) without overflow."""
    return (lo >> 1) + (hi >> 1) + (lo & hi & 1)


@device
def zval(logits, base, v, temperature):
    return float64(logits[base + v]) / temperature


@device
def prob(logits, base, v, temperature, kth, mx, total):
    """The token's probability after temperature and top-k (0 when cut; kth == LOWEST: no
    top-k)."""
    z = zval(logits, base, v, temperature)
    if kth != LOWEST and order_key(z) < kth:
        return float64(0.0)
    return math.exp(z - mx) / total


@device
def kept(q, key, cut, rank, ties):
    """Whether top-p keeps a token of probability q (key: its order_key): above the cut, or
    at it among the first `ties` of equal probability (rank: its place among them)."""
    return q > 0 and (key > cut or (key == cut and rank < ties))


# -- one thread per row: the definitions, pairwise (V^2 steps for V <= ROW_V) --------------

@device
def row_q(logits, base, V, temperature, kth, mx, total, v):
    z = zval(logits, base, v, temperature)
    return math.exp(z - mx) / total if z >= kth else float64(0.0)


@device
def row_kept(logits, base, V, temperature, kth, mx, total, top_p, v):
    """Top-p's test for token v: the mass of the tokens before it (more likely, or as likely
    with a lower index) is below top_p."""
    q = row_q(logits, base, V, temperature, kth, mx, total, v)
    if q <= 0:
        return False
    if top_p >= 1:
        return True
    before = float64(0.0)
    for w in range(V):
        r = row_q(logits, base, V, temperature, kth, mx, total, w)
        if r > q or (r == q and w < v):
            before += r
    return before < top_p


@device
def row_draw(logits, base, V, temperature, top_k, top_p, u):
    """The token of one row, drawn by this thread alone."""
    kth = -math.inf
    if 0 < top_k < V:
        for v in range(V):
            z = zval(logits, base, v, temperature)
            if z > kth:
                ge = 0
                for w in range(V):
                    ge += zval(logits, base, w, temperature) >= z
                if ge >= top_k:
                    kth = z
    mx = -math.inf
    for v in range(V):
        z = zval(logits, base, v, temperature)
        if z >= kth:
            mx = max(mx, z)
    total = float64(0.0)
    for v in range(V):
        z = zval(logits, base, v, temperature)
        if z >= kth:
            total += math.exp(z - mx)
    kept_total = float64(0.0)
    for v in range(V):
        if row_kept(logits, base, V, temperature, kth, mx, total, top_p, v):
            kept_total += row_q(logits, base, V, temperature, kth, mx, total, v)
    x = u * kept_total
    acc, last = float64(0.0), 0
    for v in range(V):
        if row_kept(logits, base, V, temperature, kth, mx, total, top_p, v):
            acc += row_q(logits, base, V, temperature, kth, mx, total, v)
            last = v
            if acc >= x:
                return v
    return last


@jit
def sample_rows(logits, M, V, temperature, top_k, top_p, greedy, key, counter, out):
    for m in range(cuda.grid(1), M, cuda.gridsize(1)):
        base = m * V
        if greedy:
            best, at = logits[base], 0
            for v in range(1, V):
                if logits[base + v] > best:
                    best, at = logits[base + v], v
            out[m] = at
        else:
            u = uniform(key, counter + m, True)
            out[m] = row_draw(logits, base, V, temperature, top_k, top_p, u)


# -- one block per row ----------------------------------------------------------------------

@device
def count_ge(ibuf, fbuf, logits, base, V, temperature, key):
    n = float64(0.0)
    for v in range(cuda.threadIdx.x, V, cuda.blockDim.x):
        n += order_key(zval(logits, base, v, temperature)) >= key
    return block_sum(fbuf, n)


@device
def mass_above(fbuf, logits, base, V, temperature, kth, mx, total, key):
    s = float64(0.0)
    for v in range(cuda.threadIdx.x, V, cuda.blockDim.x):
        q = prob(logits, base, v, temperature, kth, mx, total)
        if order_key(q) > key:
            s += q
    return block_sum(fbuf, s)


@jit
def sample_blocks(logits, M, V, temperature, top_k, top_p, greedy, key, counter, out):
    tid, nt = cuda.threadIdx.x, cuda.blockDim.x
    fbuf = cuda.shared.array(0, float64)[:nt]
    ibuf = cuda.shared.array(0, int64)[nt:2 * nt]
    chunk = (V + nt - 1) // nt
    v0, v1 = min(V, tid * chunk), min(V, (tid + 1) * chunk)
    for m in range(cuda.blockIdx.x, M, cuda.gridDim.x):
        base = m * V
        if greedy:
            best, at = -math.inf, V
            for v in range(tid, V, nt):
                z = float64(logits[base + v])
                if z > best:
                    best, at = z, v
            _, at = block_argmax(fbuf, ibuf, best, at)
            if tid == 0:
                out[m] = min(at, V - 1)
            continue
        kth = LOWEST
        if 0 < top_k < V:
            hi, nlo = kth, kth
            for v in range(tid, V, nt):
                k = order_key(zval(logits, base, v, temperature))
                hi = max(hi, k)
                nlo = max(nlo, ~k)
            hi = block_max(ibuf, hi)
            lo = ~block_max(ibuf, nlo)
            if count_ge(ibuf, fbuf, logits, base, V, temperature, hi) < top_k:
                while lo < hi - 1:
                    mid = midpoint(lo, hi)
                    if count_ge(ibuf, fbuf, logits, base, V, temperature, mid) >= top_k:
                        lo = mid
                    else:
                        hi = mid
                hi = lo
            kth = hi
        mx = -math.inf
        for v in range(tid, V, nt):
            z = zval(logits, base, v, temperature)
            if order_key(z) >= kth:
                mx = max(mx, z)
        mx = block_max(fbuf, mx)
        total = float64(0.0)
        for v in range(tid, V, nt):
            z = zval(logits, base, v, temperature)
            if order_key(z) >= kth:
                total += math.exp(z - mx)
        total = block_sum(fbuf, total)
        cut, ties = int64(-1), V
        if top_p < 1:
            hi = int64(0)
            for v in range(tid, V, nt):
                hi = max(hi, order_key(prob(logits, base, v, temperature, kth, mx, total)))
            hi = block_max(ibuf, hi)
            lo = int64(-1)
            if mass_above(fbuf, logits, base, V, temperature, kth, mx, total, lo) >= top_p:
                while lo < hi - 1:
                    mid = midpoint(lo, hi)
                    if mass_above(fbuf, logits, base, V, temperature, kth, mx, total,
                                  mid) < top_p:
                        hi = mid
                    else:
                        lo = mid
                cut = hi
                above = mass_above(fbuf, logits, base, V, temperature, kth, mx, total, cut)
                w, count = float64(0.0), float64(0.0)
                for v in range(tid, V, nt):
                    q = prob(logits, base, v, temperature, kth, mx, total)
                    if order_key(q) == cut:
                        w = q
                        count += 1.0
                w = block_max(fbuf, w)
                count = block_sum(fbuf, count)
                ties = 0
                while ties < count and above + ties * w < top_p:
                    ties += 1
        # tie ranks and kept mass of this thread's chunk, then the block's running sums
        nties = float64(0.0)
        for v in range(v0, v1):
            nties += order_key(prob(logits, base, v, temperature, kth, mx, total)) == cut
        rank = int64(block_scan(fbuf, nties))
        part, r = float64(0.0), rank
        for v in range(v0, v1):
            q = prob(logits, base, v, temperature, kth, mx, total)
            k = order_key(q)
            if kept(q, k, cut, r, ties):
                part += q
            r += k == cut
        before = block_scan(fbuf, part)
        kept_total = block_sum(fbuf, part)
        x = uniform(key, counter + m, True) * kept_total
        acc, r, found, last = before, rank, V, -1
        for v in range(v0, v1):
            q = prob(logits, base, v, temperature, kth, mx, total)
            k = order_key(q)
            if kept(q, k, cut, r, ties):
                acc += q
                last = v
                if acc >= x and found == V:
                    found = v
            r += k == cut
        found = -block_max(ibuf, -found)
        last = block_max(ibuf, last)
        if tid == 0:
            out[m] = found if found < V else max(last, 0)


def sample(logits, temperature, top_k, top_p, greedy, key, counter, out):
    """out (M,) int64: the drawn token of each row of logits (M, V)."""
    M, V = logits.shape
    flat = logits.reshape(M * V)
    args = (flat, M, V, float(temperature), int(top_k), float(top_p), bool(greedy), key,
            counter, out)
    if V <= L.ROW_V:
        L.launch(sample_rows, L.blocks_for(M), L.THREADS, *args)
    else:
        threads = min(L.THREADS, max(1, 1 << (int(V) - 1).bit_length()))
        L.launch(sample_blocks, L.blocks_for(M, 1), threads, *args, shared=16 * threads)


SIGNATURES = [(sample_rows, "aiiDiDbiiI", L.FLOATS), (sample_blocks, "aiiDiDbiiI", L.FLOATS)]
