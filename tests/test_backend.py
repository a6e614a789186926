"""Every backend against the oracle (tests/naive.py): whole models, gradients by float64 finite
differences, a training step, dropout, every optimizer, clipping, the loss and sampling.

The same tests run for each backend in BACKENDS: "cpu" always; "cuda" where a GPU or Numba's
CUDA simulator (NUMBA_ENABLE_CUDASIM=1, set before Python starts) is there. Shapes are
torch-rnn's test sizes, small enough for the simulator. The simulator runs each CUDA thread
as a Python thread, so there the finite differences check one entry of each array (the
first, middle or last, in turn from one array to the next; tests/test_cuda_kernels.py
compares every entry with the CPU's), and
the statistical tests draw fewer numbers with tolerances widened to the same five sigmas.
"""
import math

import numpy as np
import pytest

from rnnkit.backends import sampling
from rnnkit.backends import BackendError, get_backend
from rnnkit.model.network import Model, ModelConfig
from rnnkit.model.optim import DEFAULTS, clip_gradients, make_optimizer
from tests import naive

CELLS = ["rnn-tanh", "rnn-relu", "lstm", "gru"]
N, T, V, E, H = 2, 3, 7, 4, 5   # torch-rnn's test sizes
BACKENDS = ["cpu", "cuda"]


@pytest.fixture(params=BACKENDS, scope="module")
def backend(request):
    try:
        return get_backend(request.param)
    except BackendError as err:
        pytest.skip(str(err))


def host(backend, a):
    return backend.to_host(a)


def simulated(backend):
    """Whether kernels run in Numba's CUDA simulator (as Python: some cases shrink there)."""
    return getattr(backend, "simulator", False)


