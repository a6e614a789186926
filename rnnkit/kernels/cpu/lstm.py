"""LSTM layer: forward and BPTT. Gate order (i, f, g, o), PyTorch's; equations in docs/cells.md.

Interface, as for the other cells: x (T, N, D), w_x (D, 4H), w_h (H, 4H), b (4H,); hs
(T + 1, N, H) with the initial state at hs[0] and step t's output at hs[t + 1]; c (N, H), the
initial cell state in and the final one out.

Inside, what a step touches is feature-major (streams last) and contiguous per step: z (T +
1, D + H, N) holds [x_t; h_{t-1}] for each step (x_t packed for the tiles there with
PACK_INPUTS_FROM), gates (T, 4H, N) the activated gates, cs (T + 1, H, N) the cell states.
The input projection of all T steps is one product pass
before the recurrence, each thread its block of gate rows for every step; then each step adds
W_h.T @ h_{t-1} and runs the gate math over contiguous blocks of its threads' units, which
LLVM vectorises (per row of 32-64 streams it ran mostly scalar). The products run in
kernels/cpu/tiles.py, faster than OpenBLAS on these shapes (bench/RESULTS.md), but for small
batches, which take BLAS (TILE_FROM, TILE_STREAMS below). Each thread owns a block of
hidden units with their four gates and meets the others once per step. BPTT mirrors it: per
step dh from the next step's dgates and the gate math; then dW (and dx, unless each step
computed the next one's from its packed dgates: PACK_GATES_FROM) over all steps. Memory kept
for backward: T*N*(4H + H + D + H) floats, plus hs. With a table (tt (U, 4H), tid (T, N)
int64; rnnkit/model/tables.py) x is (T, N, 0): the input gates of stream n at step t are row
tid[t, n] of tt, and BPTT sums their gradients by id into gt (U, 4H) (kernels/cpu/table.py).
"""
import numpy as np
from numba import njit, prange

from rnnkit.kernels.cpu.compile import JIT, Twin
from rnnkit.kernels.cpu.lstm_cell import cell_backward, cell_forward
from rnnkit.kernels.cpu.blas import gemm
from rnnkit.kernels.cpu.blocks import (block, fill_rows, pack_gates, pack_inputs, pack_states,
                                       span, split, transpose_add, transpose_into,
                                       transpose_packed, units)
from rnnkit.kernels.checks import check, spec
from rnnkit.kernels.cpu.buffers import LSTM, padded
from rnnkit.kernels.cpu.lanes import vsum
from rnnkit.kernels.cpu import leaf, table
from rnnkit.kernels.cpu.target import ISA
from rnnkit.kernels.cpu.tiles import CHUNK, product, product_packed, product_runs_packed


# dW.T sums over all steps in blocks of about this many of the product's rows ([x_t, h_{t-1}]
# of a few steps): a block then stays in cache while every row panel of dW.T passes it, and
# dW.T moves in and out of cache once per block (the size that ran fastest: bench/RESULTS.md,
# "Design figures"). Read at each call, not compiled in: a test may change it.
DW_ROWS = 256

# BPTT reads dgates_t as B twice (dh, dx): packed for the tiles from this many rows (4H) on,
# with AVX2 only; below, and with AVX-512, the copy costs what it saves (bench/RESULTS.md,
# "Packed B for the LSTM's backward").
PACK_GATES_FROM = 1024 if ISA == "avx2" else 1 << 62
# The forward reads h_{t-1} and x_t as B (rows N apart): packed, as dgates, from this many
# rows (4H), with AVX2 only (bench/RESULTS.md, "The LSTM's forward with packed operands").
PACK_STATES_FROM = 512 if ISA == "avx2" else 1 << 62
PACK_INPUTS_FROM = 512 if ISA == "avx2" else 1 << 62

# From this many T*N on, or this many streams, the products run in kernels/cpu/tiles.py against
# W.T copied once per forward; below both, as when priming one stream, through BLAS against
# the weights as they are. From 8 streams the tiles run even a short batch (an evaluation's
# last few steps) about as fast as BLAS (bench/RESULTS.md, "Design figures"): no build of its
# own. The kernels take this as `small`: None for the tiles, True for BLAS (Numba drops a
# branch on a None argument before it compiles, so a first step waits for the tiled build
# only; a False would compile both).
TILE_FROM, TILE_STREAMS = 256, 8


def _small(T, N):
    """The kernels' `small`: None for the tiles, True for BLAS."""
    return None if T * N >= TILE_FROM or N >= TILE_STREAMS else True


