"""The CPU backend's own choices: every layout its kernels pick by size, threads, tiles,
aligned buffers, the float32 activations and the step kernels (tests/test_backend.py covers
what every backend shares)."""
import numba
import numpy as np
import pytest
from numba import njit

from rnnkit.backends import get_backend
from rnnkit.kernels.cpu.activations import exp, sigmoid, tanh
from rnnkit.model.network import Model, ModelConfig
from rnnkit.backends.threads import set_threads
from tests import naive
from tests.test_backend import CELLS, E, H, N, T, V, fd_errors, make, numeric_grad, rel_error

CPU = get_backend("cpu")


@pytest.fixture(params=["default", "other"], ids=["layouts-default", "layouts-other"])
def layouts(request, monkeypatch):
    """Each kernel picks some layouts by size, and the test sizes are small: "other" flips
    every such choice (LSTM products in kernels/cpu/tiles.py, the forward's h and BPTT's
    dgates packed for them, dW.T in blocks of two steps; the recurrences split by units wherever there are threads to
    split them), so both sides of each threshold are tested."""
    from rnnkit.kernels.cpu import blocks, lstm

    if request.param == "other":
        monkeypatch.setattr(lstm, "TILE_FROM", 0)
        monkeypatch.setattr(lstm, "DW_ROWS", 2 * N)  # two steps a block
        monkeypatch.setattr(lstm, "PACK_GATES_FROM", 0)
        monkeypatch.setattr(lstm, "PACK_STATES_FROM", 0)
        monkeypatch.setattr(lstm, "PACK_INPUTS_FROM", 0)
        monkeypatch.setattr(blocks, "MIN_GATE_ROWS", 1)
    return request.param


@pytest.fixture
def two_threads():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two threads")
    set_threads(2, adaptive=False)
    yield
    set_threads(1, adaptive=False)


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_gradients_in_the_other_layouts(cell, layers, layouts):
    model, x, y, state = make(CPU, cell, layers)
    errors = fd_errors(model, x, y, state)
    assert max(errors.values()) < 1e-6, errors


def test_lstm_tiles_match_naive(layouts):
    """H = 2 * MR + 3: the products run whole panels of MR rows and single rows, and N = 3
    streams fill only part of a vector, so every kind of tile runs (kernels/cpu/tiles.py)."""
    from rnnkit.kernels.cpu import tiles

    hidden = 2 * tiles.MR + 3
    cfg = ModelConfig(cell="lstm", vocab_size=V, embed=E, hidden=hidden, layers=2)
    model = Model(cfg, dtype=np.float64, seed=3)
    rng = np.random.default_rng(4)
    model.params[:] = rng.uniform(-0.3, 0.3, model.params.size)
    x, y = rng.integers(0, V, (3, T)), rng.integers(0, V, (3, T))
    state = model.state_from_host({k: rng.uniform(-0.5, 0.5, (2, 3, hidden)) for k in "hc"})
    loss, new = model.forward_backward(x, y, state.copy())
    ref_loss, ref_h, ref_c = naive.model_loss(cfg, model.p, x, y, state.h, state.c)
    assert abs(loss - ref_loss) < 1e-12
    np.testing.assert_allclose(new.h, ref_h, rtol=0, atol=1e-12)
    np.testing.assert_allclose(new.c, ref_c, rtol=0, atol=1e-12)
    analytic, dh0 = model.g["l1.w_h"].copy(), model.dstate.h.copy()

    def f():
        return model.forward_backward(x, y, state.copy())[0]

    w = model.p["l1.w_h"]
    assert rel_error(analytic, numeric_grad(f, lambda: w, lambda a: w.__setitem__(..., a))) < 1e-6
    h = state.h
    assert rel_error(dh0, numeric_grad(f, lambda: h, lambda a: h.__setitem__(..., a))) < 1e-6


def test_lstm_dw_blocks_follow_the_setting_at_each_call(monkeypatch):
    """DW_ROWS (the weight gradients' blocks of steps) is read at each call: Numba freezes a
    module constant into the code it compiles, and its disk cache would hand a test's value to
    every later process (a test's two-step blocks once did, changing later runs' last bits).
    Blocks of one step and of all steps sum in other orders: other bits, both exact."""
    from rnnkit.kernels.cpu import lstm

    monkeypatch.setattr(lstm, "TILE_FROM", 0)
    cfg = ModelConfig(cell="lstm", vocab_size=V, embed=E, hidden=H, layers=1)
    model = Model(cfg, dtype=np.float64, seed=3)
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, V, (8, 16)), rng.integers(0, V, (8, 16))
    grads = []
    for rows in (8, 10 ** 6):
        monkeypatch.setattr(lstm, "DW_ROWS", rows)
        model.forward_backward(x, y, model.init_state(8))
        grads.append(model.g["l0.w_h"].copy())
    assert not np.array_equal(grads[0], grads[1])
    np.testing.assert_allclose(grads[0], grads[1], rtol=0, atol=1e-13)


