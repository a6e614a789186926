import math

import pytest

from rnnkit.model.schedule import make_schedule


def test_constant_and_scale():
    s = make_schedule("constant", 0.1)
    assert s.lr(0, 0) == s.lr(1000, 7) == 0.1
    s.scale *= 0.5
    assert s.lr(5, 1) == pytest.approx(0.05)


def test_step_decays_every_k_epochs():
    s = make_schedule("step", 1.0, every=2, factor=0.5)
    assert [s.lr(0, e) for e in range(6)] == [1, 1, 0.5, 0.5, 0.25, 0.25]


def test_cosine_warmup_then_decay():
    s = make_schedule("cosine", 1.0, warmup=4, total=14, min_lr=0.1)
    assert [s.lr(t, 0) for t in range(4)] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert s.lr(4, 0) == pytest.approx(1.0)
    assert s.lr(9, 0) == pytest.approx(0.55)      # halfway: (1 + 0.1) / 2
    assert s.lr(14, 0) == pytest.approx(0.1)
    assert s.lr(100, 0) == pytest.approx(0.1)
    lrs = [s.lr(t, 0) for t in range(4, 15)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_plateau_halves_then_stops():
    s = make_schedule("plateau", 1.0, threshold=0.01, max_halvings=2)
    s.observe(5.0)
    assert s.lr(0, 0) == 1.0
    s.observe(4.0)                  # 20% better: keep
    assert s.lr(0, 0) == 1.0
    s.observe(3.99)                 # 0.25% better: halve
    assert s.lr(0, 0) == 0.5 and not s.stop
    s.observe(4.5)                  # worse: halve again
    assert s.lr(0, 0) == 0.25 and not s.stop
    s.observe(3.0)                  # compared with the best so far (3.99): fine
    assert s.lr(0, 0) == 0.25
    s.observe(3.0)                  # third plateau, max_halvings=2: stop
    assert s.stop and s.lr(0, 0) == 0.25


def test_plateau_ignores_nan_as_best():
    s = make_schedule("plateau", 1.0)
    s.observe(3.0)
    s.observe(math.nan)
    assert s.halvings == 1 and s.last == 3.0


@pytest.mark.parametrize("name,opts", [("constant", {}), ("step", dict(every=1)),
                                       ("cosine", dict(warmup=3, total=20)),
                                       ("plateau", dict(threshold=0.1, max_halvings=1))])
def test_state_dict_resume(name, opts):
    losses = [5, 4.9, 4.8, 4.0, 3.99, 3.98, 3.97]
    a = make_schedule(name, 0.5, **opts)
    want = []
    for t, v in enumerate(losses):
        want.append((a.lr(t, t // 2), a.stop))
        a.observe(v)
    b = make_schedule(name, 0.5, **opts)
    got = []
    for t, v in enumerate(losses[:3]):
        got.append((b.lr(t, t // 2), b.stop))
        b.observe(v)
    b.scale = b.scale  # nothing else carried over
    state = b.state_dict()
    assert all(isinstance(v, (str, int, float, bool)) for v in state.values())
    c = make_schedule(name, 0.5, **opts)
    c.load_state_dict(state)
    for t, v in enumerate(losses[3:], start=3):
        got.append((c.lr(t, t // 2), c.stop))
        c.observe(v)
    assert got == want


def test_bad_settings():
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule("linear", 0.1)
    with pytest.raises(ValueError, match="warmup"):
        make_schedule("cosine", 0.1, warmup=10, total=10)
    with pytest.raises(ValueError, match="> 0"):
        make_schedule("constant", 0.0)
    with pytest.raises(ValueError, match="not 'step'"):
        make_schedule("step", 0.1).load_state_dict(make_schedule("constant", 0.1).state_dict())


def test_step_with_start_is_zaremba():
    """lr 1 for 4 epochs, then halved every epoch (Zaremba et al. 2014, small model)."""
    s = make_schedule("step", 1.0, every=1, factor=0.5, start=4)
    assert [s.lr(0, e) for e in range(7)] == [1, 1, 1, 1, 0.5, 0.25, 0.125]


def test_every_schedule_builds_from_its_config_section():
    """The config's [schedule] section names a schedule and holds its options (schedule.py
    maps each, the one place that lists the schedules)."""
    from rnnkit.model.config import SCHEDULES, ScheduleConfig
    from rnnkit.model.schedule import from_config

    assert SCHEDULES == ("constant", "step", "cosine", "plateau")
    for name in SCHEDULES:
        assert from_config(ScheduleConfig(schedule=name, decay_steps=10), 0.1).name == name
    s = from_config(ScheduleConfig(schedule="step", lr_decay_every=2, lr_decay_factor=0.25), 1.0)
    assert (s.every, s.start, s.factor) == (2, 2, 0.25)
    s = from_config(ScheduleConfig(schedule="cosine", warmup=3, decay_steps=9, min_lr=0.01), 1.0)
    assert (s.warmup, s.total, s.min_ratio) == (3, 9, 0.01)
    s = from_config(ScheduleConfig(schedule="plateau", plateau_threshold=0.1, max_decays=2), 1.0)
    assert (s.threshold, s.factor, s.max_halvings) == (0.1, 0.5, 2)