def entries(backend, size, k=0):
    """Flat indices the finite differences check: all, or under the simulator one, the first,
    middle or last as k (the array's place in its model) is 0, 1 or 2 modulo 3."""
    return [(0, size // 2, size - 1)[k % 3]] if simulated(backend) else None


def sigmas(p, n, floor):
    """Five standard deviations of a proportion p estimated from n draws, at least floor."""
    return max(floor, 5 * math.sqrt(p * (1 - p) / n))


def make(backend, cell, layers=1, dtype=np.float64, seed=0, **kw):
    cfg = ModelConfig(cell=cell, vocab_size=V, embed=kw.pop("embed", E), hidden=H,
                      layers=layers, **kw)
    model = Model(cfg, dtype=dtype, seed=seed, backend=backend)
    rng = np.random.default_rng(seed + 1)
    backend.copy(model.params, rng.uniform(-0.5, 0.5, model.params.shape).astype(dtype))
    x = rng.integers(0, V, (N, T))
    y = rng.integers(0, V, (N, T))
    arrays = {name: rng.uniform(-0.5, 0.5, (layers, N, H)) for name in model.cell.state}
    return model, x, y, model.state_from_host(arrays)


def weights(model):
    """Host copies of the named parameters."""
    return {k: host(model.backend, v) for k, v in model.p.items()}


def rel_error(a, b, only=None):
    """torch-rnn's elementwise relative error, max over entries (or over the flat indices
    `only`). Entries that are zero in both (unused embedding rows) meet the floor: there the
    bound is 1e-12 absolute."""
    if only is not None:
        a, b = np.ravel(a)[only], np.ravel(b)[only]
    return float(np.max(np.abs(a - b) / np.maximum(1e-6, np.abs(a) + np.abs(b))))


def numeric_grad(f, get, put, eps=1e-3, only=None):
    """Five-point central differences of f() in every entry of the array that get() returns
    and put(array) writes back (or in the flat indices `only`; the others stay 0): truncation
    error O(eps^4), rounding ~1e-16 / eps."""
    base = get().copy()
    grad = np.zeros_like(base)
    flat, gflat = base.reshape(-1), grad.reshape(-1)
    for i in range(flat.size) if only is None else only:
        old = flat[i]
        values = []
        for step in (2, 1, -1, -2):
            flat[i] = old + step * eps
            put(base)
            values.append(f())
        flat[i] = old
        put(base)
        gflat[i] = (-values[0] + 8 * values[1] - 8 * values[2] + values[3]) / (12 * eps)
    return grad


def fd_errors(model, x, y, state, seed=None):
    """Relative errors of every analytic gradient against finite differences of the loss (with
    dropout: the same masks in every evaluation, from the same seed)."""
    b = model.backend

    def rng():
        return None if seed is None else b.rng(seed)

    def loss():
        if seed is None:                # the same mean loss, without the backward pass
            total, count, _ = model.evaluate(x, y, state)
            return total / count
        return model.forward_backward(x, y, state.copy(), rng())[0]

    model.forward_backward(x, y, state.copy(), rng())
    analytic = {k: host(b, v) for k, v in model.g.items()}
    dstate = {k: host(b, v) for k, v in model.dstate.arrays.items()}
    errors = {}
    for k, (name, w) in enumerate(model.p.items()):
        only = entries(b, w.size, k)
        errors[name] = rel_error(analytic[name], numeric_grad(
            loss, lambda w=w: host(b, w), lambda a, w=w: b.copy(w, a), only=only), only)
    for k, (name, a) in enumerate(state.arrays.items(), len(model.p)):
        only = entries(b, a.size, k)
        errors[f"{name}0"] = rel_error(dstate[name], numeric_grad(
            loss, lambda a=a: host(b, a), lambda v, a=a: b.copy(a, v), only=only), only)
    return errors


def host_state(model, state):
    return {k: host(model.backend, v) for k, v in state.arrays.items()}


# -- the model against the oracle ------------------------------------------------------------

@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_forward_matches_naive(backend, cell, layers):
    model, x, y, state = make(backend, cell, layers)
    s = host_state(model, state)
    loss, new = model.forward_backward(x, y, state.copy())
    ref_loss, ref_h, ref_c = naive.model_loss(model.cfg, weights(model), x, y, s["h"], s.get("c"))
    assert abs(loss - ref_loss) < 1e-12
    new = host_state(model, new)
    np.testing.assert_allclose(new["h"], ref_h, rtol=0, atol=1e-12)
    if cell == "lstm":
        np.testing.assert_allclose(new["c"], ref_c, rtol=0, atol=1e-12)
    total, count, _ = model.evaluate(x, y, state)
    assert count == N * T and abs(total / count - ref_loss) < 1e-12


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", CELLS)
def test_gradients_finite_differences(backend, cell, layers):
    model, x, y, state = make(backend, cell, layers)
    errors = fd_errors(model, x, y, state)
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gradients_with_dropout_and_tied_weights(backend, cell):
    model, x, y, state = make(backend, cell, 2, embed=H, tie_weights=True, dropout=0.3)
    errors = fd_errors(model, x, y, state, seed=5)
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("cell", CELLS)
def test_input_embedding_gradient(backend, cell):
    model, x, y, state = make(backend, cell, 2)
    s = host_state(model, state)
    model.forward_backward(x, y, state.copy())
    p = weights(model)
    emb = p["embed"][x.T].copy()
    f = lambda: naive.model_loss(model.cfg, p, x, y, s["h"], s.get("c"), emb=emb)[0]  # noqa
    numeric = numeric_grad(f, lambda: emb, lambda a: emb.__setitem__(Ellipsis, a))
    assert rel_error(host(backend, model.dinputs), numeric) < 1e-6


def test_gradient_on_the_final_state(backend):
    """A gradient arriving on the final state (dstate) flows back through every step."""
    model, x, y, state = make(backend, "lstm", 2)
    rng = np.random.default_rng(3)
    dh, dc = rng.normal(size=(2, N, H)), rng.normal(size=(2, N, H))
    dstate = model.state_from_host({"h": dh, "c": dc})

    def objective():
        lo, new = model.forward_backward(x, y, state.copy())
        new = host_state(model, new)
        return lo + np.sum(new["h"] * dh) + np.sum(new["c"] * dc)

    model.forward_backward(x, y, state.copy(), dstate=dstate)
    analytic = host(backend, model.g["l1.w_h"])
    w = model.p["l1.w_h"]
    only = entries(backend, w.size)
    numeric = numeric_grad(objective, lambda: host(backend, w), lambda a: backend.copy(w, a),
                           only=only)
    assert rel_error(analytic, numeric, only) < 1e-6


@pytest.mark.parametrize("cell", CELLS)
def test_float32_agrees_with_float64(backend, cell):
    m64, x, y, state = make(backend, cell, 2)
    m32 = Model(m64.cfg, dtype=np.float32, backend=backend)
    backend.copy(m32.params, host(backend, m64.params).astype(np.float32))
    s32 = m32.state_from_host(host_state(m64, state))
    l64, n64 = m64.forward_backward(x, y, state)
    l32, n32 = m32.forward_backward(x, y, s32)
    assert abs(l32 - l64) / abs(l64) < 1e-5
    g64, g32 = host(backend, m64.grads), host(backend, m32.grads)
    assert np.abs(g32 - g64).max() / np.abs(g64).max() < 1e-5
    np.testing.assert_allclose(host(backend, n32.h), host(backend, n64.h), atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_sampling_steps_match_the_batched_forward(backend, cell):
    """Forward with T = 1, token by token, gives the naive model's logits and the state a
    whole batch reaches."""
    model, x, _, state = make(backend, cell, 2)
    s = host_state(model, state)
    ref_logits, ref_h, _ = naive.model_logits(model.cfg, weights(model), x, s["h"], s.get("c"))
    ref_logits = ref_logits.reshape(T, N, V)
    stepped = state.copy()
    for t in range(T):
        logits = host(backend, model.step(x[:, t], stepped))
        np.testing.assert_allclose(logits, ref_logits[t], rtol=0, atol=1e-12)
    np.testing.assert_allclose(host(backend, stepped.h), ref_h, rtol=0, atol=1e-12)


# -- a training step, dropout ----------------------------------------------------------------

def test_training_step(backend):
    """forward, backward, clipping and Adam against the same on the host from the gradient."""
    model, x, y, state = make(backend, "lstm", 2)
    before = host(backend, model.params)
    opt = make_optimizer("adam", model.params, backend, lr=0.01)
    model.forward_backward(x, y, state)
    grads = host(backend, model.grads)
    norm = clip_gradients(model.grads, max_norm=0.5, backend=backend)
    clipped, ref_norm = naive.clip(grads, max_norm=0.5)
    assert norm == pytest.approx(ref_norm, rel=1e-12)
    opt.step(model.grads)
    want = naive.optimizer_steps("adam", before, [clipped], {**DEFAULTS["adam"], "lr": 0.01})
    np.testing.assert_allclose(host(backend, model.params), want, rtol=1e-12, atol=1e-12)


def test_dropout_statistics_and_repeats(backend):
    shape, p = (20, 20, 30) if simulated(backend) else (50, 40, 30), 0.3
    tol = sigmas(p, np.prod(shape), 0.01)
    for dtype in (np.float32, np.float64):
        x = backend.from_host(np.ones(shape, dtype))
        mask, out = backend.zeros(shape, dtype), backend.zeros(shape, dtype)
        rng = backend.rng(7)
        saved = backend.rng_state(rng)
        backend.dropout(x, p, rng, mask, out)
        first = host(backend, out)
        kept = first != 0
        assert abs(kept.mean() - (1 - p)) < tol
        np.testing.assert_allclose(first[kept], 1 / (1 - p), rtol=1e-6)
        np.testing.assert_array_equal(first, host(backend, mask))
        backend.dropout(x, p, rng, mask, out)
        second = host(backend, out)
        assert (second != first).any()              # the RNG moved on
        assert abs((second != 0).mean() - (1 - p)) < tol
        backend.set_rng_state(rng, saved)
        backend.dropout(x, p, rng, mask, out)
        np.testing.assert_array_equal(host(backend, out), first)   # its state restores it


def test_model_dropout_zero_is_identity_and_seeded_runs_repeat(backend):
    model, x, y, state = make(backend, "lstm", 2)
    a, _ = model.forward_backward(x, y, state.copy(), None)
    ga = host(backend, model.grads)
    b, _ = model.forward_backward(x, y, state.copy(), backend.rng(9))
    assert a == b and np.array_equal(ga, host(backend, model.grads))
    model, x, y, state = make(backend, "gru", 2, dropout=0.5, dtype=np.float32)
    runs = [model.forward_backward(x, y, state.copy(), backend.rng(9))[0] for _ in range(2)]
    assert runs[0] == runs[1]
    assert model.forward_backward(x, y, state.copy(), backend.rng(10))[0] != runs[0]


# -- optimizers and clipping -----------------------------------------------------------------

CASES = [
    ("sgd", {}),
    ("sgd", dict(lr=0.1, momentum=0.9)),
    ("sgd", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    ("sgd", dict(lr=0.1, momentum=0.5, dampening=0.3)),
    ("adam", {}),
    ("adam", dict(lr=2e-3, beta1=0.8, beta2=0.99, weight_decay=0.01)),
    ("adamw", {}),
    ("adamw", dict(lr=0.01, weight_decay=0.1, eps=1e-6)),
    ("rmsprop", {}),
    ("rmsprop", dict(momentum=0.9, centered=True, weight_decay=1e-3)),
    ("rmsprop", dict(alpha=0.9, centered=True)),
    ("adagrad", {}),
    ("adagrad", dict(lr_decay=0.1, weight_decay=1e-2, initial_accumulator_value=0.1)),
]


def _data(dtype, P=257, steps=6, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.standard_normal(P).astype(dtype)
    grads = [rng.standard_normal(P).astype(dtype) for _ in range(steps)]
    return p, grads


@pytest.mark.parametrize("name,hyper", CASES)
@pytest.mark.parametrize("dtype,tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_optimizer_matches_reference(backend, name, hyper, dtype, tol):
    p, grads = _data(dtype)
    want = naive.optimizer_steps(name, p, grads, {**DEFAULTS[name], **hyper})
    params = backend.from_host(p)
    opt = make_optimizer(name, params, backend, **hyper)
    for g in grads:
        opt.step(backend.from_host(g))
    got = host(backend, params)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("name,hyper", CASES)
def test_optimizer_state_dict_resumes_exactly(backend, name, hyper):
    p, grads = _data(np.float32)
    full = backend.from_host(p)
    opt = make_optimizer(name, full, backend, **hyper)
    for g in grads:
        opt.step(backend.from_host(g))
    part = backend.from_host(p)
    opt = make_optimizer(name, part, backend, **hyper)
    for g in grads[:3]:
        opt.step(backend.from_host(g))
    state = opt.state_dict()
    assert all(isinstance(buf, np.ndarray) for buf in state["buffers"].values())
    assert all(isinstance(v, (int, float, bool, str)) for v in state["hyper"].values())
    resumed = backend.from_host(host(backend, part))
    opt2 = make_optimizer(name, resumed, backend, **hyper)
    opt2.load_state_dict(state)
    for g in grads[3:]:
        opt2.step(backend.from_host(g))
    np.testing.assert_array_equal(host(backend, resumed), host(backend, full))


@pytest.mark.parametrize("max_norm,max_value", [(10.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)])
def test_clipping(backend, max_norm, max_value):
    g = np.array([3.0, -4.0, 0.5, 0.25])
    want, want_norm = naive.clip(g, max_norm, max_value)
    d = backend.from_host(g)
    assert clip_gradients(d, max_norm, max_value, backend) == pytest.approx(want_norm)
    np.testing.assert_allclose(host(backend, d), want, rtol=1e-12)


def test_clipping_keeps_nan_visible(backend):
    g = backend.from_host(np.array([1.0, np.nan, 2.0], np.float32))
    assert math.isnan(clip_gradients(g, max_norm=1.0, max_value=0.5, backend=backend))
    assert math.isnan(host(backend, g)[1])
    g = backend.from_host(np.array([1.0, np.inf], np.float32))
    assert clip_gradients(g, max_norm=1.0, backend=backend) == math.inf
    assert not backend.all_finite(g)


# -- the loss, the embedding, sampling -------------------------------------------------------

def test_softmax_xent_matches_naive(backend):
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=8.0, size=(13, 100))
    targets = rng.integers(0, 100, 13)
    ref = naive.cross_entropy(logits, targets)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(13), targets] -= 1.0
    t = backend.ids(targets[None, :]).reshape(-1)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-6)):
        lg = backend.from_host(logits.astype(dtype))
        assert abs(backend.softmax_xent(lg, t) - ref) / ref < tol
        lg = backend.from_host(logits.astype(dtype))
        total = backend.softmax_xent(lg, t, scale=0.5, grad=True)
        assert abs(total - ref) / ref < tol
        assert np.abs(host(backend, lg) - 0.5 * p).max() < tol
    huge = backend.from_host(np.array([[1e4, 0.0, -1e4]], np.float32))
    assert backend.softmax_xent(huge, backend.ids(np.array([[1]])).reshape(-1)) == 1e4


def test_softmax_xent_rows_matches_naive(backend):
    rng = np.random.default_rng(1)
    M, V = 150, 37                  # rows enough for several blocks of the parallel driver
    logits = rng.normal(scale=8.0, size=(M, V))
    targets = rng.integers(0, V, M)
    ref = naive.cross_entropy_rows(logits, targets)
    t = backend.ids(targets[None, :]).reshape(-1)
    for dtype, tol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        rows = backend.softmax_xent_rows(backend.from_host(logits.astype(dtype)), t)
        assert isinstance(rows, np.ndarray) and rows.shape == (M,) and rows.dtype == np.float64
        # float32: an absolute error of a few ulps of the logits (~20) where a loss is ~0
        np.testing.assert_allclose(rows, ref, rtol=tol, atol=tol)
        total = backend.softmax_xent(backend.from_host(logits.astype(dtype)), t)
        assert abs(rows.sum() - total) <= 1e-12 * abs(total)     # the same numbers, summed
    huge = backend.from_host(np.array([[1e4, 0.0, -1e4], [0.0, 0.0, 0.0]], np.float32))
    rows = backend.softmax_xent_rows(huge, backend.ids(np.array([[1, 2]])).reshape(-1))
    np.testing.assert_allclose(rows, [1e4, math.log(3)], rtol=1e-6)
    with pytest.raises(ValueError):
        backend.softmax_xent_rows(backend.from_host(logits), backend.ids(np.full((1, M), V)).reshape(-1))


def test_embedding_scatter_accumulates_repeats(backend):
    table = backend.from_host(np.arange(12.0).reshape(4, 3))
    x = np.array([[1, 3], [1, 1]])            # (N, T): ids (T, N) = [[1, 1], [3, 1]]
    ids = backend.ids(x)
    out = backend.zeros((2, 2, 3), np.float64)
    backend.embed_forward(table, ids, out)
    np.testing.assert_array_equal(host(backend, out), np.arange(12.0).reshape(4, 3)[x.T])
    dtable = backend.zeros((4, 3), np.float64)
    backend.embed_backward(ids, backend.from_host(np.ones((2, 2, 3))), dtable)
    np.testing.assert_array_equal(host(backend, dtable)[:, 0], [0, 3, 0, 1])


def test_sampling_follows_the_distribution_and_the_seed(backend):
    probs = np.array([0.1, 0.2, 0.3, 0.4])
    rows = 2000 if simulated(backend) else 20000
    atol = sigmas(0.5, rows, 0.015)
    logits = backend.from_host(np.log(np.tile(probs, (rows, 1))).astype(np.float32))
    draws = backend.sample(logits, backend.rng(0))
    np.testing.assert_allclose(np.bincount(draws, minlength=4) / rows, probs, atol=atol)
    np.testing.assert_array_equal(draws, backend.sample(logits, backend.rng(0)))
    assert (backend.sample(logits, backend.rng(1), greedy=True) == 3).all()
    assert set(backend.sample(logits, backend.rng(1), top_k=1)) == {3}
    for kw in (dict(top_k=2), dict(top_p=0.65), dict(top_p=0.75), dict(temperature=0.5)):
        want = sampling.probabilities(np.log(probs)[None], **kw)[0]
        got = np.bincount(backend.sample(logits, backend.rng(2), **kw), minlength=4) / rows
        np.testing.assert_allclose(got, want, atol=atol)


def test_rng_state_of_another_backend_seeds_a_stream(backend):
    """Its own state restores exactly; another backend's (the CPU's PCG64 on a GPU, the GPU's
    Philox on the CPU: a checkpoint moved between devices) seeds the same stream each time."""
    x = backend.from_host(np.ones(64))
    mask, out = backend.zeros(64, np.float64), backend.zeros(64, np.float64)

    def masks(state):
        rng = backend.rng(0)
        backend.set_rng_state(rng, state)
        backend.dropout(x, 0.5, rng, mask, out)
        return host(backend, mask)

    own = backend.rng_state(backend.rng(3))
    other = (np.random.default_rng(3).bit_generator.state
             if own["bit_generator"] != "PCG64" else
             {"bit_generator": "Philox4x32-10", "key": 3, "counter": 0})
    np.testing.assert_array_equal(masks(other), masks(other))
    assert not np.array_equal(masks(other), masks(own))
    rng = backend.rng(0)
    backend.set_rng_state(rng, own)
    assert backend.rng_state(rng) == own


def test_state_round_trips_through_the_host(backend):
    """A state goes to the host and back unchanged, as copies: the arrays a checkpoint holds
    and those the model runs on never share memory."""
    model, _, _, state = make(backend, "lstm", 2)
    arrays = host_state(model, state)
    restored = model.state_from_host(arrays)
    for a in arrays.values():
        a[...] = 0.0                    # the host copies change; the states must not
    again, before = host_state(model, restored), host_state(model, state)
    assert set(again) == set(before) == {"h", "c"}
    for k in before:
        assert np.abs(before[k]).max() > 0
        np.testing.assert_array_equal(again[k], before[k])


@pytest.mark.parametrize("name,hyper", CASES)
def test_an_optimizer_keeps_at_most_its_max_buffers(backend, name, hyper):
    """max_buffers, which the memory check before a run counts, bounds what it allocates."""
    from rnnkit.model.optim import OPTIMIZERS

    opt = make_optimizer(name, backend.from_host(np.zeros(5, np.float32)), backend, **hyper)
    assert len(opt.buffers) <= OPTIMIZERS[name].max_buffers


def test_load_weights_checks_every_shape_before_copying(backend):
    """The one place where checkpoint weights enter a model (load, resume, --init-from)."""
    from rnnkit.model.network import WeightsMismatch

    model, _, _, _ = make(backend, "gru", 2)
    before = host(backend, model.params)
    given = {k: np.full(v.shape, 0.5) for k, v in weights(model).items()}
    given["l1.b_hn"] = np.zeros(H + 1)          # the last parameter in storage order
    with pytest.raises(WeightsMismatch, match="l1.b_hn"):
        model.load_weights(given)
    np.testing.assert_array_equal(host(backend, model.params), before)    # nothing copied
    del given["l1.b_hn"]
    with pytest.raises(WeightsMismatch, match="l1.b_hn"):
        model.load_weights(given)
    given["l1.b_hn"] = np.full(H, 0.5)
    model.load_weights(given)
    assert (host(backend, model.params) == 0.5).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gather_streams_reorders_the_state(backend, dtype):
    """Beam search's reorder: dst[:, n] = src[:, rows[n]], from as many streams or from one."""
    rng = np.random.default_rng(3)
    L, K, H_ = 2, 4, 3
    src = rng.standard_normal((L, K, H_)).astype(dtype)
    rows = np.array([2, 2, 0, 3])
    dst = backend.zeros((L, K, H_), dtype)
    backend.gather_streams(dst, backend.from_host(src), rows)
    np.testing.assert_array_equal(host(backend, dst), src[:, rows])
    one = backend.from_host(src[:, 1:2].copy())
    backend.gather_streams(dst, one, np.zeros(K, np.int64))
    np.testing.assert_array_equal(host(backend, dst), np.repeat(src[:, 1:2], K, axis=1))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_a_shorter_batch_runs_in_views_of_a_longer_ones_buffers(backend, cell):
    """Model.workspace: after (N, T), an (N, T - 1) batch takes views (no new arrays) and
    gives what a fresh model gives, gradients included."""
    model, x, y, state = make(backend, cell, 2)
    fresh, *_ = make(backend, cell, 2)
    model.forward_backward(x, y, state)
    loss, _ = model.forward_backward(x[:, 1:], y[:, 1:], state)
    want, _ = fresh.forward_backward(x[:, 1:], y[:, 1:], state)
    assert loss == want and [key[0] for key in model._bases] == [N]
    np.testing.assert_array_equal(host(backend, model.grads), host(backend, fresh.grads))
    rows, _ = model.evaluate_tokens(x[:, :1], y[:, :1], state)
    np.testing.assert_array_equal(rows, fresh.evaluate_tokens(x[:, :1], y[:, :1], state)[0])


def test_memory_left_is_the_tightest_of_the_cgroups_and_the_address_space(monkeypatch):
    # before: the limit of the cgroup hierarchy's root only, as if nothing in the group used
    # any, and no ulimit -v: a SLURM job's own limit was not seen (a kill, not a refusal)
    import builtins
    import io
    import resource

    from rnnkit.backends import cpu

    files = {"/proc/meminfo": "MemAvailable:   16777216 kB\n",          # 16 GiB
             "/sys/fs/cgroup/job/memory.max": f"{8 << 30}\n",
             "/sys/fs/cgroup/job/memory.current": f"{3 << 30}\n",
             "/sys/fs/cgroup/memory.max": "max\n"}

    def fake(path, *args, **kwargs):
        if path in files:
            return io.StringIO(files[path])
        if str(path).startswith(("/sys/fs/cgroup", "/proc/meminfo")):
            raise FileNotFoundError(path)
        return builtins.open(path, *args, **kwargs)

    unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
    monkeypatch.setattr(cpu, "open", fake, raising=False)
    monkeypatch.setattr(cpu, "cgroup_folders", lambda controller: [
        ("/sys/fs/cgroup/job", True), ("/sys/fs/cgroup", True)])
    monkeypatch.setattr(cpu.resource, "getrlimit", lambda which: unlimited)
    assert cpu.CPUBackend().available_bytes() == 5 << 30
    files["/sys/fs/cgroup/job/memory.max"] = "max\n"
    assert cpu.CPUBackend().available_bytes() == 16 << 30
    monkeypatch.setattr(cpu.resource, "getrlimit", lambda which: (4 << 30, 4 << 30))
    monkeypatch.setattr(cpu, "_status_bytes", lambda field: 1 << 30)
    assert cpu.CPUBackend().available_bytes() == 3 << 30
