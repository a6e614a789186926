"""The CUDA kernels under Numba's CUDA simulator, beyond what tests/test_backend.py runs for
every backend: the Philox known answers, the products with several threads per block, the
persistent and per-step recurrences giving the same bits, every gradient entry against the
CPU backend's, the long-row sampling path against the short-row one, the loss's per-row form,
determinism, and the argument types of every launch against tests/test_cuda_ptx.py's list.

Run with NUMBA_ENABLE_CUDASIM=1 (make test's second pass); a normal run skips the module.
"""
import importlib

import numpy as np
import pytest

from numba.core.config import ENABLE_CUDASIM

pytestmark = pytest.mark.skipif(not ENABLE_CUDASIM, reason="runs under Numba's CUDA "
                                "simulator: NUMBA_ENABLE_CUDASIM=1 (make test's second pass)")

if ENABLE_CUDASIM:
    from rnnkit.backends import get_backend
    from rnnkit.kernels.cuda import gemm, launch, recurrent, rng as philox
    from rnnkit.model.network import Model, ModelConfig
    from rnnkit.model.optim import clip_gradients, make_optimizer
    from tests import naive

CELLS = ["rnn-tanh", "rnn-relu", "lstm", "gru"]
MODULES = ["adaptive", "elementwise", "embed", "gemm", "gru", "loss", "lstm", "optim", "rnn",
           "rng", "sample"]
ADAPTIVE = dict(V=11, softmax="adaptive", cutoffs="3,6", div_value=2.0)


@pytest.fixture
def cuda():
    return get_backend("cuda")


@pytest.fixture(scope="module")
def cpu():
    return get_backend("cpu")


def model(backend, cell, N=3, T=4, V=7, E=4, H=5, layers=2, dtype=np.float64, seed=0, **kw):
    cfg = ModelConfig(cell=cell, vocab_size=V, embed=E, hidden=H, layers=layers, **kw)
    m = Model(cfg, dtype=dtype, seed=seed, backend=backend)
    rng = np.random.default_rng(seed + 1)
    backend.copy(m.params, rng.uniform(-0.5, 0.5, m.params.shape).astype(dtype))
    x, y = rng.integers(0, V, (N, T)), rng.integers(0, V, (N, T))
    state = m.state_from_host({k: rng.uniform(-0.5, 0.5, (layers, N, H)) for k in m.cell.state})
    return m, x, y, state


def run(m, x, y, state, seed=None):
    """Loss, gradients, the initial state's gradients and the final state, on the host."""
    b = m.backend
    loss, new = m.forward_backward(x, y, state.copy(), None if seed is None else b.rng(seed))
    return (loss, b.to_host(m.grads), {k: b.to_host(v) for k, v in m.dstate.arrays.items()},
            {k: b.to_host(v) for k, v in new.arrays.items()})


def same(a, b):
    assert a[0] == b[0]
    np.testing.assert_array_equal(a[1], b[1])
    for x, y in ((a[2], b[2]), (a[3], b[3])):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


