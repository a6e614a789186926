"""An adaptive softmax through the commands: train, eval, score, generate, info, export to
PyTorch's AdaptiveLogSoftmaxWithLoss (its log-probabilities match) and import back; and
checkpoints made before it still load with the full softmax."""
import importlib.util
import json
import os
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rnnkit.training import checkpoint
from rnnkit.training.checkpoint import Checkpoint
from rnnkit.cli.main import main
from rnnkit.model.config import TrainConfig
from rnnkit.training.evaluate import evaluate_ids
from rnnkit.tools.load import load_model
from rnnkit.model.network import Model
from rnnkit.corpus.tokenize import Vocabulary
from tests.tiny_run import make_corpus

needs_safetensors = pytest.mark.skipif(importlib.util.find_spec("safetensors") is None,
                                       reason="needs the safetensors extra")
SMALL = ["--batch-size", "4", "--seq-len", "8", "--hidden", "16", "--embed", "8", "--layers",
         "1", "--threads", "1", "--quiet"]
ADAPTIVE = ["--softmax", "adaptive", "--cutoffs", "10,30", "--div-value", "2"]
V, E, H, L = 40, 6, 8, 2
TOKENS = ["<unk>", "<eos>"] + [f"w{i}" for i in range(V - 2)]


def invoke(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("adaptive")
    corpus = make_corpus(folder, "word")
    result = invoke("train", corpus, "-o", folder / "run", *SMALL, *ADAPTIVE, "--max-steps",
                    "30", "--eval-every", "10", "--lr", "0.02")
    assert result.exit_code == 0, result.output
    assert "lstm 1x16, adaptive softmax (cutoffs 10,30, div 2), " in result.stderr
    return folder / "run", corpus


def test_train_eval_score_generate_info(run):
    folder, corpus = run
    ck = checkpoint.load(folder / "latest.h5")
    model_cfg = ck.config["model"]
    assert (model_cfg["softmax"], model_cfg["cutoffs"], model_cfg["div_value"]) == \
        ("adaptive", "10,30", 2.0)
    assert "out.tail1.w" in ck.weights and "out.w" not in ck.weights
    assert math.isfinite(ck.best_val_loss)
    result = invoke("eval", folder / "latest.h5", corpus, "--split", "val")
    assert result.exit_code == 0, result.output
    generated = invoke("generate", folder / "latest.h5", "--length", "30", "--seed", "3")
    assert generated.exit_code == 0 and len(generated.stdout.split()) >= 10, generated.output
    scored = invoke("score", folder / "latest.h5", input="the quick brown fox\nover it .\n")
    assert scored.exit_code == 0, scored.output
    assert all(math.isfinite(float(line.split("\t")[0])) for line in
               scored.stdout.splitlines())
    info = invoke("info", folder / "latest.h5")
    assert "adaptive softmax (cutoffs 10,30, div 2), " in info.output, info.output


def test_eval_is_the_mean_of_every_tokens_exact_log_probability(run):
    """The loss eval reports is -log p(target) under the whole normalised distribution."""
    folder, corpus = run
    model, codec, _ = load_model(folder / "latest.h5")
    ids = codec.encode("line 4: the quick brown fox naps over it.\nline 5: the fox")
    ids = np.asarray(ids)
    got = evaluate_ids(model, ids, N=1, T=5)
    state, logp = model.init_state(1), []
    for t in range(len(ids) - 1):
        scores = np.array(model.step(ids[t:t + 1], state), np.float64)[0]
        assert abs(np.exp(scores).sum() - 1) < 1e-5
        logp.append(scores[ids[t + 1]])
    assert got["loss"] == pytest.approx(-np.mean(logp), rel=1e-5)


def test_cutoffs_are_checked_against_the_vocabulary(run, tmp_path):
    _, corpus = run
    result = invoke("train", corpus, "-o", tmp_path / "r", *SMALL, "--softmax", "adaptive",
                    "--cutoffs", "10,5000", "--max-steps", "1")
    assert result.exit_code == 1 and "below the vocabulary size" in result.output
    assert "Traceback" not in result.output
    result = invoke("train", corpus, "-o", tmp_path / "r", *SMALL, "--softmax", "adaptive",
                    "--max-steps", "1")
    assert result.exit_code == 1 and "needs cutoffs" in result.output
    # --init-from with a smaller vocabulary: the vocabulary is named, not the cutoffs
    chars = make_corpus(tmp_path)
    result = invoke("train", chars, "-o", tmp_path / "r", "--init-from", run[0] / "latest.h5",
                    "--max-steps", "1", "--threads", "1", "--quiet")
    assert result.exit_code == 1 and "its vocabulary differs" in result.output, result.output
    # --softmax full from an adaptive checkpoint is a shape that differs (it blamed cutoffs)
    result = invoke("train", corpus, "-o", tmp_path / "r", "--init-from", run[0] / "latest.h5",
                    "--softmax", "full", "--max-steps", "1", "--threads", "1", "--quiet")
    assert result.exit_code == 1 and "--softmax full does not match its adaptive" in \
        result.output, result.output


def test_checkpoints_of_before_load_with_the_full_softmax():
    model, _, ck = load_model(Path(__file__).parent / "data" / "checkpoint-0.1.h5")
    assert "softmax" not in ck.config["model"] and model.cfg.softmax == "full"
    assert set(model.p) == set(ck.weights)


# -- PyTorch -----------------------------------------------------------------------------------

def make_checkpoint(path, head_bias, div_value=2.0, hidden=H, dtype="float32", seed=0):
    """A word-level checkpoint with an adaptive softmax, every weight drawn at random."""
    cfg = TrainConfig()
    m = cfg.model
    m.embed, m.hidden, m.layers, m.dtype, m.vocab_size = E, hidden, L, dtype, V
    m.softmax, m.cutoffs, m.div_value, m.head_bias = "adaptive", "5,15", div_value, head_bias
    model = Model(m, seed=seed)
    model.params[...] = np.random.default_rng(seed).uniform(-0.6, 0.6, model.params.shape)
    weights = {k: np.array(v) for k, v in model.p.items()}
    checkpoint.save(path, Checkpoint(config=cfg.to_dict(), weights=weights,
                                     vocab=Vocabulary("word", TOKENS)))
    return weights


def torch_model(info, hidden=H):
    import torch

    class RNNModel(torch.nn.Module):        # word_language_model's names
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.Embedding(V, E)
            self.rnn = torch.nn.LSTM(E, hidden, L)
            self.decoder = torch.nn.AdaptiveLogSoftmaxWithLoss(
                hidden, V, info["cutoffs"], div_value=info["div_value"],
                head_bias=info["head_bias"])

        def forward(self, x):                   # x (T, N) -> log-probabilities (T, N, V)
            out, _ = self.rnn(self.encoder(x))
            return self.decoder.log_prob(out.reshape(-1, out.shape[2])).reshape(
                *x.shape, V)

    return RNNModel()


@needs_safetensors
@pytest.mark.parametrize("head_bias", [False, True])
def test_pytorch_gets_the_same_log_probabilities(tmp_path, head_bias):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    make_checkpoint(tmp_path / "m.h5", head_bias)
    result = invoke("export", tmp_path / "m.h5", "-o", tmp_path / "m.safetensors")
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "m.json").read_text())
    assert (info["softmax"], info["cutoffs"], info["div_value"], info["head_bias"]) == \
        ("adaptive", [5, 15], 2.0, head_bias)
    net = torch_model(info)
    net.load_state_dict(load_file(tmp_path / "m.safetensors"), strict=True)
    x = np.random.default_rng(1).integers(0, V, (2, 60))           # (N, T)
    with torch.no_grad():
        want = net(torch.from_numpy(x.T.copy())).numpy()             # (T, N, V)
    model, _, _ = load_model(tmp_path / "m.h5")
    state = model.init_state(2)
    got = np.stack([np.array(model.step(x[:, t], state)) for t in range(x.shape[1])])
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
    losses, _ = model.evaluate_tokens(x[:, :-1], x[:, 1:], model.init_state(2))
    ref = -np.take_along_axis(want[:-1], x.T[1:, :, None], axis=2)[..., 0].T
    np.testing.assert_allclose(losses, ref, rtol=0, atol=2e-5)
    with torch.no_grad():           # the module's own loss: the mean of the same numbers
        out, _ = net.rnn(net.encoder(torch.from_numpy(x.T[:-1].copy())))
        loss = net.decoder(out.reshape(-1, H), torch.from_numpy(x.T[1:].reshape(-1))).loss
    assert float(loss) == pytest.approx(losses.mean(), rel=1e-5)


