"""The LSTM's gate math over a run of units and streams, forward and backward (equations in
docs/cells.md): what kernels/cpu/lstm.py runs between a step's products."""
from numba import njit

from rnnkit.kernels.cpu.activations import sigmoid, tanh
from rnnkit.kernels.cpu.compile import JIT


# Short loops over few arrays, each from 0: LLVM vectorises them (one loop over all seven ran
# scalar, and so does an in-place loop from a run-time start).
@njit(**JIT)
def cell_forward(i, f, g, o, c_prev, c, h):
    for n in range(i.size):
        i[n] = sigmoid(i[n])
    for n in range(i.size):
        f[n] = sigmoid(f[n])
    for n in range(i.size):
        g[n] = tanh(g[n])
    for n in range(i.size):
        o[n] = sigmoid(o[n])
    for n in range(i.size):
        c[n] = f[n] * c_prev[n] + i[n] * g[n]
    for n in range(i.size):
        h[n] = o[n] * tanh(c[n])


@njit(**JIT)
def cell_backward(i, f, g, o, c_prev, c, dh, dc, di, df, dg, do):
    """dh: gradient on h_t; dc: on c_t in, on c_{t-1} out."""
    one = c.dtype.type(1.0)
    for n in range(i.size):
        tc = tanh(c[n])
        do[n] = dh[n] * tc * o[n] * (one - o[n])
        dc[n] += dh[n] * o[n] * (one - tc * tc)
    for n in range(i.size):
        di[n] = dc[n] * g[n] * i[n] * (one - i[n])
        dg[n] = dc[n] * i[n] * (one - g[n] * g[n])
    for n in range(i.size):
        df[n] = dc[n] * c_prev[n] * f[n] * (one - f[n])
        dc[n] *= f[n]