@pytest.mark.parametrize("tables", [False, True])
@pytest.mark.parametrize("threads", [1, 2])
def test_lstm_packed_operands_give_the_same_bits(monkeypatch, threads, tables):
    """With the tiles' operands packed (x_t, h_{t-1} and dgates_t, at a batch of whole blocks
    of their columns, 32 streams) and in place: the same sums in the same order, so the same
    bits, and the reference's loss and state; with the first layer's inputs embedded (dx
    too) or read from a table (rnnkit/model/tables.py)."""
    from rnnkit.kernels.cpu import lstm

    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("needs two threads")
    set_threads(threads, adaptive=False)
    monkeypatch.setattr(lstm, "TILE_FROM", 0)
    cfg = ModelConfig(cell="lstm", vocab_size=V, embed=E, hidden=H, layers=2)
    model = Model(cfg, dtype=np.float64, seed=5)
    model.input_tables = tables
    rng = np.random.default_rng(6)
    x, y = rng.integers(0, V, (32, 5)), rng.integers(0, V, (32, 5))
    state = model.state_from_host({k: rng.normal(scale=0.3, size=(2, 32, H)) for k in "hc"})
    runs = []
    try:
        for pack_from in (0, 1 << 62):
            for name in ("PACK_GATES_FROM", "PACK_STATES_FROM", "PACK_INPUTS_FROM"):
                monkeypatch.setattr(lstm, name, pack_from)
            loss, new = model.forward_backward(x, y, state.copy())
            runs.append((loss, model.grads.copy(), new.h, new.c,
                         None if tables else model.dinputs.copy()))
    finally:
        set_threads(1, adaptive=False)
    assert (model.workspace(32, 5)["tt"] is not None) == tables
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1:], runs[1][1:]):
        assert np.array_equal(a, b)
    ref_loss, ref_h, ref_c = naive.model_loss(cfg, model.p, x, y, state.h, state.c)
    assert abs(runs[0][0] - ref_loss) < 1e-12
    np.testing.assert_allclose(runs[0][2], ref_h, rtol=0, atol=1e-12)
    np.testing.assert_allclose(runs[0][3], ref_c, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_threaded_blocks_match_one_thread_and_naive(cell, layouts, two_threads):
    """A batch big enough for the threaded drivers (blocks of streams and of rows)."""
    cfg = ModelConfig(cell=cell, vocab_size=V, embed=E, hidden=H, layers=2)
    model = Model(cfg, dtype=np.float64, seed=3)
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, V, (24, 24)), rng.integers(0, V, (24, 24))
    state = model.init_state(24)
    results = []
    for threads in (1, 2):
        set_threads(threads, adaptive=False)
        loss, new = model.forward_backward(x, y, state.copy())
        results.append((loss, model.grads.copy(), new.h))
    ref_loss, ref_h, _ = naive.model_loss(cfg, model.p, x, y, state.h, state.c)
    assert abs(results[1][0] - ref_loss) < 1e-12
    np.testing.assert_allclose(results[1][2], ref_h, rtol=0, atol=1e-12)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=0, atol=1e-12)