@needs_safetensors
@pytest.mark.parametrize("head_bias,dtype", [(False, "float32"), (True, "float64")])
def test_round_trip_keeps_every_bit(tmp_path, head_bias, dtype):
    weights = make_checkpoint(tmp_path / "m.h5", head_bias, dtype=dtype)
    assert invoke("export", tmp_path / "m.h5", "-o", tmp_path / "m.safetensors").exit_code == 0
    result = invoke("import", tmp_path / "m.safetensors", "-o", tmp_path / "back.h5")
    assert result.exit_code == 0, result.output
    back = checkpoint.load(tmp_path / "back.h5")
    assert set(back.weights) == set(weights)
    for name, w in weights.items():
        np.testing.assert_array_equal(back.weights[name], w)
    model, _, _ = load_model(tmp_path / "back.h5")
    assert (model.cfg.softmax, model.cfg.cutoffs, model.cfg.head_bias) == \
        ("adaptive", "5,15", head_bias)


def assert_steps_match(model, net, x):
    """The model's log-probabilities step by step on ids `x` (1, T) are PyTorch's `net`'s."""
    import torch

    with torch.no_grad():
        want = net(torch.from_numpy(x.T.copy())).numpy()[:, 0]
    state = model.init_state(1)
    got = np.stack([np.array(model.step(x[:, t], state))[0] for t in range(x.shape[1])])
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)