@njit(**JIT)
def runs(j0, j1, n0, n1, N):
    """A block of units and streams as contiguous runs of a (units, N) array: (count, width,
    step between runs, offset of the first)."""
    if n1 - n0 == N:
        return 1, (j1 - j0) * N, 0, j0 * N
    return j1 - j0, n1 - n0, N, j0 * N + n0


@njit(**JIT)
def project(z, wt, w_x, b, gates, xpack, small, tt, tid, r0, r1):
    """Rows r0:r1 of every step's gates = b + W_x.T @ x_t, x_t feature-major in z[t][:D] (or
    with xpack packed there, for the tiles): this block of the input projection of all T
    steps, in one pass (W_x.T's rows stay in cache). With a table (tt (4H, U), U > 0,
    D = 0): gates_t = tt[:, tid[t]], b included."""
    T, N = gates.shape[0], gates.shape[2]
    D = w_x.shape[0]
    if tt.shape[1]:
        return table.gather(tt, tid, gates, r0, r1)
    for t in range(T):
        a = gates[t]
        for r in range(r0, r1):
            row, value = a[r], b[r]
            for n in range(N):
                row[n] = value
        if xpack:
            product_packed(wt, 0, wt.shape[1], 1, r0, r1, D, z[t], 0,
                           D * (CHUNK // z.itemsize), N, a, 0, N)
        elif small is None:
            product(wt, 0, wt.shape[1], 1, r0, r1, D, z[t], 0, N, N, a, 0, N)
        else:
            gemm(w_x[:, r0:r1], z[t][:D], a[r0:r1], True, False, 1.0)


@njit(**JIT)
def forward_step(z, wt, w_h, gates, cs, hs, hp, size, small, t, j0, j1, n0, n1):
    """Units j0:j1 of streams n0:n1 at step t: their gates += W_h.T @ h_{t-1} (from z[t]), then
    c_t and h_t (into z[t + 1] and hs[t + 1]). Multiplies by wt = W.T (4H, D + H), or when
    small through BLAS. size > 0: h_{t-1} is read from its packed copy at hp[t % 2 * size:],
    and this block's h_t packed at hp[(t + 1) % 2 * size:] (all streams; two copies, so that
    one block may write while another reads)."""
    H, N = cs.shape[1], cs.shape[2]
    D = z.shape[1] - H
    C = CHUNK // hp.itemsize
    zt, a = z[t], gates[t]
    for k in range(4):
        r0, r1 = k * H + j0, k * H + j1
        if small is None and size:
            product_packed(wt, D, D + H, 1, r0, r1, H, hp, t % 2 * size, H * C, N, a, 0, N)
        elif small is None:
            product(wt, D, D + H, 1, r0, r1, H, zt, D * N + n0, N, n1 - n0, a, n0, N)
        else:
            gemm(w_h[:, r0:r1], zt[D:, n0:n1], a[r0:r1, n0:n1], True, False, 1.0)
    af, cp, cn, hn = (a.reshape(a.size), cs[t].reshape(cs[t].size),
                      cs[t + 1].reshape(cs[t + 1].size), z[t + 1].reshape(z[t + 1].size))
    count, width, step, first = runs(j0, j1, n0, n1, N)
    G = H * N
    for q in range(count):
        s = first + q * step
        e = s + width
        cell_forward(af[s:e], af[G + s:G + e], af[2 * G + s:2 * G + e], af[3 * G + s:3 * G + e],
                     cp[s:e], cn[s:e], hn[D * N + s:D * N + e])
    transpose_into(z[t + 1][D + j0:D + j1, n0:n1], hs[t + 1][n0:n1, j0:j1])
    if size:
        pack_states(z[t + 1], H, hp, (t + 1) % 2 * size, j0, j1)


def _forward(x, w_x, w_h, b, z, wt, gates, hs, c, cs, hp, size, xpack, small, tt, tid, su,
             ss):
    """su, ss: the recurrence's unit and stream blocks (split); size: forward_step's; xpack:
    each x_t packed for the tiles into z[t][:D] (N a multiple of their columns C)."""
    T, N, D = x.shape
    H = w_h.shape[0]
    parts = su * ss
    for i in prange(parts):
        # Each step's input, transposed, by blocks of steps; W.T by blocks of its rows; the
        # initial states by blocks of units.
        t0, t1 = span(T, parts, i)
        for t in range(t0, t1):
            if xpack:
                transpose_packed(x[t], z[t].reshape(z[t].size))
            else:
                transpose_into(x[t], z[t][:D])
        if small is None:
            r0, r1 = span(4 * H, parts, i)
            transpose_into(w_x[:, r0:r1], wt[r0:r1, :D])
            transpose_into(w_h[:, r0:r1], wt[r0:r1, D:])
        j0, j1 = units(H, parts, i)
        transpose_into(hs[0][:, j0:j1], z[0][D + j0:D + j1])
        transpose_into(c[:, j0:j1], cs[0][j0:j1])
        if size:
            pack_states(z[0], H, hp, 0, j0, j1)
    for i in prange(parts):
        r0, r1 = span(4 * H, parts, i)
        project(z, wt, w_x, b, gates, xpack, small, tt, tid, r0, r1)
    for t in range(T):
        for i in prange(parts):
            j0, j1, n0, n1 = block(H, N, su, ss, i)
            forward_step(z, wt, w_h, gates, cs, hs, hp, size, small, t, j0, j1, n0, n1)
    for i in prange(parts):
        j0, j1 = span(H, parts, i)
        transpose_into(cs[T][j0:j1], c[:, j0:j1])


_forward = Twin(_forward)


@njit(**JIT)
def weight_grads(x, hs, dg, dwt, bp, hoff, steps, small, r0, r1):
    """Rows r0:r1 of dW.T (4H, D + H) = the sum over all steps of dgates_t @ [x_t, h_{t-1}],
    in blocks of `steps` steps; with the tiles, [x_t, h_{t-1}] packed in bp (pack_inputs)."""
    T, N, D = x.shape
    H, G, ld = hs.shape[2], dg.shape[1] * N, dwt.shape[1]
    C, M = CHUNK // bp.itemsize, T * N
    fill_rows(dwt[r0:r1], 0.0)
    for t0 in range(0, T, steps):
        t1 = min(T, t0 + steps)
        if small is None:
            product_runs_packed(dg, t0 * G, N, 1, G, r0, r1, N, t1 - t0, bp, t0 * N * C, N * C,
                                M * C, D, dwt, 0, ld)
            product_runs_packed(dg, t0 * G, N, 1, G, r0, r1, N, t1 - t0, bp,
                                hoff + t0 * N * C, N * C, M * C, H, dwt, D, ld)
        else:
            for t in range(t0, t1):
                gemm(dg[t][r0:r1], x[t], dwt[r0:r1, :D], False, False, 1.0)
                gemm(dg[t][r0:r1], hs[t], dwt[r0:r1, D:], False, False, 1.0)


@njit(**JIT)
def input_grads(dg, dgp, b0, w_x, dx, dxt, small, t, d0, d1):
    """dx[t][:, d0:d1] = (dgates_t.T @ W_x.T) there, computed as W_x @ dgates_t into dxt (D, N)
    and transposed (W_x's rows are the long side: faster than dgates_t.T @ W_x.T); dgates_t
    read from its packed copy at dgp[b0:] where b0 >= 0."""
    N = dx.shape[1]
    H4 = dg.shape[1]
    if small is None:
        fill_rows(dxt[d0:d1], 0.0)
        if b0 >= 0:
            product_packed(w_x, 0, H4, 1, d0, d1, H4, dgp, b0, H4 * (CHUNK // dgp.itemsize),
                           N, dxt, 0, N)
        else:
            product(w_x, 0, H4, 1, d0, d1, H4, dg[t], 0, N, N, dxt, 0, N)
        transpose_into(dxt[d0:d1], dx[t][:, d0:d1])
    else:
        gemm(dg[t], w_x[d0:d1], dx[t][:, d0:d1], True, True, 0.0)


@njit(**JIT)
def hidden_grads(w_h, dg, dgp, b0, dht, small, t, j0, j1, n0, n1):
    """dht[j0:j1, n0:n1] += W_h @ dgates_t there; dgates_t from its packed copy at dgp[b0:]
    where b0 >= 0 (then n0:n1 are all streams)."""
    H4, N = dg.shape[1], dg.shape[2]
    if small is None:
        if b0 >= 0:
            product_packed(w_h, 0, H4, 1, j0, j1, H4, dgp, b0, H4 * (CHUNK // dgp.itemsize), N,
                           dht, 0, N)
        else:
            product(w_h, 0, H4, 1, j0, j1, H4, dg[t], n0, N, n1 - n0, dht, n0, N)
    else:
        gemm(w_h[j0:j1], dg[t][:, n0:n1], dht[j0:j1, n0:n1], False, False, 1.0)


@njit(**JIT)
def backward_step(w_h, gates, cs, dhs, dgates, dht, dct, dgp, size, small, t, j0, j1, n0, n1):
    """Units j0:j1 of streams n0:n1 at BPTT step t. dht (H, N): the recurrent gradient on h_t
    (set by the caller for the last step); dct (H, N): on c_t in, on c_{t-1} out. size > 0:
    dgates_{t+1} is read from its packed copy at dgp[(t + 1) % 2 * size:], and this block's
    dgates_t packed at dgp[t % 2 * size:] (all streams; two copies, so that one block may
    still read step t + 1's while another writes step t's)."""
    T, H, N = gates.shape[0], cs.shape[1], cs.shape[2]
    above = dhs[t][n0:n1, j0:j1]
    if t == T - 1:
        transpose_add(above, dht[j0:j1, n0:n1])
    else:
        transpose_into(above, dht[j0:j1, n0:n1])
        hidden_grads(w_h, dgates, dgp, (t + 1) % 2 * size if size else -1, dht, small, t + 1,
                     j0, j1, n0, n1)
    a, da = gates[t], dgates[t]
    af, daf = a.reshape(a.size), da.reshape(da.size)
    cp, cn = cs[t].reshape(cs[t].size), cs[t + 1].reshape(cs[t + 1].size)
    dhf, dcf = dht.reshape(dht.size), dct.reshape(dct.size)
    count, width, step, first = runs(j0, j1, n0, n1, N)
    G = H * N
    for q in range(count):
        s = first + q * step
        e = s + width
        cell_backward(af[s:e], af[G + s:G + e], af[2 * G + s:2 * G + e],
                      af[3 * G + s:3 * G + e], cp[s:e], cn[s:e], dhf[s:e], dcf[s:e],
                      daf[s:e], daf[G + s:G + e], daf[2 * G + s:2 * G + e],
                      daf[3 * G + s:3 * G + e])
    if size:
        pack_gates(dgates, dgp, t % 2 * size, t, j0, j1)


def _backward(x, hs, w_x, w_h, gates, cs, dhs, dh, dc, dgates, dht, dct, dx, dw_x, dw_h,
              db, dwt, dxt, bp, hoff, dgp, size, steps, small, tid, gt, su, ss):
    """su, ss: the recurrence's unit and stream blocks."""
    T, N, D = x.shape
    H = w_h.shape[0]
    parts = su * ss
    # size > 0: dgates_t packed for dh and dx (pack_gates), each block computing dx_{t+1} in
    # step t (lstm_backward says when).
    for i in prange(parts):
        j0, j1 = units(H, parts, i)
        transpose_into(dh[:, j0:j1], dht[j0:j1])
        transpose_into(dc[:, j0:j1], dct[j0:j1])
    for t in range(T - 1, -1, -1):
        for i in prange(parts):
            j0, j1, n0, n1 = block(H, N, su, ss, i)
            backward_step(w_h, gates, cs, dhs, dgates, dht, dct, dgp, size, small, t, j0, j1,
                          n0, n1)
            if size and t < T - 1:
                d0, d1 = span(D, parts, i)
                input_grads(dgates, dgp, (t + 1) % 2 * size, w_x, dx, dxt, small, t + 1, d0,
                            d1)
    if small is None:
        for i in prange(parts):
            pack_inputs(x, hs, bp, hoff, i, parts)
    for i in prange(parts):
        # dW and dx over all steps, by blocks of dW.T's rows and of dx's columns.
        r0, r1 = span(4 * H, parts, i)
        weight_grads(x, hs, dgates, dwt, bp, hoff, steps, small, r0, r1)
        d0, d1 = span(D, parts, i)
        if size:
            input_grads(dgates, dgp, 0, w_x, dx, dxt, small, 0, d0, d1)
        else:
            for t in range(T):
                input_grads(dgates, dgp, -1, w_x, dx, dxt, small, t, d0, d1)
        j0, j1, n0, n1 = block(H, N, su, ss, i)
        # The initial state's gradients: dh_0 = W_h @ dgates_0 (dhs plays no part there).
        fill_rows(dht[j0:j1, n0:n1], 0.0)
        hidden_grads(w_h, dgates, dgp, 0 if size else -1, dht, small, 0, j0, j1, n0, n1)
        transpose_into(dht[j0:j1, n0:n1], dh[n0:n1, j0:j1])
        transpose_into(dct[j0:j1, n0:n1], dc[n0:n1, j0:j1])
        for r in range(r0, r1):
            total = db.dtype.type(0.0)
            for t in range(T):
                total += vsum(dgates[t, r], 0, N)
            db[r] += total
        if gt.shape[1]:
            table.scatter_rows(dgates, tid, gt, r0, r1)
        transpose_add(dwt[r0:r1, :D], dw_x[:, r0:r1])
        transpose_add(dwt[r0:r1, D:], dw_h[:, r0:r1])


_backward = Twin(_backward)


def lstm_forward(x, w_x, w_h, b, hs, c, gates, cs, z, wt, hp, tt=None, tid=None):
    """Run the layer over x (or a table: above); hs[0] must hold the initial h, c the
    initial cell state.

    Writes hs (T + 1, N, H), c (the final cell state) and the caches for backward: gates
    (T, 4H, N) activations, cs (T + 1, H, N), z (T + 1, D + H, N) the inputs and states
    feature-major. Scratch: wt (4H, D + H), W.T for the tiles (TILE_FROM); hp: two steps'
    h packed for the tiles (PACK_STATES_FROM).
    """
    T, N, D = x.shape
    H = w_h.shape[0]
    arrays = dict(w_x=w_x, w_h=w_h, b=b, hs=hs, c=c, gates=gates, cs=cs, z=z, wt=wt, hp=hp)
    tt, tid = table.arrays(tt, tid, 4 * H, T, N, D, x.dtype)
    tt = np.ascontiguousarray(tt.T)          # (4H, U): kernels/cpu/table.py
    check(dict(arrays, x=x), x.dtype)
    spec({**LSTM.params(D, H), **LSTM.buffers(T, N, D, H)}, arrays)
    su, ss = split(H, N, 4)
    small = _small(T, N)
    # h packed when the threads share the units (all streams each), from PACK_STATES_FROM
    size = hp.size // 2 if small is None and ss == 1 and 4 * H >= PACK_STATES_FROM else 0
    # x_t packed in place of its transpose: for whole blocks of the tiles' columns only
    xpack = (small is None and D > 0 and N % (CHUNK // x.itemsize) == 0 and
             4 * H >= PACK_INPUTS_FROM)
    leaf.ready(x.dtype)
    _forward(su * ss, x, w_x, w_h, b, z, wt, gates, hs, c, cs, hp, size, xpack, small, tt, tid,
             su, ss)


def lstm_backward(x, w_x, w_h, hs, gates, cs, dhs, dh, dc, dx, dw_x, dw_h, db, dgates, dht,
                  dct, dwt, dxt, bp, dgp, tid=None, gt=None):
    """BPTT through the layer, after lstm_forward with the same weights (its caches hs, gates
    and cs). Gradients on weights accumulate (+=); dx and gt are overwritten.

    dhs (T, N, H): loss gradient on each output h_t. dh, dc (N, H): gradient on the final state
    in, on the initial state out. Scratch: dgates (T, 4H, N), dht and dct (H, N),
    dwt (4H, D + H), dxt (D, N).
    """
    T, N, D = x.shape
    H = w_h.shape[0]
    arrays = dict(w_x=w_x, w_h=w_h, hs=hs, gates=gates, cs=cs, dg=dgates, dht=dht, dct=dct,
                  dwt=dwt, dxt=dxt, bp=bp, dgp=dgp)
    gt, tid = table.arrays(gt, tid, 4 * H, T, N, D, x.dtype)
    gtt = np.empty((4 * H, gt.shape[0]), x.dtype)
    check(dict(arrays, x=x, dhs=dhs, dh=dh, dc=dc, dx=dx, dw_x=dw_x, dw_h=dw_h, db=db), x.dtype)
    spec({**LSTM.params(D, H), **LSTM.buffers(T, N, D, H), **LSTM.scratch(T, N, D, H),
          "dhs": (T, N, H), "dh": (N, H), "dc": (N, H), "dx": (T, N, D)},
         dict(arrays, dhs=dhs, dh=dh, dc=dc, dx=dx))
    spec(LSTM.params(D, H), dict(w_x=dw_x, w_h=dw_h, b=db))
    su, ss = split(H, N, 4)
    small = _small(T, N)
    # dgates_t packed when the threads share the units (all streams each) and from
    # PACK_GATES_FROM rows of it: below, the copy costs about what it saves.
    size = dgp.size // 2 if small is None and ss == 1 and 4 * H >= PACK_GATES_FROM else 0
    leaf.ready(x.dtype)
    _backward(su * ss, x, hs, w_x, w_h, gates, cs, dhs, dh, dc, dgates, dht, dct, dx, dw_x,
              dw_h, db, dwt, dxt, bp, T * N * padded(D), dgp, size, max(1, DW_ROWS // N),
              small, tid, gtt, su, ss)
    gt[...] = gtt.T