def test_philox_known_answers():
    """Random123's known-answer vectors for Philox4x32-10 (counter, key -> words)."""
    u = np.uint64
    cases = [((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
             ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6,
                                                     0x6D5451FD)),
             ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
              (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]
    for counter, key, words in cases:
        got = philox.philox(*(u(c) for c in counter), *(u(k) for k in key))
        assert tuple(int(w) for w in got) == words


def test_products_with_several_threads(monkeypatch):
    """gemm with 2 x 2 threads per block, each a 2 x 2 tile: strided, batched, split-K,
    accumulating and biased products against numpy."""
    for name, value in dict(TS=2, R=2, BK=4, BM=4, NT=4, PAD=5).items():
        monkeypatch.setattr(gemm, name, value)
    b = get_backend("cuda")
    rng = np.random.default_rng(0)
    T, N, D, G = 3, 5, 6, 7
    x, w, bias = rng.normal(size=(T, N, D)), rng.normal(size=(D, G)), rng.normal(size=G)
    dx, dw, db = b.from_host(x), b.from_host(w), b.from_host(bias)
    out = b.zeros((T, G, N), np.float64)            # out[t] = w^T x_t^T + bias, feature-major
    gemm.product(gemm.View(out, 0, G * N, N, 1), gemm.View(dw, 0, 0, 1, 0, G),
                 gemm.View(dx, 0, N * D, 0, 1, D), T, G, N, D, bias=db, bias_ij=(1, 0))
    want = np.einsum("dr,tnd->trn", w, x) + bias[None, :, None]
    np.testing.assert_allclose(b.to_host(out), want, rtol=1e-13, atol=1e-13)
    acc = b.from_host(np.ones((D, G)))              # += sum over (t, n) as split K
    gemm.product(gemm.View(acc, 0, 0, G, 1), gemm.View(dx, 0, 0, 1, N * D, D),
                 gemm.View(out, 0, 0, G * N, 1, N), 1, D, G, N, KB=T, accumulate=True)
    np.testing.assert_allclose(b.to_host(acc), 1 + np.einsum("tnd,trn->dr", x, want),
                               rtol=1e-12)
    y = b.zeros((T * N, G), np.float64)             # row-major with a bias per column
    gemm.product(gemm.View(y, 0, 0, G, 1), gemm.View(dx, 0, 0, D, 0, 1),
                 gemm.View(dw, 0, 0, 0, G, 1), 1, T * N, G, D, bias=db, bias_ij=(0, 1))
    np.testing.assert_allclose(b.to_host(y), x.reshape(-1, D) @ w + bias, rtol=1e-13,
                               atol=1e-13)
    sums = b.zeros(G, np.float64)
    gemm.row_sums(out, sums, G, T, N, 0, N, G * N, 1)
    np.testing.assert_allclose(b.to_host(sums), want.sum(axis=(0, 2)), rtol=1e-13)


@pytest.mark.parametrize("cell", CELLS)
def test_persistent_and_per_step_recurrences_give_the_same_bits(cuda, cell, monkeypatch):
    """One persistent launch (a grid of one block: the simulator runs blocks one after
    another), a launch per step over several blocks, and a launch per step with W_h in
    chunks: the same sums in the same order."""
    m, x, y, state = model(cuda, cell)
    cuda.rec.reset("persistent")
    one = run(m, x, y, state)
    assert all(p.persistent and p.blocks == 1 for p in cuda.rec._plans.values())
    cuda.rec.reset("steps")
    steps = run(m, x, y, state)
    assert all(not p.persistent and p.blocks > 1 for p in cuda.rec._plans.values())
    monkeypatch.setattr(recurrent, "SHARED", 8)
    cuda.rec.reset("steps")
    chunks = run(m, x, y, state)
    assert all(p.KC < p.K for p in cuda.rec._plans.values())
    same(one, steps)
    same(one, chunks)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("kw", [{}, dict(E=5, tie_weights=True), dict(ADAPTIVE, head_bias=True)])
def test_every_gradient_entry_matches_the_cpu(cuda, cpu, cell, kw):
    """The finite differences of tests/test_backend.py check one entry per array under
    the simulator; here every entry is compared with the CPU backend's (which checks all)."""
    got = run(*model(cuda, cell, **kw))
    want = run(*model(cpu, cell, **kw))
    assert abs(got[0] - want[0]) < 1e-13
    np.testing.assert_allclose(got[1], want[1], rtol=1e-10, atol=1e-14)
    for k in want[2]:
        np.testing.assert_allclose(got[2][k], want[2][k], rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(got[3][k], want[3][k], rtol=1e-12, atol=1e-14)


def test_embedding_scatter_adds_in_the_cpu_order(cuda, cpu):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, (6, 7))                  # many repeats of 5 ids
    dout = rng.normal(size=(7, 6, 3))
    table = rng.normal(size=(9, 3))
    got = cuda.from_host(table)
    cuda.embed_backward(cuda.ids(x), cuda.from_host(dout), got)
    want = table.copy()
    cpu.embed_backward(cpu.ids(x), dout, want)
    np.testing.assert_array_equal(cuda.to_host(got), want)


def test_loss_rows_and_bad_targets(cuda):
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=4.0, size=(9, 11))
    targets = rng.integers(0, 11, 9)
    t = cuda.ids(targets[None, :]).reshape(-1)
    rows = cuda.softmax_xent_rows(cuda.from_host(logits), t)
    want = [naive.cross_entropy(logits[i:i + 1], targets[i:i + 1]) for i in range(9)]
    assert rows.dtype == np.float64 and rows.shape == (9,)
    np.testing.assert_allclose(rows, want, rtol=1e-13)
    bad = cuda.ids(np.array([[0, 11, 3]])).reshape(-1)
    # the summed loss is checked when it comes to the host: at its first use, or with the
    # step's one readback (the gradient norm's)
    for call in (lambda: float(cuda.softmax_xent(cuda.from_host(logits[:3]), bad)),
                 lambda: cuda.softmax_xent_rows(cuda.from_host(logits[:3]), bad)):
        with pytest.raises(ValueError, match=r"targets must lie in \[0, 11\)"):
            call()


