"""Skipping the embedding rows a step leaves at zero (model/sparse_rows.py): the same bits as
zeroing, clipping and updating every number."""
import numpy as np
import pytest

from rnnkit.kernels.cpu import optim
from rnnkit.model import sparse_rows
from rnnkit.model.network import Model, ModelConfig
from rnnkit.model.optim import clip_gradients, make_optimizer
from rnnkit.training import checkpoint
from rnnkit.training.train import train
from tests.tiny_run import make_corpus, tiny_config

A = optim.ALIGN


def zero_outside(g, ranges):
    out = np.zeros_like(g)
    for s, e in ranges:
        out[s:e] = g[s:e]
    return out


def random_ranges(rng, P):
    """Sorted, disjoint runs on multiples of ALIGN (the last may stop at P)."""
    edges = np.unique(rng.integers(0, -(-P // A) + 1, 8)) * A
    edges = np.minimum(edges, P)
    pairs = [(s, e) for s, e in zip(edges[:-1:2], edges[1::2]) if e > s]
    return np.array(pairs or [(0, 0)], np.int64).reshape(-1, 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("P", [0, 1, 63, 64, 200, 1000, 4099, 50001])
def test_sum_squares_in_has_the_dense_bits(dtype, P):
    rng = np.random.default_rng(P)
    g = rng.standard_normal(P).astype(dtype)
    whole = np.array([[0, -(-P // A) * A]], np.int64)
    assert optim.sum_squares_in(g, whole) == optim.sum_squares(g)
    for _ in range(5):
        ranges = random_ranges(rng, P)
        z = zero_outside(g, ranges)
        # the tail (past the last whole block) counts whether in a range or not
        assert optim.sum_squares_in(z, ranges) == optim.sum_squares(z)
        # a whole block outside the runs is not read at all
        free = [k * A for k in range(P // A)
                if not any(s < (k + 1) * A and k * A < e for s, e in ranges)]
        if free:
            w = z.copy()
            w[free[0]] = 1e30
            assert optim.sum_squares_in(w, ranges) == optim.sum_squares(z)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ranged_updates_match_the_dense_ones(dtype):
    rng = np.random.default_rng(1)
    P = 3000
    s = dtype(0.37)
    for _ in range(4):
        ranges = random_ranges(rng, P)
        g = zero_outside(rng.standard_normal(P).astype(dtype), ranges)
        p = rng.standard_normal(P).astype(dtype)
        a, b = g.copy(), g.copy()
        optim.scale(a, s)
        optim.scale_in(b, s, ranges)
        assert a.tobytes() == b.tobytes()
        optim.clamp(a, dtype(-0.5), dtype(0.5))
        optim.clamp_in(b, dtype(-0.5), dtype(0.5), ranges)
        assert a.tobytes() == b.tobytes()
        q, r = p.copy(), p.copy()
        optim.sgd_update(q, a, np.zeros(0, dtype), dtype(0.7), dtype(0), dtype(1), dtype(0),
                         False, True)
        optim.sgd_in(r, b, dtype(0.7), ranges)
        assert q.tobytes() == r.tobytes()
        c = np.full(P, 5, dtype)
        optim.fill_in(c, dtype(0), ranges)
        inside = zero_outside(np.ones(P, bool), ranges)
        assert (c[inside] == 0).all() and (c[~inside] == 5).all()


def test_embedding_ranges_cover_the_named_rows_and_all_after_the_table():
    V, E, P = 1000, 24, 1000 * 24 + 777
    ids = np.array([[5, 6, 999], [5, 300, 0]])
    ranges = sparse_rows.embedding_ranges(ids, V, E, P, A)
    assert ranges.dtype == np.int64 and ranges.flags.c_contiguous
    starts, stops = ranges[:, 0], ranges[:, 1]
    assert (starts % A == 0).all() and ((stops % A == 0) | (stops == P)).all()
    assert (stops > starts).all() and (starts[1:] > stops[:-1]).all()    # merged, in order
    covered = zero_outside(np.ones(P, bool), ranges)
    named = np.zeros(P, bool)
    for row in (0, 5, 6, 300, 999):
        named[row * E:(row + 1) * E] = True
    named[V * E:] = True
    assert covered[named].all()
    assert covered.sum() < named.sum() + 2 * A * len(ranges)
    assert sparse_rows.embedding_ranges(np.arange(V), V, E, P, A) is None     # every row


def steps(sparse, optimizer, dtype, clip, **hyper):
    """Six training steps on different ids; each step's loss, norm, grads and params."""
    cfg = ModelConfig(cell="lstm", vocab_size=400, embed=16, hidden=8, layers=2)
    model = Model(cfg, dtype=dtype)
    model.sparse_embedding = sparse
    opt = make_optimizer(optimizer, model.params, **hyper)
    rng = np.random.default_rng(3)
    state, out = model.init_state(3), []
    for _ in range(6):
        x, y = rng.integers(0, 400, (3, 5)), rng.integers(0, 400, (3, 5))
        loss, state = model.forward_backward(x, y, state)
        assert (model.grad_ranges is not None) == sparse
        norm = clip_gradients(model.grads, *clip, ranges=model.grad_ranges)
        opt.step(model.grads, model.grad_ranges)
        out.append((loss, norm, model.grads.tobytes(), model.params.tobytes()))
    return out


@pytest.mark.parametrize("optimizer, hyper", [("sgd", dict(lr=0.5)),
                                              ("sgd", dict(lr=0.5, momentum=0.9)),
                                              ("adam", dict(lr=0.01))])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("clip", [(0.05, 0.0), (0.05, 0.001), (0.0, 0.0)])
def test_sparse_steps_give_the_dense_bits(optimizer, hyper, dtype, clip):
    assert steps(True, optimizer, dtype, clip, **hyper) == \
        steps(False, optimizer, dtype, clip, **hyper)


def test_tied_weights_keep_every_row():
    model = Model(ModelConfig(cell="gru", vocab_size=400, embed=8, hidden=8, layers=1,
                              tie_weights=True))
    model.sparse_embedding = True
    x = np.zeros((2, 3), np.int64)
    model.forward_backward(x, x, model.init_state(2))
    assert model.grad_ranges is None    # the output layer writes every row


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_training_run_skips_rows_with_the_same_weights(tmp_path, monkeypatch, optimizer):
    corpus = make_corpus(tmp_path, level="word")
    used = []

    def counted(*a, **k):
        ranges = real(*a, **k)
        used.append(ranges is not None)
        return ranges

    real = sparse_rows.embedding_ranges
    weights = []
    for name, fn in (("sparse", counted), ("dense", lambda *a, **k: None)):
        monkeypatch.setattr(sparse_rows, "embedding_ranges", fn)
        cfg = tiny_config(corpus, steps=12)
        cfg.model.embed = 64
        cfg.optim.optimizer, cfg.optim.clip_norm = optimizer, 0.1
        train(cfg, tmp_path / name)
        weights.append(checkpoint.load(tmp_path / name / "latest.h5").weights)
    assert used and all(used)
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert weights[0][key].tobytes() == weights[1][key].tobytes(), key


def test_ranges_off_the_grid_are_refused():
    from rnnkit.backends.cpu import CPUBackend
    g = np.zeros(1000, np.float32)
    for bad in ([[1, 64]], [[0, 1064]], [[-64, 0]]):
        with pytest.raises(ValueError, match="ranges must lie"):
            CPUBackend().sum_squares(g, np.array(bad, np.int64))
