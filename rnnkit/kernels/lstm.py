"""LSTM layer: forward and BPTT. Gate order (i, f, g, o), PyTorch's; equations in docs/cells.md.

Shapes: x (T, N, D), w_x (D, 4H), w_h (H, 4H), b (4H,). Time-major so each step's slice is
one contiguous (N, .) block. hs and cs are (T + 1, N, H) with the initial state at index 0, so
hs[:T] is every step's previous state and hs[1:] every step's output, both without copies.
gates (T, N, 4H) holds the input projection, then the activations, which BPTT reads back.
Memory kept for backward: T*N*(4H + 2H) floats.
"""
from numba import njit
import numpy as np

from rnnkit.config import JIT
from rnnkit.kernels.activations import sigmoid, tanh
from rnnkit.kernels.checks import check, shape


@njit(**JIT)
def _forward_step(g, hp, c_prev, c, h):
    """g: (N, 4H) input projection in, activations out; hp: (N, 4H) = h_prev @ w_h."""
    N, H = c.shape
    for n in range(N):
        for j in range(H):
            i = sigmoid(g[n, j] + hp[n, j])
            f = sigmoid(g[n, H + j] + hp[n, H + j])
            gg = tanh(g[n, 2 * H + j] + hp[n, 2 * H + j])
            o = sigmoid(g[n, 3 * H + j] + hp[n, 3 * H + j])
            cn = f * c_prev[n, j] + i * gg
            c[n, j] = cn
            h[n, j] = o * tanh(cn)
            g[n, j] = i
            g[n, H + j] = f
            g[n, 2 * H + j] = gg
            g[n, 3 * H + j] = o


@njit(**JIT)
def _forward(x, w_x, w_h, b, gates, hs, cs, hp):
    T, N, D = x.shape
    np.dot(x.reshape(T * N, D), w_x, gates.reshape(T * N, gates.shape[2]))
    gates += b
    for t in range(T):
        np.dot(hs[t], w_h, hp)
        _forward_step(gates[t], hp, cs[t], cs[t + 1], hs[t + 1])


@njit(**JIT)
def _backward_step(g, c_prev, c, dh, dc, dg):
    """dh: (N, H) total gradient on h_t; dc: (N, H) on c_t in, on c_{t-1} out."""
    N, H = c.shape
    one = g.dtype.type(1.0)
    for n in range(N):
        for j in range(H):
            i = g[n, j]
            f = g[n, H + j]
            gg = g[n, 2 * H + j]
            o = g[n, 3 * H + j]
            tc = tanh(c[n, j])
            d = dh[n, j]
            dcn = dc[n, j] + d * o * (one - tc * tc)
            dg[n, j] = dcn * gg * i * (one - i)
            dg[n, H + j] = dcn * c_prev[n, j] * f * (one - f)
            dg[n, 2 * H + j] = dcn * i * (one - gg * gg)
            dg[n, 3 * H + j] = d * tc * o * (one - o)
            dc[n, j] = dcn * f


@njit(**JIT)
def _backward(x, w_x, w_h, gates, hs, cs, dhs, dh, dc, dx, dw_x, dw_h, db, dgates):
    T, N, D = x.shape
    G = gates.shape[2]
    for t in range(T - 1, -1, -1):
        dh += dhs[t]
        _backward_step(gates[t], cs[t], cs[t + 1], dh, dc, dgates[t])
        np.dot(dgates[t], w_h.T, dh)
    dg2 = dgates.reshape(T * N, G)
    dw_h += np.dot(hs[:T].reshape(T * N, w_h.shape[0]).T, dg2)
    dw_x += np.dot(x.reshape(T * N, D).T, dg2)
    db += dg2.sum(axis=0)
    np.dot(dg2, w_x.T, dx.reshape(T * N, D))


def lstm_forward(x, w_x, w_h, b, gates, hs, cs, work):
    """Run the layer over x; hs[0] and cs[0] must hold the initial state.

    Writes gates (T, N, 4H), hs and cs (T + 1, N, H). work: (N, 4H) scratch.
    """
    T, N, D = x.shape
    H = w_h.shape[0]
    check(dict(x=x, w_x=w_x, w_h=w_h, b=b, gates=gates, hs=hs, cs=cs, work=work), x.dtype)
    for name, a, s in (("w_x", w_x, (D, 4 * H)), ("w_h", w_h, (H, 4 * H)), ("b", b, (4 * H,)),
                       ("gates", gates, (T, N, 4 * H)), ("hs", hs, (T + 1, N, H)),
                       ("cs", cs, (T + 1, N, H)), ("work", work, (N, 4 * H))):
        shape(name, a, s)
    _forward(x, w_x, w_h, b, gates, hs, cs, work)


def lstm_backward(x, w_x, w_h, gates, hs, cs, dhs, dh, dc, dx, dw_x, dw_h, db, dgates):
    """BPTT through the layer. Gradients on weights accumulate (+=); dx is overwritten.

    dhs (T, N, H): loss gradient on each output h_t. dh, dc (N, H): gradient on the final state
    in, on the initial state out. dgates (T, N, 4H): scratch.
    """
    T, N, D = x.shape
    H = w_h.shape[0]
    check(dict(x=x, w_x=w_x, w_h=w_h, gates=gates, hs=hs, cs=cs, dhs=dhs, dh=dh, dc=dc, dx=dx,
               dw_x=dw_x, dw_h=dw_h, db=db, dgates=dgates), x.dtype)
    for name, a, s in (("dhs", dhs, (T, N, H)), ("dh", dh, (N, H)), ("dc", dc, (N, H)),
                       ("dx", dx, (T, N, D)), ("dw_x", dw_x, w_x.shape),
                       ("dw_h", dw_h, w_h.shape), ("db", db, (4 * H,)),
                       ("dgates", dgates, gates.shape)):
        shape(name, a, s)
    _backward(x, w_x, w_h, gates, hs, cs, dhs, dh, dc, dx, dw_x, dw_h, db, dgates)
