"""The first layer's input table (rnnkit/model/tables.py, kernels/cpu/table.py): the same
model with and without it, float64 finite differences through it, the kernels against the
embedded inputs they replace, and which batches take it."""
import numba
import numpy as np
import pytest

from rnnkit import cells
from rnnkit.backends import get_backend
from rnnkit.backends.threads import set_threads
from rnnkit.kernels.cpu import lstm
from rnnkit.kernels.cpu.buffers import LSTM
from rnnkit.model import tables
from rnnkit.model.network import Model, ModelConfig
from tests import naive
from tests.test_backend import fd_errors

V, E, H = 5, 4, 6


CELLS = ["rnn-tanh", "rnn-relu", "lstm", "gru"]


def make(tabled, cell="lstm", N=3, T=4, layers=2, seed=0, **kw):
    cfg = ModelConfig(cell=cell, vocab_size=V, embed=kw.pop("embed", E), hidden=H,
                      layers=layers, **kw)
    model = Model(cfg, dtype=np.float64, seed=seed)
    model.input_tables = tabled
    rng = np.random.default_rng(seed + 1)
    model.params[:] = rng.uniform(-0.5, 0.5, model.params.shape)
    x, y = rng.integers(0, V, (N, T)), rng.integers(0, V, (N, T))
    state = model.state_from_host({k: rng.uniform(-0.5, 0.5, (layers, N, H))
                                   for k in model.cell.state})
    return model, x, y, state


class NoTables:
    def table_inputs(self, cell):
        return False


def test_which_batches_take_a_table():
    cpu = get_backend("cpu")
    cfg = ModelConfig(cell="lstm", vocab_size=65, embed=8, hidden=8)
    lstm_cell = cells.get("lstm")
    assert tables.wanted(cfg, lstm_cell, cpu, 2, 65)             # 130 tokens, 65 ids
    assert not tables.wanted(cfg, lstm_cell, cpu, 1, 129)
    assert not tables.wanted(ModelConfig(cell="lstm", vocab_size=65, dropout=0.2), lstm_cell,
                             cpu, 32, 64)                       # dropout on the embedding
    assert not tables.wanted(cfg, lstm_cell, NoTables(), 32, 64)
    assert tables.shapes(cfg, lstm_cell, cpu, 32, 64) == (4 * 8 * 65,)
    assert tables.shapes(cfg, cells.get("gru"), cpu, 2, 100) == (3 * 8 * 65,)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("layers", [1, 2])
def test_the_table_gives_the_embedded_inputs_results(cell, layers):
    """Loss, final state and evaluation the same bits; gradients the same sums in another
    order (to 1e-13); the table is taken only where asked."""
    runs = []
    for tabled in (True, False):
        model, x, y, state = make(tabled, cell, layers=layers)
        loss, new = model.forward_backward(x, y, state.copy())
        total, _, _ = model.evaluate(x, y, state)
        runs.append((loss, new.h, new.c if cell == "lstm" else new.h, total,
                     model.grads.copy(), model.dinputs))
        assert (model.workspace(3, 4)["tt"] is not None) == tabled
    (a, b) = runs
    assert a[0] == b[0] and a[3] == b[3]
    assert np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])
    np.testing.assert_allclose(a[4], b[4], rtol=0, atol=1e-13 * np.abs(b[4]).max())
    assert a[5] is None and b[5] is not None
    cfg = model.cfg
    ref_loss, _, _ = naive.model_loss(cfg, make(True, cell, layers=layers)[0].p, x, y,
                                      state.h, state.c)
    assert abs(a[0] - ref_loss) < 1e-12


@pytest.mark.parametrize("cell,kw", [(c, dict(layers=1)) for c in CELLS] + [
    ("lstm", dict(layers=2)), ("gru", dict(layers=2, embed=H, tie_weights=True))])
