"""The model's kernels against tests/naive.py, and its gradients against finite differences."""
import numpy as np
import pytest

from rnnkit.model import Model, ModelConfig, State
from rnnkit.threads import set_threads
from tests import naive

CELLS = ["rnn-tanh", "rnn-relu", "lstm", "gru"]
N, T, V, E, H = 2, 3, 7, 4, 5   # torch-rnn's test sizes


def make(cell, layers=1, dtype=np.float64, seed=0, **kw):
    cfg = ModelConfig(cell=cell, vocab_size=V, embed=kw.pop("embed", E), hidden=H,
                      layers=layers, **kw)
    model = Model(cfg, dtype=dtype, seed=seed)
    rng = np.random.default_rng(seed + 1)
    model.params[:] = rng.uniform(-0.5, 0.5, model.params.size)  # larger than init: real gates
    x = rng.integers(0, V, (N, T))
    y = rng.integers(0, V, (N, T))
    state = model.init_state(N)
    state.h[...] = rng.uniform(-0.5, 0.5, state.h.shape)
    if state.c is not None:
        state.c[...] = rng.uniform(-0.5, 0.5, state.c.shape)
    return model, x, y, state


@pytest.fixture(params=["default", "other"], ids=["layouts-default", "layouts-other"])
def layouts(request, monkeypatch):
    """Each kernel picks some layouts by size, and the test sizes are small: "other" flips
    every such choice (GRU/RNN per-step products in blas.py's fast layout, LSTM products in
    kernels/tiles.py), so both sides of each threshold are tested."""
    from rnnkit.kernels import gru, lstm, rnn

    if request.param == "other":
        for mod in (gru, rnn):
            monkeypatch.setattr(mod, "FAST_FROM", 0)
        monkeypatch.setattr(gru, "FAST_BACKWARD_FROM", 0)
        monkeypatch.setattr(lstm, "TILE_FROM", 0)
        monkeypatch.setattr(lstm, "DW_ROWS", 2 * N)  # two steps a block
    return request.param


def rel_error(a, b):
    """torch-rnn's elementwise relative error, max over entries. Entries that are zero in
    both (unused embedding rows) meet the floor: there the bound is 1e-12 absolute."""
    return float(np.max(np.abs(a - b) / np.maximum(1e-6, np.abs(a) + np.abs(b))))


def numeric_grad(f, arr, eps=1e-3):
    """Five-point central differences: truncation error O(eps^4) and rounding
    error ~1e-16 / eps, both ~1e-13 here."""
    grad = np.zeros_like(arr)
    flat, gflat = arr.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        values = []
        for step in (2, 1, -1, -2):
            flat[i] = old + step * eps
            values.append(f())
        flat[i] = old
        gflat[i] = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * eps)
    return grad


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_forward_matches_naive(cell, layers):
    model, x, y, state = make(cell, layers)
    loss, new = model.forward_backward(x, y, state)
    ref_loss, ref_h, ref_c = naive.model_loss(model.cfg, model.p, x, y, state.h, state.c)
    assert abs(loss - ref_loss) < 1e-12
    np.testing.assert_allclose(new.h, ref_h, rtol=0, atol=1e-12)
    if cell == "lstm":
        np.testing.assert_allclose(new.c, ref_c, rtol=0, atol=1e-12)
    total, count, _ = model.evaluate(x, y, state)
    assert count == N * T and abs(total / count - ref_loss) < 1e-12


def model_fd_errors(model, x, y, state, rng_seed=None):
    """Relative errors of every analytic gradient against central differences of the loss."""
    def loss():
        rng = None if rng_seed is None else np.random.default_rng(rng_seed)
        lo, _ = model.forward_backward(x, y, state.copy(), rng)
        return lo

    rng = None if rng_seed is None else np.random.default_rng(rng_seed)
    model.forward_backward(x, y, state.copy(), rng)
    analytic = {k: v.copy() for k, v in model.g.items()}
    dstate = model.dstate.copy()
    errors = {name: rel_error(analytic[name], numeric_grad(loss, w)) for name, w in model.p.items()}
    errors["h0"] = rel_error(dstate.h, numeric_grad(loss, state.h))
    if state.c is not None:
        errors["c0"] = rel_error(dstate.c, numeric_grad(loss, state.c))
    return errors


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_gradients_finite_differences(cell, layers, layouts):
    model, x, y, state = make(cell, layers)
    errors = model_fd_errors(model, x, y, state)
    assert max(errors.values()) < 1e-6, errors