@needs_safetensors
def test_a_pytorch_file_imports_and_its_div_value_is_found(tmp_path):
    """A file PyTorch wrote, with a JSON of only the level and tokens: the cutoffs follow
    from the weights' shapes, div_value 3 from the tails' projection sizes (27 -> 9, 3)."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    info = {"cutoffs": [5, 15], "div_value": 3.0, "head_bias": True}
    net = torch_model(info, hidden=27)
    save_file(net.state_dict(), tmp_path / "a.safetensors")
    (tmp_path / "a.json").write_text(json.dumps({"level": "word", "tokens": TOKENS}))
    result = invoke("import", tmp_path / "a.safetensors", "-o", tmp_path / "a.h5")
    assert result.exit_code == 0, result.output
    model, _, _ = load_model(tmp_path / "a.h5")
    assert (model.cfg.cutoffs, model.cfg.div_value, model.cfg.head_bias) == ("5,15", 3.0, True)
    x = np.random.default_rng(2).integers(0, V, (1, 30))
    assert_steps_match(model, net, x)
    generated = invoke("generate", tmp_path / "a.h5", "--length", "5", "--seed", "1")
    assert generated.exit_code == 0, generated.output


@needs_safetensors
def test_any_div_value_of_pytorch_is_found_and_a_wrong_one_is_named(tmp_path):
    # before: div_value 1.6 (projections 19, 12 at H = 32) was refused without it in the JSON,
    # a wrong one in the JSON was told to put one there, and "tie_weights": true was ignored
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = torch_model({"cutoffs": [5, 15], "div_value": 1.6, "head_bias": False}, hidden=32)
    save_file(net.state_dict(), tmp_path / "a.safetensors")
    for name, extra in (("found", {}), ("wrong", {"div_value": 2}),
                        ("tied", {"tie_weights": True})):
        (tmp_path / name).mkdir()
        os.link(tmp_path / "a.safetensors", tmp_path / name / "a.safetensors")
        (tmp_path / name / "a.json").write_text(json.dumps({"level": "word", "tokens": TOKENS,
                                                             **extra}))
    result = invoke("import", tmp_path / "found/a.safetensors", "-o", tmp_path / "a.h5")
    assert result.exit_code == 0, result.output
    model, _, _ = load_model(tmp_path / "a.h5")
    assert model.cfg.clusters().shapes()["out.tail0.proj"][0] == 19
    x = np.random.default_rng(2).integers(0, V, (1, 20))
    assert_steps_match(model, net, x)
    result = invoke("import", tmp_path / "wrong/a.safetensors", "-o", tmp_path / "b.h5")
    assert result.exit_code == 1 and "its JSON's div_value 2 does not give the tails' " \
        "projection sizes [19, 12]" in result.output, result.output
    result = invoke("import", tmp_path / "tied/a.safetensors", "-o", tmp_path / "c.h5")
    assert result.exit_code == 1 and "no decoder.weight to tie" in result.output, result.output
