"""LSTM layer: forward and BPTT. Gate order (i, f, g, o), PyTorch's; equations in docs/cells.md.

Shapes: x (T, N, D), w_x (D, 4H), w_h (H, 4H), b (4H,). Time-major so each step's slice is
one contiguous (N, .) block. hs and cs are (T + 1, N, H) with the initial state at index 0, so
hs[:T] is every step's previous state and hs[1:] every step's output, both without copies.
gates (T, N, 4H) holds the input projection, then the activations, which BPTT reads back.
Memory kept for backward: T*N*(4H + 2H) floats.
"""
from numba import njit, prange
import numpy as np

from rnnkit.config import JIT, serial_and_parallel
from rnnkit.kernels import lstm_units
from rnnkit.kernels.blocks import plan, project, span, unit_parts, weight_grads
from rnnkit.kernels.lstm_units import backward_step, forward_step
from rnnkit.kernels.checks import check, shape


@njit(**JIT)
def _forward_rows(gates, hs, cs, w_h, hp, lo, hi):
    """The recurrence for streams lo:hi, which no other stream touches."""
    for t in range(gates.shape[0]):
        forward_step(gates[t][lo:hi], hs[t][lo:hi], w_h, hp[lo:hi], cs[t][lo:hi],
                     cs[t + 1][lo:hi], hs[t + 1][lo:hi], 0, w_h.shape[0])


def _forward(gates, hs, cs, w_h, hp, streams):
    N = hs.shape[1]
    for i in prange(streams):
        lo, hi = span(N, streams, i)
        if hi > lo:
            _forward_rows(gates, hs, cs, w_h, hp, lo, hi)


_forward_serial, _forward_parallel = serial_and_parallel(_forward)


@njit(**JIT)
def _backward_rows(w_h, gates, cs, dhs, dh, dc, dgates, lo, hi):
    for t in range(gates.shape[0] - 1, -1, -1):
        d = dh[lo:hi]
        backward_step(gates[t][lo:hi], cs[t][lo:hi], cs[t + 1][lo:hi], d, dhs[t][lo:hi],
                      dc[lo:hi], dgates[t][lo:hi], 0, w_h.shape[0])
        np.dot(dgates[t][lo:hi], w_h.T, d)


def _backward(w_h, gates, cs, dhs, dh, dc, dgates, streams):
    N = cs.shape[1]
    for i in prange(streams):
        lo, hi = span(N, streams, i)
        if hi > lo:
            _backward_rows(w_h, gates, cs, dhs, dh, dc, dgates, lo, hi)


_backward_serial, _backward_parallel = serial_and_parallel(_backward)


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
    rows, streams = plan(T, N)
    project(x, w_x, b, gates, rows)
    units = unit_parts(H)
    if units > 1:
        lstm_units.forward(gates, hs, cs, lstm_units.pack(w_h, units),
                           np.empty((units, N, 4 * (-(-H // units))), x.dtype))
        return
    (_forward_parallel if streams > 1 else _forward_serial)(gates, hs, cs, w_h, work, streams)


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
    rows, streams = plan(T, N)
    units = unit_parts(H)
    if units > 1:
        buf = np.empty((units, N * (-(-H // units))), x.dtype)
        lstm_units.backward(w_h, gates, cs, dhs, dh, dc, dgates, buf)
    else:
        run = _backward_parallel if streams > 1 else _backward_serial
        run(w_h, gates, cs, dhs, dh, dc, dgates, streams)
    weight_grads(x, hs[:T], dgates, dgates, w_x, dx, dw_x, dw_h, db, rows)