def test_lstm_tiles_match_naive(layouts):
    """H = 2 * MR + 3: the products run whole panels of MR rows and single rows, and N = 3
    streams fill only part of a vector, so every kind of tile runs (kernels/tiles.py)."""
    from rnnkit.kernels import tiles

    hidden = 2 * tiles.MR + 3
    cfg = ModelConfig(cell="lstm", vocab_size=V, embed=E, hidden=hidden, layers=2)
    model = Model(cfg, dtype=np.float64, seed=3)
    rng = np.random.default_rng(4)
    model.params[:] = rng.uniform(-0.3, 0.3, model.params.size)
    x, y = rng.integers(0, V, (3, T)), rng.integers(0, V, (3, T))
    state = model.init_state(3)
    state.h[...] = rng.uniform(-0.5, 0.5, state.h.shape)
    state.c[...] = rng.uniform(-0.5, 0.5, state.c.shape)
    loss, new = model.forward_backward(x, y, state.copy())
    ref_loss, ref_h, ref_c = naive.model_loss(cfg, model.p, x, y, state.h, state.c)
    assert abs(loss - ref_loss) < 1e-12
    np.testing.assert_allclose(new.h, ref_h, rtol=0, atol=1e-12)
    np.testing.assert_allclose(new.c, ref_c, rtol=0, atol=1e-12)
    analytic, dh0 = model.g["l1.w_h"].copy(), model.dstate.h.copy()

    def f():
        return model.forward_backward(x, y, state.copy())[0]
    assert rel_error(analytic, numeric_grad(f, model.p["l1.w_h"])) < 1e-6
    assert rel_error(dh0, numeric_grad(f, state.h)) < 1e-6


@pytest.mark.parametrize("cell", CELLS)
def test_input_embedding_gradient(cell):
    model, x, y, state = make(cell, 2)
    model.forward_backward(x, y, state.copy())
    emb = model.p["embed"][x.T].copy()
    f = lambda: naive.model_loss(model.cfg, model.p, x, y, state.h, state.c, emb=emb)[0]
    assert rel_error(model.dinputs, numeric_grad(f, emb)) < 1e-6


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradients_with_dropout_and_tied_weights(cell):
    model, x, y, state = make(cell, 2, embed=H, dropout=0.3, tie_weights=True)
    errors = model_fd_errors(model, x, y, state, rng_seed=5)
    assert max(errors.values()) < 1e-6, errors


def test_final_state_gradient_flows():
    model, x, y, state = make("lstm", 2)
    rng = np.random.default_rng(3)
    dstate = State(rng.normal(size=state.h.shape), rng.normal(size=state.c.shape))

    def objective():
        lo, new = model.forward_backward(x, y, state.copy(), dstate=None)
        return lo + np.sum(new.h * dstate.h) + np.sum(new.c * dstate.c)

    model.forward_backward(x, y, state.copy(), dstate=dstate)
    analytic = model.g["l1.w_h"].copy()
    assert rel_error(analytic, numeric_grad(objective, model.p["l1.w_h"])) < 1e-6


@pytest.mark.parametrize("cell", CELLS)
def test_float32_agrees_with_float64(cell):
    m64, x, y, state = make(cell, 2)
    m32 = Model(m64.cfg, dtype=np.float32)
    m32.params[:] = m64.params
    s32 = State.from_arrays({k: v.astype(np.float32) for k, v in state.arrays().items()})
    l64, n64 = m64.forward_backward(x, y, state)
    l32, n32 = m32.forward_backward(x, y, s32)
    assert abs(l32 - l64) / abs(l64) < 1e-5
    scale = np.abs(m64.grads).max()
    assert np.abs(m32.grads - m64.grads).max() / scale < 1e-5
    np.testing.assert_allclose(n32.h, n64.h, atol=1e-5)


def test_dropout_zero_is_identity_and_seeded_runs_repeat():
    model, x, y, state = make("lstm", 2)
    a, _ = model.forward_backward(x, y, state.copy(), None)
    ga = model.grads.copy()
    b, _ = model.forward_backward(x, y, state.copy(), np.random.default_rng(9))
    assert a == b and np.array_equal(ga, model.grads)

    model, x, y, state = make("gru", 2, dropout=0.5, dtype=np.float32)
    runs = []
    for _ in range(2):
        lo, new = model.forward_backward(x, y, state.copy(), np.random.default_rng(9))
        runs.append((lo, model.grads.copy(), new.h))
    assert runs[0][0] == runs[1][0]
    assert np.array_equal(runs[0][1], runs[1][1]) and np.array_equal(runs[0][2], runs[1][2])
    other, _ = model.forward_backward(x, y, state.copy(), np.random.default_rng(10))
    assert other != runs[0][0]