def test_gradients_through_the_table_finite_differences(cell, kw):
    model, x, y, state = make(True, cell, **kw)
    assert model.workspace(3, 4)["tt"] is not None
    errors = fd_errors(model, x, y, state)
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_short_tail_and_sampling_after_tabled_batches(cell):
    """Batches of one N with and without a table (a tail too short for one) keep their own
    arrays; one stream primed through tables then samples through the step kernels, as
    without them."""
    outs = []
    for tabled in (True, False):
        model, x, y, state = make(tabled, cell, N=3, T=4)
        first, _ = model.forward_backward(x, y, state.copy())
        tail, _ = model.forward_backward(x[:, :2], y[:, :2], state.copy())      # 6 < 2 V
        again, _ = model.forward_backward(x, y, state.copy())
        s = model.init_state(1)
        s = model.advance(np.tile(x[:1], 4), s)                                # 16 tokens
        scores = model.step(np.array([2]), s).copy()
        outs.append((first, tail, again, s.h.copy(), scores))
    assert outs[0][0] == outs[0][2]
    for a, b in zip(*outs):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("T,N,Hk", [(5, 3, 6), (16, 32, 40), (9, 64, 128)])
def test_lstm_kernels_with_a_table(T, N, Hk, dtype, threads):
    """The kernels with a table against the same layer over the embedded inputs (BLAS for
    small batches, the tiles, the packed operands with AVX2, several row blocks)."""
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip("needs two threads")
    set_threads(threads, adaptive=False)
    try:
        _compare_kernels(T, N, 7, Hk, 11, dtype)
    finally:
        set_threads(1, adaptive=False)


def _compare_kernels(T, N, D, H, Vk, dtype):
    rng = np.random.default_rng(0)
    emb = rng.standard_normal((Vk, D)).astype(dtype)
    ids = rng.integers(0, Vk, (T, N))
    w_x, w_h = (0.3 * rng.standard_normal(s).astype(dtype) for s in ((D, 4 * H), (H, 4 * H)))
    b, dhs = rng.standard_normal(4 * H).astype(dtype), rng.standard_normal((T, N, H)).astype(dtype)
    rows, inv = np.unique(ids, return_inverse=True)
    tid = np.ascontiguousarray(inv.reshape(T, N), dtype=np.int64)
    out = []
    for tabled in (True, False):
        d = 0 if tabled else D
        buf = {k: np.zeros(s, dtype) for k, s in LSTM.buffers(T, N, d, H).items()}
        s = {k: np.zeros(s, dtype) for k, s in LSTM.scratch(T, N, d, H).items()}
        x = np.zeros((T, N, 0), dtype) if tabled else emb[ids]
        tt = np.ascontiguousarray(emb[rows] @ w_x + b) if tabled else None
        gt = np.full((rows.size, 4 * H), np.nan, dtype) if tabled else None
        lstm.lstm_forward(x, w_x[:d], w_h, b, buf["hs"], buf["c"], buf["gates"], buf["cs"],
                          buf["z"], buf["wt"], buf["hp"], tt, tid if tabled else None)
        dh, dc = np.zeros((N, H), dtype), np.zeros((N, H), dtype)
        dx, dw_x = np.zeros((T, N, d), dtype), np.zeros((d, 4 * H), dtype)
        dw_h, db = np.zeros((H, 4 * H), dtype), np.zeros(4 * H, dtype)
        lstm.lstm_backward(x, w_x[:d], w_h, buf["hs"], buf["gates"], buf["cs"], dhs, dh, dc,
                           dx, dw_x, dw_h, db, s["dg"], s["dht"], s["dct"], s["dwt"], s["dxt"],
                           s["bp"], s["dgp"], tid if tabled else None, gt)
        demb = np.zeros_like(emb)
        if tabled:
            dw_x = emb[rows].T @ gt
            demb[rows] += gt @ w_x.T
        else:
            np.add.at(demb, ids, dx)
        out.append([buf["hs"], buf["c"], dh, dc, dw_h, db, dw_x, demb])
    tol = 1e-12 if dtype == np.float64 else 2e-5
    for a, ref in zip(*out):
        np.testing.assert_allclose(a, ref, rtol=0, atol=tol * max(1.0, np.abs(ref).max()))


def test_a_table_needs_no_inputs():
    x = np.zeros((2, 3, 1))
    with pytest.raises(ValueError, match="D = 0"):
        lstm.lstm_forward(x, np.zeros((1, 8)), np.zeros((2, 8)), np.zeros(8),
                          **_buffers(2, 3, 1, 2), tt=np.zeros((1, 8)),
                          tid=np.zeros((2, 3), np.int64))