def test_long_rows_draw_what_short_rows_draw(cuda, monkeypatch):
    """Rows longer than ROW_V take a block each (bisection); the same rows and draws as one
    thread each (pairwise definitions) give the same tokens, ties at the top-p cut too."""
    rng = np.random.default_rng(3)
    logits = np.round(rng.normal(scale=2.0, size=(24, 9)), 1)  # rounded: many ties
    logits[:, 4] = logits[:, 2]
    dev = cuda.from_host(logits.astype(np.float32))
    for kw in (dict(), dict(greedy=True), dict(top_k=3), dict(top_k=1), dict(top_p=0.5),
               dict(top_p=0.8, temperature=0.7), dict(top_k=4, top_p=0.6),
               dict(temperature=2.0)):
        short = cuda.sample(dev, cuda.rng(5), **kw)
        monkeypatch.setattr(launch, "ROW_V", 4)
        long = cuda.sample(dev, cuda.rng(5), **kw)
        monkeypatch.setattr(launch, "ROW_V", 256)
        np.testing.assert_array_equal(long, short, err_msg=str(kw))
        top = logits == logits.max(axis=1, keepdims=True)
        if kw.get("greedy"):
            np.testing.assert_array_equal(short, np.argmax(logits, axis=1))
        if kw.get("top_k") == 1:                    # ties at the top are all kept
            assert top[np.arange(len(short)), short].all()


def test_training_repeats_bit_for_bit(cuda):
    """Dropout, clipping and Adam, three steps, twice from the same seeds: the same bits."""
    def steps():
        m, x, y, state = model(cuda, "lstm", dtype=np.float32, dropout=0.3)
        opt = make_optimizer("adam", m.params, cuda, lr=0.01)
        rng, out = cuda.rng(4), []
        for _ in range(3):
            loss, state = m.forward_backward(x, y, state, rng)
            out.append((loss, clip_gradients(m.grads, 0.1, backend=cuda)))
            opt.step(m.grads)
        return out, cuda.to_host(m.params), cuda.rng_state(rng)

    a, b = steps(), steps()
    assert a[0] == b[0] and a[2] == b[2]
    np.testing.assert_array_equal(a[1], b[1])


def test_rng_states_cross_backends(cuda, cpu):
    """A CPU (PCG64) state seeds the same device stream every time, and the reverse."""
    state = cpu.rng_state(cpu.rng(11))
    masks = []
    for _ in range(2):
        r = cuda.rng(0)
        cuda.set_rng_state(r, state)
        x = cuda.from_host(np.ones(50, np.float32))
        mask, out = cuda.zeros(50, np.float32), cuda.zeros(50, np.float32)
        cuda.dropout(x, 0.5, r, mask, out)
        masks.append(cuda.to_host(mask))
    np.testing.assert_array_equal(*masks)
    assert 5 < np.count_nonzero(masks[0]) < 45
    dev_state = cuda.rng_state(cuda.rng(12))
    assert dev_state["bit_generator"] == "Philox4x32-10"
    draws = []
    for _ in range(2):
        r = cpu.rng(0)
        cpu.set_rng_state(r, dev_state)
        draws.append(r.random(4))
    np.testing.assert_array_equal(*draws)
    assert not np.array_equal(draws[0], cpu.rng(0).random(4))
    r = cuda.rng(0)
    cuda.set_rng_state(r, dev_state)                # its own state: restored exactly
    assert cuda.rng_state(r) == dev_state


