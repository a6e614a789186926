"""kernels/pointwise.py is the one definition of the per-element math: the GPU's kernels and
the CPU's optimizers compile it. The CPU's cell kernels keep their own loops, split so that
LLVM vectorises them; here they must give the same bits as the shared definition compiled
for the CPU, element by element, so the two cannot drift apart.
"""
import numpy as np
import pytest
from numba import njit

from rnnkit.kernels import pointwise
from rnnkit.kernels.cpu import gru, lstm, rnn
from rnnkit.kernels.cpu.activations import tanh
from rnnkit.kernels.cpu.compile import JIT

P = pointwise.build(njit(**dict(JIT, cache=False)), tanh)


@njit(**dict(JIT, cache=False))
def _lstm(i, f, g, o, c_prev, out):
    half = i.dtype.type(0.5)
    for n in range(i.size):
        out[:, n] = P_lstm_cell(i[n], f[n], g[n], o[n], c_prev[n], half)


@njit(**dict(JIT, cache=False))
def _lstm_grad(i, f, g, o, c_prev, c, dh, dc, out):
    one = i.dtype.type(1.0)
    for n in range(i.size):
        out[:, n] = P_lstm_cell_grad(i[n], f[n], g[n], o[n], c_prev[n], c[n], dh[n], dc[n], one)


P_lstm_cell, P_lstm_cell_grad = P.lstm_cell, P.lstm_cell_grad
P_gru_cell, P_gru_cell_grad = P.gru_cell, P.gru_cell_grad
P_rnn_cell, P_rnn_cell_grad = P.rnn_cell, P.rnn_cell_grad


@njit(**dict(JIT, cache=False))
def _rnn(v, h, dh, relu, out, dout):
    for q in range(v.size):
        out.flat[q] = P_rnn_cell(v.flat[q], relu, 0.0)
        dout.flat[q] = P_rnn_cell_grad(h.flat[q], dh.flat[q], relu, 0.0, 1.0)


@njit(**dict(JIT, cache=False))
def _gru(g, hp, b_hn, h_prev, d, out, dout):
    N, H = h_prev.shape
    for n in range(N):
        for j in range(H):
            an = hp[n, 2 * H + j] + b_hn[j]
            r, z, nv, h = P_gru_cell(g[n, j], g[n, H + j], g[n, 2 * H + j], hp[n, j],
                                     hp[n, H + j], an, h_prev[n, j], 0.5, 1.0)
            out[n, j], out[n, H + j], out[n, 2 * H + j], out[n, 3 * H + j] = r, z, nv, h
            dr, dz, dn, dh = P_gru_cell_grad(r, z, nv, an, h_prev[n, j], d[n, j], 1.0)
            dout[n, j], dout[n, H + j], dout[n, 2 * H + j], dout[n, 3 * H + j] = dr, dz, dn, dh


def test_the_cpu_gru_loops_compute_the_shared_definition():
    rng = np.random.default_rng(2)
    N, H = 3, 5
    g, hp = rng.normal(size=(N, 3 * H)), rng.normal(size=(N, 3 * H))
    b_hn, h_prev, d = rng.normal(size=H), rng.normal(size=(N, H)), rng.normal(size=(N, H))
    want, dwant = np.empty((N, 4 * H)), np.empty((N, 4 * H))
    _gru(g, hp, b_hn, h_prev, d, want, dwant)
    # what the step's products leave: hp added into the r and z pre-activations, a = the n
    # block's hp plus b_hn (kernels/cpu/gru.py)
    gates, a, h = g.copy(), hp[:, 2 * H:] + b_hn, np.empty((N, H))
    gates[:, :2 * H] += hp[:, :2 * H]
    for n in range(N):
        gru.cell_forward(gates[n, :H], gates[n, H:2 * H], gates[n, 2 * H:], a[n], h_prev[n],
                         h[n])
    np.testing.assert_array_equal(np.hstack([gates, h]), want)
    dgx, dgh, dh = np.empty((N, 3 * H)), np.empty((N, 3 * H)), d.copy()
    for n in range(N):
        gru.cell_backward(gates[n, :H], gates[n, H:2 * H], gates[n, 2 * H:], a[n], h_prev[n],
                          dh[n], dgx[n, :H], dgx[n, H:2 * H], dgx[n, 2 * H:], dgh[n, :H],
                          dgh[n, H:2 * H], dgh[n, 2 * H:])
    np.testing.assert_array_equal(np.hstack([dgx, dh]), dwant)
    np.testing.assert_array_equal(dgh[:, :2 * H], dgx[:, :2 * H])
    np.testing.assert_array_equal(dgh[:, 2 * H:], dgx[:, 2 * H:] * gates[:, :H])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_cpu_lstm_loops_compute_the_shared_definition(dtype):
    rng = np.random.default_rng(0)
    n = 37
    pre = [rng.normal(scale=3, size=n).astype(dtype) for _ in range(4)]
    c_prev = rng.normal(size=n).astype(dtype)
    want = np.empty((6, n), dtype)
    _lstm(*pre, c_prev, want)
    got = [p.copy() for p in pre] + [np.empty(n, dtype), np.empty(n, dtype)]
    lstm.cell_forward(got[0], got[1], got[2], got[3], c_prev, got[4], got[5])
    np.testing.assert_array_equal(np.array(got), want)

    i, f, g, o, c, _ = want
    dh, dc = rng.normal(size=n).astype(dtype), rng.normal(size=n).astype(dtype)
    want_grad = np.empty((5, n), dtype)
    _lstm_grad(i, f, g, o, c_prev, c, dh, dc, want_grad)
    grads = [np.empty(n, dtype) for _ in range(4)]
    dc_io = dc.copy()
    lstm.cell_backward(i, f, g, o, c_prev, c, dh, dc_io, *grads)
    np.testing.assert_array_equal(np.array(grads + [dc_io]), want_grad)


@pytest.mark.parametrize("relu", [False, True])
def test_the_cpu_rnn_loops_compute_the_shared_definition(relu):
    rng = np.random.default_rng(1)
    pre, hp, dh = rng.normal(size=(3, 5)), rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    h, dg = np.empty((3, 5)), np.empty((3, 5))
    summed = pre + hp           # the step's product added into the pre-activations
    for n in range(3):
        rnn._activate(summed[n], h[n], relu)
        rnn._derivative(dh[n], h[n], dg[n], relu)
    want, dwant = np.empty((3, 5)), np.empty((3, 5))
    _rnn(pre + hp, h, dh, relu, want, dwant)
    np.testing.assert_array_equal(h, want)
    np.testing.assert_array_equal(dg, dwant)
