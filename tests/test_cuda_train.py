"""Training on "cuda" through rnnkit.train under Numba's CUDA simulator: one checkpoint format
for both backends. A resumed run on the same device is exact; a run trained on one backend
loads, generates and evaluates on the other, and resumes there within float tolerance.

Run with NUMBA_ENABLE_CUDASIM=1 (make test's second pass); a normal run skips the module.
"""
import numpy as np
import pytest

from numba.core.config import ENABLE_CUDASIM

from rnnkit.training import checkpoint
from rnnkit.corpus.reader import Corpus
from rnnkit.training.evaluate import evaluate_ids
from rnnkit.tools.generate import generate
from rnnkit.tools.load import load_model
from rnnkit.training.train import resume, train
from tests.tiny_run import make_corpus, tiny_config

pytestmark = pytest.mark.skipif(not ENABLE_CUDASIM, reason="runs under Numba's CUDA "
                                "simulator: NUMBA_ENABLE_CUDASIM=1 (make test's second pass)")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def config(corpus, device, steps, dropout=0.0):
    cfg = tiny_config(corpus, steps)
    cfg.train.device, cfg.train.eval_every, cfg.train.eval_batches = device, 3, 2
    cfg.model.hidden, cfg.model.dropout = 8, dropout   # one block: the persistent kernel
    return cfg


def latest(run):
    return checkpoint.load(run / "latest.h5")


def test_resume_on_the_device_is_exact(corpus, tmp_path):
    """Dropout (the device RNG's state), Adam's state and the carried state all resume."""
    train(config(corpus, "cuda", 6, dropout=0.2), tmp_path / "whole")
    train(config(corpus, "cuda", 3, dropout=0.2), tmp_path / "part")
    assert latest(tmp_path / "part").rng["bit_generator"] == "Philox4x32-10"
    resume(tmp_path / "part", {"train": {"max_steps": 6}})
    a, b = latest(tmp_path / "whole"), latest(tmp_path / "part")
    assert a.step == b.step == 6 and a.rng == b.rng
    for name in a.weights:
        np.testing.assert_array_equal(a.weights[name], b.weights[name])
    for name in a.optimizer["buffers"]:
        np.testing.assert_array_equal(a.optimizer["buffers"][name],
                                      b.optimizer["buffers"][name])


def test_a_cuda_run_loads_generates_and_evaluates_on_the_cpu(corpus, tmp_path):
    train(config(corpus, "cuda", 3), tmp_path / "run")
    path = tmp_path / "run" / "latest.h5"
    with Corpus(corpus) as c:
        ids = c.tokens("val", 0, 120)
    reports = {}
    for device in ("cpu", "cuda"):
        model, codec, _ = load_model(path, device=device)
        reports[device] = evaluate_ids(model, ids, N=2, T=8)
        text = "".join(generate(model, codec, length=20, prime="line", seed=3))
        assert text.startswith("line") and len(text) > 4
        greedy = "".join(generate(model, codec, length=20, prime="line", greedy=True))
        reports[device]["greedy"] = greedy
    assert reports["cpu"]["loss"] == pytest.approx(reports["cuda"]["loss"], rel=1e-5)
    assert reports["cpu"]["tokens"] == reports["cuda"]["tokens"]


@pytest.mark.parametrize("first,second", [("cuda", "cpu"), ("cpu", "cuda")])
def test_resume_on_the_other_device(corpus, tmp_path, first, second):
    """Three steps on one backend, three more on the other: within float32 tolerance of six
    on the first (without dropout, whose streams differ by backend)."""
    train(config(corpus, first, 6), tmp_path / "whole")
    train(config(corpus, first, 3), tmp_path / "part")
    resume(tmp_path / "part", {"train": {"max_steps": 6, "device": second}})
    a, b = latest(tmp_path / "whole"), latest(tmp_path / "part")
    assert b.step == 6 and b.config["train"]["device"] == second
    for name in a.weights:
        np.testing.assert_allclose(b.weights[name], a.weights[name], rtol=1e-3, atol=1e-4)