def _buffers(T, N, D, H):
    b = {k: np.zeros(s) for k, s in LSTM.buffers(T, N, D, H).items()}
    return dict(hs=b["hs"], c=b["c"], gates=b["gates"], cs=b["cs"], z=b["z"], wt=b["wt"],
                hp=b["hp"])


@pytest.mark.parametrize("cell", CELLS)
def test_tiled_threaded_batches_with_and_without_a_table(cell):
    """Batches large enough for the tiles and for blocks of rows on two threads (the gather
    and the sums by id split between them): the same results as without a table."""
    runs = []
    for tabled, threads in ((True, 2), (False, 2)):
        set_threads(min(threads, numba.config.NUMBA_NUM_THREADS), adaptive=False)
        try:
            cfg = ModelConfig(cell=cell, vocab_size=11, embed=7, hidden=40, layers=2)
            model = Model(cfg, dtype=np.float64, seed=3)
            model.input_tables = tabled
            rng = np.random.default_rng(4)
            x, y = rng.integers(0, 11, (32, 16)), rng.integers(0, 11, (32, 16))
            loss, new = model.forward_backward(x, y, model.init_state(32))
            runs.append((loss, new.h, model.grads.copy()))
        finally:
            set_threads(1, adaptive=False)
    (a, b) = runs
    assert a[0] == b[0] and np.array_equal(a[1], b[1])
    np.testing.assert_allclose(a[2], b[2], rtol=0, atol=1e-13 * np.abs(b[2]).max())


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_compile_workers_tasks_run_a_tabled_model(cell):
    """What a background compile worker runs (rnnkit/training/compile_workers.py) on a model
    whose first layer reads a table: BPTT with one, no embedding scatter."""
    from rnnkit.training import compile_workers

    model = Model(ModelConfig(cell=cell, vocab_size=V, embed=E, hidden=H, layers=2))
    spec = compile_workers.spec(model, 4, 4, "adam", "backward", partition=1)
    assert model.workspace(4, 4)["tt"] is not None
    for name in compile_workers.TASKS:
        compile_workers.task(model, spec, name)
    assert np.isfinite(model.grads).all()


@pytest.mark.parametrize("tabled", [True, False])
def test_ids_out_of_range_are_refused(tabled):
    """A batch's ids are checked before any kernel reads a row by them (the embedded path read
    memory past the table, the tabled one raised numpy's IndexError)."""
    model, x, y, state = make(tabled)
    for bad in (V, -1):
        x2 = x.copy()
        x2[1, 2] = bad
        with pytest.raises(ValueError, match=r"token ids must lie in \[0, 5\)"):
            model.forward_backward(x2, y, state.copy())
        with pytest.raises(ValueError, match="token ids"):
            model.evaluate(x2, y, state)


def test_batch_sizes_with_and_without_tables_keep_their_arrays():
    """Training and evaluation at another N, each with a tail too short for a table, keep
    their arrays from one pass to the next: batch sizes count, not what the first layer
    reads (four sets of arrays of two sizes were reallocated every pass)."""
    model, x, y, state = make(True, N=3, T=4)
    x8, y8 = np.tile(x, (1, 2)), np.tile(y, (1, 2))

    def one_pass():
        model.forward_backward(x, y, state.copy())                      # 12 tokens: a table
        model.forward_backward(x[:, :1], y[:, :1], state.copy())        # 3: none
        model.evaluate(x8[:2], y8[:2], model.init_state(2))            # 16: a table
        model.evaluate(x8[:2, :3], y8[:2, :3], model.init_state(2))    # 6: none

    one_pass()
    before = {k: id(v[1]) for k, v in model._bases.items()}
    one_pass()
    assert len(before) == 4 and {k: id(v[1]) for k, v in model._bases.items()} == before


def test_the_memory_estimate_counts_the_table():
    from rnnkit.model.memory import memory_bytes

    cpu = get_backend("cpu")
    cfg = ModelConfig(cell="lstm", vocab_size=65, embed=16, hidden=32)
    extra = tables.numbers(cfg, cells.get("lstm"), cpu, 32, 64)
    assert extra >= 4 * 4 * 32 * 65
    assert tables.numbers(cfg, cells.get("lstm"), cpu, 1, 100) == 0
    assert memory_bytes(cfg, 32, 64, "float32", cpu) >= 4 * extra