def test_lstm_blocks_match_one_block_and_naive(monkeypatch, two_threads):
    """The LSTM recurrence split by hidden units (uneven blocks here), and by streams, against
    one block and the reference; each with its products in kernels/cpu/tiles.py (the
    forward's h and BPTT's dgates packed for them, or not) and through BLAS."""
    from rnnkit.kernels.cpu import blocks, lstm

    cfg = ModelConfig(cell="lstm", vocab_size=V, embed=E, hidden=131, layers=2)
    model = Model(cfg, dtype=np.float64, seed=1)
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, V, (N, T)), rng.integers(0, V, (N, T))
    state = model.state_from_host({k: rng.normal(scale=0.3, size=(2, N, 131)) for k in "hc"})
    runs = []
    for min_rows, min_streams, expect in ((256, 1, (2, 1)), (10 ** 9, 1, (1, 2)),
                                          (10 ** 9, 10 ** 9, (1, 1))):
        # (blocks of streams pack nothing)
        for tile_from, pack_from in ((0, 0), (0, 10 ** 9), (10 ** 9, 10 ** 9))[
                expect == (1, 2):]:
            monkeypatch.setattr(blocks, "MIN_GATE_ROWS", min_rows)
            monkeypatch.setattr(blocks, "MIN_STREAMS", min_streams)
            monkeypatch.setattr(lstm, "TILE_FROM", tile_from)
            monkeypatch.setattr(lstm, "PACK_GATES_FROM", pack_from)
            monkeypatch.setattr(lstm, "PACK_STATES_FROM", pack_from)
            monkeypatch.setattr(lstm, "PACK_INPUTS_FROM", pack_from)
            assert blocks.split(cfg.hidden, N, 4) == expect
            loss, new = model.forward_backward(x, y, state.copy())
            runs.append((loss, model.grads.copy(), new, model.dstate.copy()))
    ref_loss = naive.model_loss(cfg, model.p, x, y, state.h, state.c)[0]
    for run in runs:
        assert abs(run[0] - ref_loss) < 1e-12
        np.testing.assert_allclose(run[1], runs[-1][1], rtol=0, atol=1e-12)
        np.testing.assert_allclose(run[2].c, runs[-1][2].c, rtol=0, atol=1e-12)
        np.testing.assert_allclose(run[3].h, runs[-1][3].h, rtol=0, atol=1e-12)
        np.testing.assert_allclose(run[3].c, runs[-1][3].c, rtol=0, atol=1e-12)


SPLITS = {"units": (1, 1, (2, 1)), "streams": (10 ** 9, 1, (1, 2)),
          "one block": (10 ** 9, 10 ** 9, (1, 1))}


@pytest.mark.parametrize("streams", [7, 80])
@pytest.mark.parametrize("cell", ["gru", "rnn-tanh", "rnn-relu"])
def test_gru_rnn_blocks_match_naive_and_fd(cell, streams, monkeypatch, two_threads):
    """The GRU's and Elman cells' recurrence split by hidden units (H = 131: uneven blocks cut
    at 64, panels of fewer rows), by streams, and in one block: the loss against the
    reference, and the gradients on W_h (entries of every gate block on both sides of the cut)
    and on the initial state against finite differences, each split; 7 streams run the tiles
    with blocks of columns outside, 80 with panels of rows outside (kernels/cpu/tiles.py)."""
    from rnnkit.kernels.cpu import blocks

    hidden, steps = 131, 3
    cfg = ModelConfig(cell=cell, vocab_size=V, embed=E, hidden=hidden, layers=2)
    model = Model(cfg, dtype=np.float64, seed=1)
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, V, (streams, steps)), rng.integers(0, V, (streams, steps))
    state = model.state_from_host({"h": rng.normal(scale=0.3, size=(2, streams, hidden))})
    ref_loss = naive.model_loss(cfg, model.p, x, y, state.h, state.c)[0]
    G = model.cell.gates
    only_w = sorted({r * G * hidden + k * hidden + j for r in (0, 70, 130)
                     for k in range(G) for j in (3, 63, 64, 130)})
    only_h = [0, 63, 64, streams * hidden - 1, 2 * streams * hidden - 70]

    def loss():
        total, count, _ = model.evaluate(x, y, state)
        return total / count

    grads = []
    for name, (min_rows, min_streams, expect) in SPLITS.items():
        monkeypatch.setattr(blocks, "MIN_GATE_ROWS", min_rows)
        monkeypatch.setattr(blocks, "MIN_STREAMS", min_streams)
        assert blocks.split(hidden, streams, G) == expect
        value, _ = model.forward_backward(x, y, state.copy())
        assert abs(value - ref_loss) < 1e-12, name
        grads.append((model.grads.copy(), model.dstate.h.copy()))
        np.testing.assert_allclose(grads[-1][0], grads[0][0], rtol=0, atol=1e-12)
        np.testing.assert_allclose(grads[-1][1], grads[0][1], rtol=0, atol=1e-12)
        if cell == "rnn-relu" and streams > 7:
            continue    # 2,000 pre-activations a layer: some lie within eps of relu's kink
        for key in ("l0.w_h", "l1.w_h"):
            w = model.p[key]
            numeric = numeric_grad(loss, lambda: w, lambda a: w.__setitem__(..., a),
                                   only=only_w)
            assert rel_error(model.g[key], numeric, only_w) < 1e-6, (name, key)
        h = state.h
        numeric = numeric_grad(loss, lambda: h, lambda a: h.__setitem__(..., a), only=only_h)
        assert rel_error(grads[-1][1], numeric, only_h) < 1e-6, name


