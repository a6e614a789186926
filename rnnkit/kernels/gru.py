"""GRU layer, PyTorch's formulation, gate order (r, z, n); equations in docs/cells.md.

    r = sigmoid(x W_xr + h W_hr + b_r)      z = sigmoid(x W_xz + h W_hz + b_z)
    a = h W_hn + b_hn                       n = tanh(x W_xn + b_n + r * a)
    h' = (1 - z) * n + z * h

Shapes: x (T, N, D), w_x (D, 3H), w_h (H, 3H), b (3H,) (input and hidden biases of r and z
summed; b_n is the input one), b_hn (H,). hs (T + 1, N, H) with the initial state at index 0.
gates (T, N, 3H) keeps r, z, n and a (T, N, H) keeps h W_hn + b_hn for backward.
The reset gate makes the two products' gradients differ in the n block, so BPTT keeps one
gradient for the input side (dgx) and one for the hidden side (dgh).
Memory kept for backward: T*N*(3H + 2H) floats.
"""
from numba import njit
import numpy as np

from rnnkit.config import JIT
from rnnkit.kernels.activations import sigmoid, tanh
from rnnkit.kernels.checks import check, shape


@njit(**JIT)
def _forward_step(g, hp, b_hn, h_prev, a, h):
    N, H = h.shape
    one = h.dtype.type(1.0)
    for n in range(N):
        for j in range(H):
            r = sigmoid(g[n, j] + hp[n, j])
            z = sigmoid(g[n, H + j] + hp[n, H + j])
            an = hp[n, 2 * H + j] + b_hn[j]
            nn = tanh(g[n, 2 * H + j] + r * an)
            h[n, j] = (one - z) * nn + z * h_prev[n, j]
            a[n, j] = an
            g[n, j] = r
            g[n, H + j] = z
            g[n, 2 * H + j] = nn


@njit(**JIT)
def _forward(x, w_x, w_h, b, b_hn, gates, a, hs, hp):
    T, N, D = x.shape
    np.dot(x.reshape(T * N, D), w_x, gates.reshape(T * N, gates.shape[2]))
    gates += b
    for t in range(T):
        np.dot(hs[t], w_h, hp)
        _forward_step(gates[t], hp, b_hn, hs[t], a[t], hs[t + 1])


@njit(**JIT)
def _backward_step(g, a, h_prev, dh, dgx, dgh):
    """dh: (N, H) total gradient on h_t in; on return, its direct part z * dh for h_{t-1}."""
    N, H = dh.shape
    one = dh.dtype.type(1.0)
    for n in range(N):
        for j in range(H):
            r = g[n, j]
            z = g[n, H + j]
            nn = g[n, 2 * H + j]
            d = dh[n, j]
            dn = d * (one - z) * (one - nn * nn)
            dr = dn * a[n, j] * r * (one - r)
            dz = d * (h_prev[n, j] - nn) * z * (one - z)
            dgx[n, j] = dr
            dgx[n, H + j] = dz
            dgx[n, 2 * H + j] = dn
            dgh[n, j] = dr
            dgh[n, H + j] = dz
            dgh[n, 2 * H + j] = dn * r
            dh[n, j] = d * z


@njit(**JIT)
def _backward(x, w_x, w_h, gates, a, hs, dhs, dh, dx, dw_x, dw_h, db, db_hn, dgx, dgh, work):
    T, N, D = x.shape
    H = w_h.shape[0]
    for t in range(T - 1, -1, -1):
        dh += dhs[t]
        _backward_step(gates[t], a[t], hs[t], dh, dgx[t], dgh[t])
        np.dot(dgh[t], w_h.T, work)
        dh += work
    dgx2 = dgx.reshape(T * N, 3 * H)
    dgh2 = dgh.reshape(T * N, 3 * H)
    dw_h += np.dot(hs[:T].reshape(T * N, H).T, dgh2)
    dw_x += np.dot(x.reshape(T * N, D).T, dgx2)
    db += dgx2.sum(axis=0)
    db_hn += dgh2[:, 2 * H:].sum(axis=0)
    np.dot(dgx2, w_x.T, dx.reshape(T * N, D))


def gru_forward(x, w_x, w_h, b, b_hn, gates, a, hs, work):
    """Run the layer over x; hs[0] must hold the initial state.

    Writes gates (T, N, 3H), a (T, N, H), hs (T + 1, N, H). work: (N, 3H) scratch.
    """
    T, N, D = x.shape
    H = w_h.shape[0]
    check(dict(x=x, w_x=w_x, w_h=w_h, b=b, b_hn=b_hn, gates=gates, a=a, hs=hs, work=work),
          x.dtype)
    for name, arr, s in (("w_x", w_x, (D, 3 * H)), ("w_h", w_h, (H, 3 * H)), ("b", b, (3 * H,)),
                         ("b_hn", b_hn, (H,)), ("gates", gates, (T, N, 3 * H)),
                         ("a", a, (T, N, H)), ("hs", hs, (T + 1, N, H)),
                         ("work", work, (N, 3 * H))):
        shape(name, arr, s)
    _forward(x, w_x, w_h, b, b_hn, gates, a, hs, work)


def gru_backward(x, w_x, w_h, gates, a, hs, dhs, dh, dx, dw_x, dw_h, db, db_hn, dgx, dgh, work):
    """BPTT through the layer. Weight gradients accumulate (+=); dx is overwritten.

    dhs (T, N, H): loss gradient on each output. dh (N, H): gradient on the final state in,
    on the initial state out. dgx, dgh (T, N, 3H) and work (N, H): scratch.
    """
    T, N, D = x.shape
    H = w_h.shape[0]
    check(dict(x=x, w_x=w_x, w_h=w_h, gates=gates, a=a, hs=hs, dhs=dhs, dh=dh, dx=dx, dw_x=dw_x,
               dw_h=dw_h, db=db, db_hn=db_hn, dgx=dgx, dgh=dgh, work=work), x.dtype)
    for name, arr, s in (("dhs", dhs, (T, N, H)), ("dh", dh, (N, H)), ("dx", dx, (T, N, D)),
                         ("dw_x", dw_x, w_x.shape), ("dw_h", dw_h, w_h.shape),
                         ("db", db, (3 * H,)), ("db_hn", db_hn, (H,)),
                         ("dgx", dgx, gates.shape), ("dgh", dgh, gates.shape),
                         ("work", work, (N, H))):
        shape(name, arr, s)
    _backward(x, w_x, w_h, gates, a, hs, dhs, dh, dx, dw_x, dw_h, db, db_hn, dgx, dgh, work)