@pytest.mark.parametrize("cell", CELLS)
def test_step_kernels_match_batched_forward(cell, monkeypatch):
    """Sampling's per-unit step kernels give the batched kernels' logits and states."""
    import rnnkit.model as model_module

    model, x, _, state = make(cell, 2)
    runs = []
    for max_n in (8, 0):  # the step kernels, then the batched kernels with T = 1
        monkeypatch.setattr(model_module, "STEP_MAX_N", max_n)
        s = state.copy()
        logits = [model.step(x[:, t], s) for t in range(T)]
        runs.append((np.stack(logits), s))
    np.testing.assert_allclose(runs[0][0], runs[1][0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(runs[0][1].h, runs[1][1].h, rtol=0, atol=1e-12)
    _, new = model.forward_backward(x, x, state.copy())
    np.testing.assert_allclose(runs[0][1].h, new.h, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_threaded_blocks_match_one_thread_and_naive(cell, layouts):
    """A batch big enough for the threaded drivers (blocks of streams and of rows)."""
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two threads")
    cfg = ModelConfig(cell=cell, vocab_size=V, embed=E, hidden=H, layers=2)
    model = Model(cfg, dtype=np.float64, seed=3)
    rng = np.random.default_rng(4)
    x, y = rng.integers(0, V, (24, 24)), rng.integers(0, V, (24, 24))
    state = model.init_state(24)
    results = []
    try:
        for threads in (1, 2):
            set_threads(threads, adaptive=False)
            loss, new = model.forward_backward(x, y, state.copy())
            results.append((loss, model.grads.copy(), new.h))
    finally:
        set_threads(1, adaptive=False)
    ref_loss, ref_h, _ = naive.model_loss(cfg, model.p, x, y, state.h, state.c)
    assert abs(results[1][0] - ref_loss) < 1e-12
    np.testing.assert_allclose(results[1][2], ref_h, rtol=0, atol=1e-12)
    np.testing.assert_allclose(results[1][1], results[0][1], rtol=0, atol=1e-12)


def test_lstm_blocks_match_one_block_and_naive(monkeypatch):
    """The LSTM recurrence split by hidden units (uneven blocks here), and by streams, against
    one block and the reference; each with its products in kernels/tiles.py and through
    BLAS."""
    import numba

    from rnnkit.kernels import lstm

    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs two threads")
    cfg = ModelConfig(cell="lstm", vocab_size=V, embed=E, hidden=131, layers=2)
    model = Model(cfg, dtype=np.float64, seed=1)
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, V, (N, T)), rng.integers(0, V, (N, T))
    state = model.init_state(N)
    state.h[...] = rng.normal(scale=0.3, size=state.h.shape)
    state.c[...] = rng.normal(scale=0.3, size=state.c.shape)
    runs = []
    set_threads(2, adaptive=False)
    try:
        for min_units, min_streams, expect in ((64, 1, (2, 1)), (10 ** 9, 1, (1, 2)),
                                               (10 ** 9, 10 ** 9, (1, 1))):
            for tile_from in (0, 10 ** 9):
                monkeypatch.setattr(lstm, "MIN_UNITS", min_units)
                monkeypatch.setattr(lstm, "MIN_STREAMS", min_streams)
                monkeypatch.setattr(lstm, "TILE_FROM", tile_from)
                assert lstm.split(cfg.hidden, N) == expect
                loss, new = model.forward_backward(x, y, state.copy())
                runs.append((loss, model.grads.copy(), new, model.dstate.copy()))
    finally:
        set_threads(1, adaptive=False)
    ref_loss = naive.model_loss(cfg, model.p, x, y, state.h, state.c)[0]
    for run in runs:
        assert abs(run[0] - ref_loss) < 1e-12
        np.testing.assert_allclose(run[1], runs[-1][1], rtol=0, atol=1e-12)
        np.testing.assert_allclose(run[2].c, runs[-1][2].c, rtol=0, atol=1e-12)
        np.testing.assert_allclose(run[3].h, runs[-1][3].h, rtol=0, atol=1e-12)
        np.testing.assert_allclose(run[3].c, runs[-1][3].c, rtol=0, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_workspace_buffers_start_cache_lines(cell):
    model = make(cell, 2)[0]
    ws = model.workspace(N, T)
    arrays = [ws["emb"], ws["logits"], *ws["dtop"], ws["demb"], ws["dh"], ws["dc"],
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
