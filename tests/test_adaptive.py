"""The adaptive softmax (rnnkit/model/softmax.py) on every backend against the oracle
(tests/naive.py): losses, every id's log-probability, gradients by float64 finite differences,
the ragged cross-entropy and row kernels, and that a batch computes only its targets'
clusters. Backends as in tests/test_backend.py (the CUDA one under the simulator too)."""
import numpy as np
import pytest

from rnnkit.model.config import ConfigError, ModelConfig
from rnnkit.model.network import Model
from tests import naive
from tests.test_backend import (backend, entries, fd_errors, host, host_state,  # noqa: F401
                                numeric_grad, rel_error, simulated, weights)

N, T, E, H = 2, 3, 4, 5
V, CUTOFFS = 11, "3,6"          # shortlist 0-2, clusters 3-5 and 6-10; tails of 2 and 1 units
Y = np.array([[0, 4, 10], [7, 2, 5]])     # targets in the head and in both clusters


def make(backend, cell="lstm", layers=1, dtype=np.float64, seed=0, **kw):
    cfg = ModelConfig(cell=cell, vocab_size=V, embed=kw.pop("embed", E), hidden=H,
                      layers=layers, softmax="adaptive", cutoffs=kw.pop("cutoffs", CUTOFFS),
                      div_value=kw.pop("div_value", 2.0), **kw)
    model = Model(cfg, dtype=dtype, seed=seed, backend=backend)
    rng = np.random.default_rng(seed + 1)
    backend.copy(model.params, rng.uniform(-0.5, 0.5, model.params.shape).astype(dtype))
    x = rng.integers(0, V, (N, T))
    arrays = {name: rng.uniform(-0.5, 0.5, (layers, N, H)) for name in model.cell.state}
    return model, x, Y.copy(), model.state_from_host(arrays)


def oracle(model, x, state):
    s = host_state(model, state)
    return naive.model_logits(model.cfg, weights(model), x, s["h"], s.get("c"))


@pytest.mark.parametrize("head_bias", [False, True])
@pytest.mark.parametrize("cell,layers", [("lstm", 1), ("lstm", 2), ("gru", 2)])
def test_losses_match_naive(backend, cell, layers, head_bias):
    model, x, y, state = make(backend, cell, layers, head_bias=head_bias)
    log_p, ref_h, _ = oracle(model, x, state)
    ref = -log_p[np.arange(N * T), y.T.reshape(-1)]          # t-major rows
    loss, new = model.forward_backward(x, y, state.copy())
    assert abs(loss - ref.mean()) < 1e-12
    np.testing.assert_allclose(host(backend, new.h), ref_h, rtol=0, atol=1e-12)
    total, count, _ = model.evaluate(x, y, state.copy())
    assert count == N * T and abs(total - ref.sum()) < 1e-12
    each, _ = model.evaluate_tokens(x, y, state.copy())
    np.testing.assert_allclose(each, ref.reshape(T, N).T, rtol=0, atol=1e-12)