def test_every_launch_has_a_compiled_signature(cuda, monkeypatch):
    """The argument types of every launch of a representative workload (each cell, both
    dtypes, dropout, every optimizer, clipping, sampling both ways, the loss both ways) are
    among those tests/test_cuda_ptx.py compiles to PTX."""
    declared = {}
    for name in MODULES:
        for kernel, codes, dtypes in importlib.import_module(
                f"rnnkit.kernels.cuda.{name}").SIGNATURES:
            for dt in dtypes:
                declared.setdefault(kernel, set()).add(launch.signature(codes, dt))
    seen = []
    monkeypatch.setattr(launch, "RECORD", seen)
    for dtype in (np.float32, np.float64):
        for cell in CELLS:
            m, x, y, state = model(cuda, cell, dtype=dtype, dropout=0.2, layers=1)
            m.forward_backward(x, y, state, cuda.rng(1))
            m.evaluate(x, y, state)
            cuda.softmax_xent_rows(m.step(x[:, 0], state), cuda.ids(y[:, :1]).reshape(-1))
        m, x, y, state = model(cuda, "lstm", dtype=dtype, layers=1, **ADAPTIVE)
        m.forward_backward(np.minimum(x, 10), np.arange(12).reshape(3, 4) % 11, state)
        m.evaluate_tokens(x, y, state)
        m.step(x[:, 0], state)
        clip_gradients(m.grads, 1.0, 0.5, cuda)
        cuda.all_finite(m.params)
        for name, hyper in (("sgd", dict(momentum=0.9)), ("adam", {}), ("adamw", {}),
                            ("rmsprop", dict(centered=True, momentum=0.5)), ("adagrad", {})):
            make_optimizer(name, m.params, cuda, **hyper).step(m.grads)
        logits = cuda.from_host(np.zeros((2, 9), dtype))
        cuda.sample(logits, cuda.rng(0), top_k=2, top_p=0.5)
        monkeypatch.setattr(launch, "ROW_V", 4)
        cuda.sample(logits, cuda.rng(0), top_k=2, top_p=0.5)
        monkeypatch.setattr(launch, "ROW_V", 256)
    kernels = {k for k, _ in seen}
    assert len(kernels) >= 20
    for kernel, types_ in seen:
        assert kernel in declared, kernel.__name__
        assert types_ in declared[kernel], (kernel.__name__, types_)


@pytest.mark.parametrize("cell", CELLS)
def test_a_training_step_makes_at_most_25_launches_and_one_readback(cuda, cell):
    """Forward, backward, clipping (scaling too) and Adam on a 2-layer model: at most 25
    kernel launches, and one transfer to the host that brings the loss and the norm."""
    m, x, y, state = model(cuda, cell, layers=2, dtype=np.float32)
    opt = make_optimizer("adam", m.params, cuda)

    def step(state):
        loss, state = m.forward_backward(x, y, state)
        norm = clip_gradients(m.grads, 1e-3, backend=cuda)
        opt.step(m.grads)
        return loss, norm, state

    _, _, state = step(state)
    launches, reads, _ = cuda.counters()
    loss, norm, state = step(state)
    assert cuda.counters()[0] - launches <= 25
    assert cuda.counters()[1] - reads == 1
    assert np.isfinite(float(loss)) and norm > 1e-3        # the clip scaled: it launched
    assert cuda.counters()[1] - reads == 1                 # the loss came with the norm