@pytest.mark.parametrize("split", list(SPLITS))
@pytest.mark.parametrize("cell", CELLS)
def test_serial_and_parallel_builds_give_the_same_bits(cell, split, monkeypatch, two_threads):
    """Two blocks run by the threaded builds, and by the serial builds (one running thread,
    the same partition): the same numbers to the bit, forward and backward."""
    from rnnkit.kernels.cpu import blocks

    min_rows, min_streams, _ = SPLITS[split]
    monkeypatch.setattr(blocks, "MIN_GATE_ROWS", min_rows)
    monkeypatch.setattr(blocks, "MIN_STREAMS", min_streams)
    cfg = ModelConfig(cell=cell, vocab_size=V, embed=E, hidden=40, layers=2)
    model = Model(cfg, dtype=np.float64, seed=5)
    rng = np.random.default_rng(6)
    x, y = rng.integers(0, V, (20, 4)), rng.integers(0, V, (20, 4))
    state = model.state_from_host({k: rng.normal(scale=0.3, size=(2, 20, 40))
                                   for k in model.cell.state})
    runs = []
    for running in (2, 1):
        numba.set_num_threads(running)
        loss, new = model.forward_backward(x, y, state.copy())
        runs.append((loss, model.grads.copy(), new.h.copy(), model.dstate.h.copy()))
    assert runs[0][0] == runs[1][0]
    for a, b in zip(runs[0][1:], runs[1][1:]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cell", CELLS)
def test_step_kernels_match_the_batched_kernels(cell, monkeypatch):
    """Sampling's per-unit step kernels (forward with T = 1, few streams) against the batched
    kernels with T = 1."""
    from rnnkit.backends import cpu

    model, x, _, state = make(CPU, cell, 2)
    runs = []
    for max_n in (cpu.STEP_MAX_N, 0):
        monkeypatch.setattr(cpu, "STEP_MAX_N", max_n)
        s = state.copy()
        logits = [model.step(x[:, t], s).copy() for t in range(T)]
        runs.append((np.stack(logits), s))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(runs[0][1].h, runs[1][1].h, rtol=0, atol=1e-12)


@pytest.mark.parametrize("Hh", [7, 520])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("cell", ["rnn-tanh", "rnn-relu", "lstm", "gru"])
def test_step_kernel_against_the_reference(cell, threads, Hh, monkeypatch):
    """layer_step against tests/naive.py's layer at T = 1, float64, three streams and nine
    inputs (rows in runs of four and a tail, split between two threads), seven units or 520
    (columns in blocks of 512 and a tail)."""
    from rnnkit.kernels.cpu import sampling_step

    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("needs two threads")
    monkeypatch.setattr(sampling_step, "STEP_WEIGHTS", 1)   # every layer on every thread
    G = {"lstm": 4, "gru": 3}.get(cell, 1)
    Nn, D = 3, 9
    r = np.random.default_rng(9)
    x, h, c = r.normal(size=(Nn, D)), r.normal(size=(Nn, Hh)), r.normal(size=(Nn, Hh))
    w_x, w_h = r.normal(size=(D, G * Hh)), r.normal(size=(Hh, G * Hh))
    b, b_hn = r.normal(size=G * Hh), r.normal(size=Hh)
    if cell == "lstm":
        _, want, want_c = naive.lstm_layer(x[None], w_x, w_h, b, h, c)
    elif cell == "gru":
        _, want = naive.gru_layer(x[None], w_x, w_h, b, b_hn, h)
    else:
        _, want = naive.rnn_layer(x[None], w_x, w_h, b, h, relu=cell == "rnn-relu")
    set_threads(threads, adaptive=False)
    try:
        h_out, c_out = np.empty_like(h), c.copy()
        acc = sampling_step.step_scratch(Nn, Hh, G, np.float64)
        assert acc.shape[0] == threads
        sampling_step.layer_step(cell, x, w_x, w_h, b, b_hn, h, c_out, h_out, c_out, acc)
    finally:
        set_threads(1, adaptive=False)
    np.testing.assert_allclose(h_out, want, rtol=1e-10, atol=1e-12)
    if cell == "lstm":
        np.testing.assert_allclose(c_out, want_c, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("threads", [1, 2])
def test_logits_step_against_numpy(threads, bias):
    """Sampling's logits kernel, rows of w outer and streams inner, for up to STEP_MAX_N
    streams: float64 against numpy's product, the same bits on one thread and two."""
    from rnnkit.backends import cpu
    from rnnkit.kernels.cpu import sampling_step

    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("needs two threads")
    r = np.random.default_rng(4)
    Vv, Hh = 1400, 97           # two blocks of rows on two threads (2 x 65,536 weights)
    w, b = r.normal(size=(Vv, Hh)), r.normal(size=Vv) if bias else np.zeros(0)
    hs = [r.normal(size=(n, Hh)) for n in (1, 3, cpu.STEP_MAX_N)]
    outs = {}
    try:
        for k in (1, threads):
            set_threads(k, adaptive=False)
            for i, h in enumerate(hs):
                outs[k, i] = np.full((h.shape[0], Vv), np.nan)
                sampling_step.logits_step(h, w, b, outs[k, i])
    finally:
        set_threads(1, adaptive=False)
    for i, h in enumerate(hs):
        want = h @ w.T + (b if bias else 0.0)
        np.testing.assert_allclose(outs[threads, i], want, rtol=1e-12, atol=1e-12)
        assert np.array_equal(outs[1, i], outs[threads, i])


@pytest.mark.parametrize("cell", CELLS)
def test_workspace_buffers_start_cache_lines(cell):
    model = make(CPU, cell, 2)[0]
    ws = model.workspace(N, T)
    arrays = [ws["emb"], *ws["dtop"], ws["demb"], ws["dh"], ws["dc"],
              *ws["scratch"].values(), *(a for layer in ws["layers"] for a in layer.values())]
    assert all(a.ctypes.data % 64 == 0 for a in arrays)
    assert all(not a.any() for a in arrays)


def test_config_checks():
    with pytest.raises(ValueError, match="cell"):
        ModelConfig(cell="transformer", vocab_size=5)
    with pytest.raises(ValueError, match="tie_weights"):
        ModelConfig(vocab_size=5, embed=3, hidden=4, tie_weights=True)
    with pytest.raises(ValueError, match="dropout"):
        ModelConfig(vocab_size=5, dropout=1.0)


@njit
def _apply(x, out, which):
    for i in range(x.size):
        if which == 0:
            out[i] = tanh(x[i])
        elif which == 1:
            out[i] = sigmoid(x[i])
        else:
            out[i] = exp(x[i])


def test_float32_activations_are_float32_accurate():
    x = np.linspace(-40, 40, 200_001).astype(np.float32)
    x64 = x.astype(np.float64)
    out = np.empty_like(x)
    _apply(x, out, 0)
    assert np.abs(out - np.tanh(x64)).max() < 4e-7  # a few float32 ulps at 1
    _apply(x, out, 1)
    assert np.abs(out - naive.sigmoid(x64)).max() < 4e-7
    _apply(x, out, 2)
    ref = np.exp(x64)
    assert (np.abs(out - ref) / ref).max() < 2e-7


def test_lanes_reductions_in_a_fixed_order():
    from rnnkit.kernels.cpu.lanes import vdot, vmax, vsum, vsumsq

    @njit
    def f(x, y, lo, hi):
        return vsum(x, lo, hi), vmax(x, lo, hi), vsumsq(x, lo, hi), vdot(x, y, lo, hi)

    r = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        for n in (1, 3, 17, 64, 65, 1000):
            x, y = r.standard_normal(n).astype(dtype), r.standard_normal(n).astype(dtype)
            for lo, hi in ((0, n), (min(1, n - 1), n)):
                s, m, q, d = f(x, y, lo, hi)
                xs, ys = x[lo:hi].astype(np.float64), y[lo:hi].astype(np.float64)
                tol = 1e-4 if dtype == np.float32 else 1e-12
                assert abs(s - xs.sum()) <= tol * (1 + np.abs(xs).sum())
                assert m == x[lo:hi].max()
                assert abs(q - (xs ** 2).sum()) <= 1e-6 * (xs ** 2).sum() + 1e-12
                assert abs(d - xs @ ys) <= tol * (1 + np.abs(xs * ys).sum())
                assert f(x, y, lo, hi) == (s, m, q, d)