@pytest.mark.parametrize("head_bias", [False, True])
def test_every_log_probability_and_they_sum_to_one(backend, head_bias):
    """step() gives log p of every id, as the oracle, normalised over the whole vocabulary,
    and the loss of a target is minus its log-probability there."""
    model, x, y, state = make(backend, "lstm", 2, head_bias=head_bias)
    log_p = oracle(model, x, state)[0].reshape(T, N, V)
    stepped = state.copy()
    for t in range(T):
        scores = host(backend, model.step(x[:, t], stepped))
        np.testing.assert_allclose(scores, log_p[t], rtol=0, atol=1e-12)
        np.testing.assert_allclose(np.exp(scores).sum(axis=1), 1.0, rtol=0, atol=1e-12)
    model32 = Model(model.cfg, dtype=np.float32, backend=backend)
    backend.copy(model32.params, host(backend, model.params).astype(np.float32))
    scores = host(backend, model32.step(x[:, 0], model32.state_from_host(
        host_state(model, state))))
    np.testing.assert_allclose(np.exp(scores.astype(np.float64)).sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(scores, log_p[0], atol=1e-5)


@pytest.mark.parametrize("head_bias", [False, True])
@pytest.mark.parametrize("cell,layers", [("lstm", 1), ("gru", 2)])
def test_gradients_finite_differences(backend, cell, layers, head_bias):
    if backend.name == "cuda" and (cell, head_bias) != ("lstm", True):
        # the simulator runs every kernel as Python: on CUDA one cell with the head's bias,
        # and the three clusters' case below, check the output layer (the cells' own
        # gradients: tests/test_backend.py); the CPU runs every case
        pytest.skip("one case of four on CUDA (the simulator's time)")
    model, x, y, state = make(backend, cell, layers, head_bias=head_bias)
    errors = fd_errors(model, x, y, state)
    assert max(errors.values()) < 1e-6, errors


def test_gradients_with_dropout_and_three_clusters(backend):
    model, x, y, state = make(backend, "lstm", 2, dropout=0.3, cutoffs="2,4,7", div_value=1.5)
    assert [model.p[f"out.tail{i}.proj"].shape[0] for i in range(3)] == [3, 2, 1]
    errors = fd_errors(model, x, y, state, seed=5)
    assert max(errors.values()) < 1e-6, errors


def test_input_gradient_with_clusters_left_out(backend):
    """Batches whose targets miss a cluster, or every tail: the gradient on the top layer's
    output (through the embedding's, which BPTT carries there) still matches."""
    for y in (np.array([[0, 1, 2], [2, 1, 0]]), np.array([[7, 8, 9], [10, 6, 7]])):
        model, x, _, state = make(backend, "lstm", 1)
        s = host_state(model, state)
        model.forward_backward(x, y, state.copy())
        p = weights(model)
        emb = p["embed"][x.T].copy()
        f = lambda: naive.model_loss(model.cfg, p, x, y, s["h"], s["c"], emb=emb)[0]  # noqa
        numeric = numeric_grad(f, lambda: emb, lambda a: emb.__setitem__(Ellipsis, a))
        assert rel_error(host(backend, model.dinputs), numeric) < 1e-6
        grads = {k: host(backend, v) for k, v in model.g.items()}
        assert not grads["out.tail0.w"].any()           # no target in cluster 0: untouched
        assert grads["out.tail1.w"].any() == (y.max() >= 6)


def test_float32_agrees_with_float64(backend):
    m64, x, y, state = make(backend, "lstm", 2)
    m32 = Model(m64.cfg, dtype=np.float32, backend=backend)
    backend.copy(m32.params, host(backend, m64.params).astype(np.float32))
    l64, _ = m64.forward_backward(x, y, state)
    l32, _ = m32.forward_backward(x, y, m32.state_from_host(host_state(m64, state)))
    assert abs(l32 - l64) / abs(l64) < 1e-5
    g64, g32 = host(backend, m64.grads), host(backend, m32.grads)
    assert np.abs(g32 - g64).max() / np.abs(g64).max() < 1e-5


def test_a_batch_computes_only_its_targets_clusters(backend, monkeypatch):
    """Targets all in the shortlist: no tail product runs, in training or evaluation; one
    target in the last cluster: its products run for that one row only."""
    model, x, _, state = make(backend, "lstm", 1)
    widths = []
    forward = type(backend).linear_forward

    def spy(self, x_, w, b, y):
        widths.append((y.shape[0], y.shape[1]))
        return forward(self, x_, w, b, y)

    monkeypatch.setattr(type(backend), "linear_forward", spy)
    head = np.array([[0, 1, 2], [2, 1, 0]])
    model.forward_backward(x, head, state.copy())
    model.evaluate(x, head, state.copy())
    assert widths == [(N * T, 3 + 2)] * 2
    widths.clear()
    one = head.copy()
    one[1, 2] = 9
    model.forward_backward(x, one, state.copy())
    assert widths == [(N * T, 5), (1, 1), (1, 5)]       # head; tail 1's projection and words


def test_bad_targets_and_cutoffs_are_one_line():
    with pytest.raises(ConfigError, match="needs cutoffs"):
        ModelConfig(vocab_size=V, softmax="adaptive")
    with pytest.raises(ConfigError, match="below the vocabulary size 11"):
        ModelConfig(vocab_size=V, softmax="adaptive", cutoffs="3,11")
    with pytest.raises(ConfigError, match="positive and increasing"):
        ModelConfig(vocab_size=V, softmax="adaptive", cutoffs="6,3")
    with pytest.raises(ConfigError, match="integers separated by commas"):
        ModelConfig(vocab_size=V, softmax="adaptive", cutoffs="3;6")
    with pytest.raises(ConfigError, match="tie_weights needs softmax = full"):
        ModelConfig(vocab_size=V, softmax="adaptive", cutoffs="3", embed=5, hidden=5,
                    tie_weights=True)
    with pytest.raises(ConfigError, match="project hidden 5 to 0 units"):
        ModelConfig(vocab_size=V, hidden=5, softmax="adaptive", cutoffs="3,6", div_value=4)
    assert ModelConfig(vocab_size=V, softmax="adaptive", cutoffs=[3, 6]).cutoffs == "3,6"


def test_targets_outside_the_vocabulary(backend):
    model, x, y, state = make(backend, "lstm", 1)
    y[0, 0] = V
    with pytest.raises(ValueError, match=f"targets must lie in \\[0, {V}\\)"):
        model.evaluate(x, y, state)


# -- the kernels ------------------------------------------------------------------------------

def ragged(rng, widths, dtype):
    """A flat array of rows of the given widths (with gaps), its plan and the targets."""
    at, plan = 3, []
    for w in widths:
        plan.append((at, w, int(rng.integers(0, w))))
        at += w + 2
    flat = rng.normal(0, 3, at + 1).astype(dtype)
    return flat, np.array(plan, np.int64)


def test_ragged_xent_matches_naive(backend):
    rng = np.random.default_rng(0)
    widths = [5, 1, 9, 3, 3, 17] * (1 if simulated(backend) else 40)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        flat, plan = ragged(rng, widths, dtype)
        R = len(plan)
        ref = np.array([naive.cross_entropy_rows(flat[a:a + w][None].astype(np.float64),
                                                 [t])[0] for a, w, t in plan])
        got = backend.ragged_xent_rows(backend.from_host(flat), backend.indices(
            plan.reshape(-1)), R)
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)
        dev = backend.from_host(flat)
        total = backend.ragged_xent(dev, backend.indices(plan.reshape(-1)), R, 0.5, grad=True)
        assert abs(float(total) - ref.sum()) / ref.sum() < tol
        out = host(backend, dev)
        for a, w, t in plan:
            z = flat[a:a + w].astype(np.float64)
            want = 0.5 * np.exp(z - z.max()) / np.exp(z - z.max()).sum()
            want[t] -= 0.5
            np.testing.assert_allclose(out[a:a + w], want, rtol=0, atol=tol)
        gaps = np.ones(flat.size, bool)
        for a, w, _ in plan:
            gaps[a:a + w] = False
        np.testing.assert_array_equal(out[gaps], flat[gaps])      # between rows: untouched


def test_gather_and_scatter_rows(backend):
    rng = np.random.default_rng(1)
    src = rng.normal(size=(7, 3))
    rows = np.array([5, 0, 3], np.int64)
    out = backend.zeros((3, 3), np.float64)
    backend.gather_rows(backend.from_host(src), backend.indices(rows), out)
    np.testing.assert_array_equal(host(backend, out), src[rows])
    dst = backend.from_host(src)
    backend.scatter_add_rows(backend.from_host(src[:3]), backend.indices(rows), dst)
    want = src.copy()
    want[rows] += src[:3]
    np.testing.assert_array_equal(host(backend, dst), want)
