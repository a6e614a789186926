"""One time step of a layer for a few streams: sampling, token by token.

With T = 1 and N small a layer is two matrix-vector products that stream the weights from
memory. Each thread takes a block of rows of W_x and W_h, so the threads split the memory
traffic, and accumulates x[:, rows] @ W[rows] into its own partial sum (long contiguous
axpy loops that LLVM vectorises); one thread then adds the partials and does the gate math.
No allocation per step: acc is (parts, 2, N, G*H) scratch.
"""
from numba import njit, prange
import numpy as np

from rnnkit.kernels.cpu.compile import JIT, Twin
from rnnkit.kernels.cpu.activations import sigmoid, tanh
from rnnkit.kernels.cpu.blocks import add_row, parts_for, span
from rnnkit.kernels.cpu.lanes import vdot

CELL_CODES = {"rnn-tanh": 0, "rnn-relu": 1, "lstm": 2, "gru": 3}
# A layer's step runs on a second thread from 2 * STEP_WEIGHTS weights in W_h (fewer: waking
# it costs more than it saves)
STEP_WEIGHTS = 1 << 18


@njit(**JIT)
def _axpy_rows(x, w, acc, lo, hi):
    """acc[n] += x[n, lo:hi] @ w[lo:hi] for every stream n, one row of w after another (the
    order of the sums). Four rows a pass over the sums (loaded and stored once for four), and
    each row read once for all the streams: in blocks of JB columns when there are several,
    so that their sums stay in L1 (beam search's 8 x 2,048 floats would not)."""
    N, GH = x.shape[0], acc.shape[1]
    JB = GH if N == 1 else 512
    for j0 in range(0, GH, JB):
        j1 = min(j0 + JB, GH)
        d = lo
        while d + 4 <= hi:
            r0, r1, r2, r3 = w[d, j0:j1], w[d + 1, j0:j1], w[d + 2, j0:j1], w[d + 3, j0:j1]
            for n in range(N):
                x0, x1, x2, x3 = x[n, d], x[n, d + 1], x[n, d + 2], x[n, d + 3]
                a = acc[n, j0:j1]
                for j in range(a.shape[0]):
                    a[j] = a[j] + x0 * r0[j] + x1 * r1[j] + x2 * r2[j] + x3 * r3[j]
            d += 4
        for d in range(d, hi):
            row = w[d, j0:j1]
            for n in range(N):
                xv = x[n, d]
                a = acc[n, j0:j1]
                for j in range(a.shape[0]):
                    a[j] += xv * row[j]


@njit(**JIT)
def _units(cell, acc, b, b_hn, h, c, h_out, c_out):
    """The cell's gate math from the partial input (acc[:, 0]) and hidden (acc[:, 1])
    products."""
    parts, _, N, GH = acc.shape
    H = h.shape[1]
    one, zero = h.dtype.type(1.0), h.dtype.type(0.0)
    flat = acc.reshape(parts, acc[0].size)
    for i in range(1, parts):       # a loop: `acc[0] += acc[i]` compiled numpy's broadcasting
        add_row(flat[0], flat[i])   # and its errors, 4 s of a first run
    ax, ah = acc[0, 0], acc[0, 1]
    for n in range(N):
        for j in range(H):
            if cell == 2:
                i = sigmoid(ax[n, j] + ah[n, j] + b[j])
                f = sigmoid(ax[n, H + j] + ah[n, H + j] + b[H + j])
                g = tanh(ax[n, 2 * H + j] + ah[n, 2 * H + j] + b[2 * H + j])
                o = sigmoid(ax[n, 3 * H + j] + ah[n, 3 * H + j] + b[3 * H + j])
                cv = f * c[n, j] + i * g
                c_out[n, j] = cv
                h_out[n, j] = o * tanh(cv)
            elif cell == 3:
                r = sigmoid(ax[n, j] + ah[n, j] + b[j])
                z = sigmoid(ax[n, H + j] + ah[n, H + j] + b[H + j])
                nn = tanh(ax[n, 2 * H + j] + b[2 * H + j] + r * (ah[n, 2 * H + j] + b_hn[j]))
                h_out[n, j] = (one - z) * nn + z * h[n, j]
            else:
                pre = ax[n, j] + ah[n, j] + b[j]
                h_out[n, j] = max(pre, zero) if cell == 1 else tanh(pre)


def _layer_step(cell, x, w_x, w_h, b, b_hn, h, c, h_out, c_out, acc, parts):
    D, H = x.shape[1], h.shape[1]
    for i in prange(parts):
        acc[i] = 0.0
        lo, hi = span(D, parts, i)
        _axpy_rows(x, w_x, acc[i, 0], lo, hi)
        lo, hi = span(H, parts, i)
        _axpy_rows(h, w_h, acc[i, 1], lo, hi)
    _units(cell, acc, b, b_hn, h, c, h_out, c_out)


def _logits(h, w, b, out, parts):
    """out (N, V) = h @ w.T + b (b of length 0: no bias), one block of the V rows of w per
    thread."""
    N, V = out.shape
    for i in prange(parts):
        lo, hi = span(V, parts, i)
        for v in range(lo, hi):         # each row of w read once for all the streams
            wv = w[v]
            for n in range(N):
                if b.shape[0]:
                    out[n, v] = b[v] + vdot(h[n], wv, 0, wv.shape[0])
                else:
                    out[n, v] = vdot(h[n], wv, 0, wv.shape[0])


_layer_step = Twin(_layer_step)
_logits = Twin(_logits)


def step_scratch(N, H, G, dtype):
    """Scratch for layer_step: one partial sum per thread, when the layer is big enough
    (STEP_WEIGHTS) for a second thread to pay for waking it."""
    return np.zeros((parts_for(G * H * H // STEP_WEIGHTS), 2, N, G * H), dtype)


def layer_step(cell, x, w_x, w_h, b, b_hn, h, c, h_out, c_out, acc):
    """One step: h_out (and c_out, LSTM) from input x (N, D) and state h, c (N, H).

    b_hn and c may be any array for cells that do not use them. acc: step_scratch(...).
    """
    parts = acc.shape[0]
    _layer_step(parts, CELL_CODES[cell], x, w_x, w_h, b, b_hn, h, c, h_out, c_out, acc, parts)


def logits_step(h, w, b, out):
    parts = parts_for(w.shape[0] * w.shape[1] // 65536)
    _logits(parts, h, w, b, out, parts)
