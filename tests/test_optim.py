"""Each fused optimizer against a plain numpy transcription of torch.optim's update, over
several steps, and clipping against its definition."""
import math

import numpy as np
import pytest

from rnnkit.optim import DEFAULTS, clip_gradients, make_optimizer


def reference(name, p, grads, **hyper):
    """torch.optim's for-loop update, written out in numpy (float64), one step per gradient."""
    h = {**DEFAULTS[name], **hyper}
    p = p.astype(np.float64).copy()
    lr, wd = h["lr"], h["weight_decay"]
    st = {}
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        if name == "sgd":
            if wd:
                g = g + wd * p
            if h["momentum"]:
                if t == 1:
                    st["buf"] = g.copy()
                else:
                    st["buf"] = h["momentum"] * st["buf"] + (1 - h["dampening"]) * g
                g = g + h["momentum"] * st["buf"] if h["nesterov"] else st["buf"]
            p = p - lr * g
        elif name in ("adam", "adamw"):
            if name == "adamw":
                p = p * (1 - lr * wd)
            elif wd:
                g = g + wd * p
            b1, b2 = h["beta1"], h["beta2"]
            st["m"] = st.get("m", 0 * p) * b1 + (1 - b1) * g
            st["v"] = st.get("v", 0 * p) * b2 + (1 - b2) * g * g
            mhat = st["m"] / (1 - b1 ** t)
            denom = np.sqrt(st["v"]) / math.sqrt(1 - b2 ** t) + h["eps"]
            p = p - lr * mhat / denom
        elif name == "rmsprop":
            if wd:
                g = g + wd * p
            a = h["alpha"]
            st["s"] = a * st.get("s", 0 * p) + (1 - a) * g * g
            if h["centered"]:
                st["ga"] = a * st.get("ga", 0 * p) + (1 - a) * g
                avg = np.sqrt(st["s"] - st["ga"] ** 2) + h["eps"]
            else:
                avg = np.sqrt(st["s"]) + h["eps"]
            if h["momentum"] > 0:
                st["buf"] = h["momentum"] * st.get("buf", 0 * p) + g / avg
                p = p - lr * st["buf"]
            else:
                p = p - lr * g / avg
        elif name == "adagrad":
            if wd:
                g = g + wd * p
            clr = lr / (1 + (t - 1) * h["lr_decay"])
            st["sum"] = st.get("sum", 0 * p + h["initial_accumulator_value"]) + g * g
            p = p - clr * g / (np.sqrt(st["sum"]) + h["eps"])
    return p


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
def test_update_matches_reference(name, hyper, dtype, tol):
    p, grads = _data(dtype)
    want = reference(name, p, grads, **hyper)
    opt = make_optimizer(name, p, **hyper)
    for g in grads:
        opt.step(g)
    assert p.dtype == dtype
    np.testing.assert_allclose(p, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("name,hyper", CASES)
def test_state_dict_resumes_exactly(name, hyper):
    p, grads = _data(np.float32)
    full = p.copy()
    opt = make_optimizer(name, full, **hyper)
    for g in grads:
        opt.step(g)

    part = p.copy()
    opt = make_optimizer(name, part, **hyper)
    for g in grads[:3]:
        opt.step(g)
    state = opt.state_dict()
    for buf in state["buffers"].values():
        assert isinstance(buf, np.ndarray)
    assert all(isinstance(v, (int, float, bool, str)) for v in state["hyper"].values())
    resumed = part.copy()
    opt2 = make_optimizer(name, resumed, **hyper)
    opt2.load_state_dict(state)
    for g in grads[3:]:
        opt2.step(g)
    np.testing.assert_array_equal(resumed, full)


def test_lr_can_change_between_steps():
    p, grads = _data(np.float64)
    q = p.copy()
    opt = make_optimizer("sgd", p, lr=0.1)
    opt.step(grads[0])
    opt.lr = 0.01
    opt.step(grads[1])
    np.testing.assert_allclose(p, q - 0.1 * grads[0] - 0.01 * grads[1])


def test_bad_settings_are_errors():
    p = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer("lbfgs", p)
    with pytest.raises(ValueError, match="unknown hyper"):
        make_optimizer("adam", p, momentum=0.9)
    with pytest.raises(ValueError, match="nesterov"):
        make_optimizer("sgd", p, nesterov=True)
    with pytest.raises(ValueError, match="grads must be"):
        make_optimizer("sgd", p).step(np.zeros(4, np.float64))
    with pytest.raises(ValueError, match="not 'sgd'"):
        make_optimizer("sgd", p).load_state_dict(make_optimizer("adam", p).state_dict())


def test_clip_norm():
    g = np.array([3.0, 4.0], np.float32)
    assert clip_gradients(g, max_norm=10.0) == pytest.approx(5.0)
    np.testing.assert_array_equal(g, [3.0, 4.0])
    assert clip_gradients(g, max_norm=1.0) == pytest.approx(5.0)
    np.testing.assert_allclose(g, [0.6, 0.8], rtol=1e-5)


def test_clip_value_then_norm_returns_preclip_norm():
    g = np.array([3.0, -4.0, 0.5], np.float64)
    norm = clip_gradients(g, max_value=1.0)
    assert norm == pytest.approx(math.sqrt(25.25))
    np.testing.assert_array_equal(g, [1.0, -1.0, 0.5])
    g = np.array([3.0, -4.0, 0.5], np.float64)
    clip_gradients(g, max_norm=1.0, max_value=1.0)
    np.testing.assert_allclose(np.linalg.norm(g), 1.0, rtol=1e-5)


def test_clip_keeps_nan_visible():
    g = np.array([1.0, np.nan, 2.0], np.float32)
    assert math.isnan(clip_gradients(g, max_norm=1.0, max_value=0.5))
    assert math.isnan(g[1])
    g = np.array([1.0, np.inf], np.float32)
    assert clip_gradients(g, max_norm=1.0) == math.inf
