"""LSTM recurrence split by hidden units instead of streams, for large H.

Split by streams, every thread reads all of W_h (H x 4H) at every step: 4 MB at H=512, which
bounds the step by memory, not arithmetic. Split by units, thread i owns units j0:j1 of all
four gates: forward it multiplies h_{t-1} by its own packed columns of W_h, backward by its
own rows of W_h, so each thread reads 1/threads of W_h per step. The gate math of a unit needs
only that unit, so the one barrier per step is the end of the parallel region.
"""
from numba import njit, prange
import numpy as np

from rnnkit.config import JIT, PARALLEL
from rnnkit.kernels.activations import sigmoid, tanh
from rnnkit.kernels.blocks import span


def pack(w_h, parts):
    """(parts, H, 4*hb): part i holds gates i, f, g, o of its units side by side."""
    H = w_h.shape[0]
    hb = -(-H // parts)
    wp = np.zeros((parts, H, 4 * hb), w_h.dtype)
    for i in range(parts):
        j0, j1 = i * H // parts, (i + 1) * H // parts
        for k in range(4):
            wp[i, :, k * hb:k * hb + j1 - j0] = w_h[:, k * H + j0:k * H + j1]
    return wp


@njit(**JIT)
def forward_step(g, h_prev, w, hp, c_prev, c, h, j0, j1):
    """Units j0:j1 of one step: hp = h_prev @ w (w: those units' columns, gate blocks of
    width w.shape[1] / 4), then the gates. Short loops over few arrays, so LLVM vectorises
    them (one fused loop over six arrays ran scalar, 4x slower). The stream split calls it
    with all units and w = W_h."""
    np.dot(h_prev, w, hp)
    H, hb = c.shape[1], w.shape[1] // 4
    for n in range(g.shape[0]):
        gn, hpn = g[n], hp[n]
        for jj in range(j1 - j0):
            gn[j0 + jj] = sigmoid(gn[j0 + jj] + hpn[jj])
        for jj in range(j1 - j0):
            gn[H + j0 + jj] = sigmoid(gn[H + j0 + jj] + hpn[hb + jj])
        for jj in range(j1 - j0):
            gn[2 * H + j0 + jj] = tanh(gn[2 * H + j0 + jj] + hpn[2 * hb + jj])
        for jj in range(j1 - j0):
            gn[3 * H + j0 + jj] = sigmoid(gn[3 * H + j0 + jj] + hpn[3 * hb + jj])
        cp, cn, hn = c_prev[n], c[n], h[n]
        for j in range(j0, j1):
            cv = gn[H + j] * cp[j] + gn[j] * gn[2 * H + j]
            cn[j] = cv
            hn[j] = gn[3 * H + j] * tanh(cv)


@njit(**PARALLEL)
def forward(gates, hs, cs, wp, hp):
    """gates (T, N, 4H) input projection in, activations out; hs, cs (T+1, N, H)."""
    parts, H = wp.shape[0], hs.shape[2]
    for t in range(gates.shape[0]):
        for i in prange(parts):
            j0, j1 = span(H, parts, i)
            forward_step(gates[t], hs[t], wp[i], hp[i], cs[t], cs[t + 1], hs[t + 1], j0, j1)


@njit(**JIT)
def backward_step(g, c_prev, c, dh, dhs, dc, dg, j0, j1):
    """Units j0:j1 of one BPTT step. dh (N, j1 - j0): the recurrent gradient on h_t; dhs:
    the gradient from above; dc: on c_t in, on c_{t-1} out; dg: the gate gradients."""
    one = g.dtype.type(1.0)
    H = c.shape[1]
    for n in range(g.shape[0]):
        gn, dgn, dcn, cn, cp, dhn, dsn = g[n], dg[n], dc[n], c[n], c_prev[n], dh[n], dhs[n]
        for jj in range(j1 - j0):
            j = j0 + jj
            o = gn[3 * H + j]
            tc = tanh(cn[j])
            d = dhn[jj] + dsn[j]
            dgn[3 * H + j] = d * tc * o * (one - o)
            dcn[j] += d * o * (one - tc * tc)
        for j in range(j0, j1):
            i, f, gg, d = gn[j], gn[H + j], gn[2 * H + j], dcn[j]
            dgn[j] = d * gg * i * (one - i)
            dgn[H + j] = d * cp[j] * f * (one - f)
            dgn[2 * H + j] = d * i * (one - gg * gg)
            dcn[j] = d * f


@njit(**PARALLEL)
def backward(w_h, gates, cs, dhs, dh, dc, dgates, buf):
    """dh (N, H): gradient on the final state in, on the initial state out.
    buf (parts, N * hb): each part's (N, j1 - j0) block of the recurrent gradient."""
    parts, H = buf.shape[0], w_h.shape[0]
    T, N = gates.shape[0], gates.shape[1]
    for t in range(T - 1, -1, -1):
        for i in prange(parts):
            j0, j1 = span(H, parts, i)
            b = buf[i][:N * (j1 - j0)].reshape(N, j1 - j0)
            if t == T - 1:
                b[:] = dh[:, j0:j1]
            else:
                np.dot(dgates[t + 1], w_h[j0:j1].T, b)
            backward_step(gates[t], cs[t], cs[t + 1], b, dhs[t], dc, dgates[t], j0, j1)
    np.dot(dgates[0], w_h.T, dh)
