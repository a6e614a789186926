"""`rnnkit export` / `rnnkit import`: safetensors with word_language_model's names, checked
against torch.nn modules, and a round trip that keeps every bit."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from rnnkit.training import checkpoint
from rnnkit.training.checkpoint import Checkpoint
from rnnkit.cli.main import main
from rnnkit.model.config import TrainConfig
from rnnkit.tools.load import load_model
from rnnkit.tools.safetensors_import import read_safetensors
from rnnkit.model.network import Model
from rnnkit.corpus.tokenize import Vocabulary

needs_safetensors = pytest.mark.skipif(importlib.util.find_spec("safetensors") is None,
                                       reason="needs the safetensors extra")
V, E, H, L = 11, 6, 8, 2
TOKENS = list("\n abcdefghi")
CASES = [("lstm", False), ("gru", False), ("rnn-tanh", False), ("rnn-relu", False),
         ("lstm", True), ("gru", True)]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def make_checkpoint(path, cell, tied=False, dtype="float32", seed=0):
    """A checkpoint of a model with every weight drawn at random (biases too)."""
    cfg = TrainConfig()
    cfg.model.cell, cfg.model.embed, cfg.model.hidden, cfg.model.layers = cell, \
        H if tied else E, H, L
    cfg.model.tie_weights, cfg.model.dtype = tied, dtype
    cfg.model.vocab_size = V
    model = Model(cfg.model, seed=seed)
    rng = np.random.default_rng(seed)
    model.params[...] = rng.uniform(-0.4, 0.4, model.params.shape)
    weights = {k: np.array(v) for k, v in model.p.items()}
    checkpoint.save(path, Checkpoint(config=cfg.to_dict(), weights=weights,
                                     vocab=Vocabulary("char", TOKENS)))
    return weights


def torch_model(cell, tied):
    import torch

    class RNNModel(torch.nn.Module):        # word_language_model's names
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.Embedding(V, H if tied else E)
            D = H if tied else E
            if cell == "lstm":
                self.rnn = torch.nn.LSTM(D, H, L)
            elif cell == "gru":
                self.rnn = torch.nn.GRU(D, H, L)
            else:
                self.rnn = torch.nn.RNN(D, H, L, nonlinearity=cell[4:])
            self.decoder = torch.nn.Linear(H, V)
            if tied:
                self.decoder.weight = self.encoder.weight

        def forward(self, x):                   # x (T, N) -> logits (T, N, V)
            out, _ = self.rnn(self.encoder(x))
            return self.decoder(out)

    return RNNModel()


@needs_safetensors
@pytest.mark.parametrize("cell,tied", CASES)
def test_pytorch_gets_the_same_logits(tmp_path, cell, tied):
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    make_checkpoint(tmp_path / "m.h5", cell, tied)
    result = invoke("export", tmp_path / "m.h5", "-o", tmp_path / "m.safetensors")
    assert result.exit_code == 0, result.output
    net = torch_model(cell, tied)
    net.load_state_dict(load_file(tmp_path / "m.safetensors"), strict=True)
    if tied:
        assert torch.equal(net.decoder.weight, net.encoder.weight)
    x = np.random.default_rng(1).integers(0, V, (2, 150))           # (N, T): 300 tokens
    with torch.no_grad():
        want = net(torch.from_numpy(x.T.copy())).numpy()             # (T, N, V)
    model, _, _ = load_model(tmp_path / "m.h5")
    state = model.init_state(2)
    got = np.stack([np.array(model.step(x[:, t], state)) for t in range(x.shape[1])])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    # the batched kernels too: each token's loss against torch's log-softmax
    losses, _ = model.evaluate_tokens(x[:, :-1], x[:, 1:], model.init_state(2))
    logp = torch.log_softmax(torch.from_numpy(want[:-1]), -1).numpy()
    ref = -np.take_along_axis(logp, x.T[1:, :, None], axis=2)[..., 0].T
    np.testing.assert_allclose(losses, ref, rtol=0, atol=1e-5)
    info = json.loads((tmp_path / "m.json").read_text())
    assert info["cell"] == cell and info["level"] == "char" and info["tokens"] == TOKENS
    assert info["start_id"] == TOKENS.index("\n")     # before: the ONNX export's JSON only
    assert info["tie_weights"] == tied and info["rnn_type"] == {
        "lstm": "LSTM", "gru": "GRU", "rnn-tanh": "RNN_TANH", "rnn-relu": "RNN_RELU"}[cell]


@needs_safetensors
@pytest.mark.parametrize("cell,tied,dtype", [(c, t, "float32") for c, t in CASES] +
                         [("gru", False, "float64")])
def test_round_trip_keeps_every_bit(tmp_path, cell, tied, dtype):
    weights = make_checkpoint(tmp_path / "m.h5", cell, tied, dtype)
    assert invoke("export", tmp_path / "m.h5", "-o", tmp_path / "m.safetensors").exit_code == 0
    result = invoke("import", tmp_path / "m.safetensors", "-o", tmp_path / "back.h5")
    assert result.exit_code == 0, result.output
    back = checkpoint.load(tmp_path / "back.h5")
    assert set(back.weights) == set(weights)
    for name, w in weights.items():
        assert back.weights[name].dtype == w.dtype
        np.testing.assert_array_equal(back.weights[name], w)
    assert back.vocab.tokens == TOKENS and back.config["model"]["tie_weights"] == tied
    model, codec, _ = load_model(tmp_path / "back.h5")               # usable as it is
    assert model.cell.name == cell and len(codec) == V
    # the corpus path was the run folder's: an imported checkpoint names none
    assert back.config["data"]["corpus"] == ""
    result = invoke("eval", tmp_path / "back.h5")
    assert result.exit_code == 1 and "does not name the corpus it was trained on" in \
        result.output


@needs_safetensors
def test_a_pytorch_file_imports(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    torch.manual_seed(0)
    net = torch_model("gru", False)                 # nonzero bias_hh: the sums are tested
    save_file(net.state_dict(), tmp_path / "gru.safetensors")
    (tmp_path / "gru.json").write_text(json.dumps({"level": "char", "tokens": TOKENS}))
    result = invoke("import", tmp_path / "gru.safetensors", "-o", tmp_path / "gru.h5")
    assert result.exit_code == 0, result.output
    x = np.random.default_rng(2).integers(0, V, (1, 120))
    with torch.no_grad():
        want = net(torch.from_numpy(x.T.copy())).numpy()[:, 0]
    model, _, _ = load_model(tmp_path / "gru.h5")
    state = model.init_state(1)
    got = np.stack([np.array(model.step(x[:, t], state))[0] for t in range(x.shape[1])])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    generated = invoke("generate", tmp_path / "gru.h5", "--length", "5", "--seed", "1")
    assert generated.exit_code == 0, generated.output


@needs_safetensors
def test_outputs_are_checked_and_atomic(tmp_path):
    make_checkpoint(tmp_path / "m.h5", "lstm")
    out = tmp_path / "m.safetensors"
    assert invoke("export", tmp_path / "m.h5", "-o", out).exit_code == 0
    again = invoke("export", tmp_path / "m.h5", "-o", out)
    assert again.exit_code == 1 and "exists; use --force" in again.output
    assert invoke("export", tmp_path / "m.h5", "-o", out, "-f").exit_code == 0
    os.mkfifo(tmp_path / "fifo.safetensors")
    fifo = invoke("export", tmp_path / "m.h5", "-o", tmp_path / "fifo.safetensors", "-f")
    assert fifo.exit_code == 1 and "is a FIFO" in fifo.output
    assert not (tmp_path / "fifo.json").exists()
    (tmp_path / "m2.h5").write_text("x")
    refused = invoke("import", out, "-o", tmp_path / "m2.h5")
    assert refused.exit_code == 1 and "exists; use --force" in refused.output
    same = invoke("import", out, "-o", out, "-f")
    assert same.exit_code == 1 and "is also an input" in same.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "fifo.safetensors", "m.h5", "m.json", "m.safetensors", "m2.h5"]     # no temporaries


@needs_safetensors
@pytest.mark.parametrize("change,message", [
    (lambda info: info.update(tokens=TOKENS[:-1]), "10 tokens (10 distinct) for an embedding "
                                                   "of 11 rows"),
    (lambda info: info.update(level="phoneme"), "\"level\" must be one of"),
    (lambda info: info.update(cell="gru"), "cell 'gru' does not fit weights of 4 gate"),
    (lambda info: info.pop("tokens"), "expected a JSON object with \"tokens\""),
    # each an internal error before
    (lambda info: info.update(tokens=[[t] for t in TOKENS]), "\"tokens\" must be strings"),
    (lambda info: info.update(cell=["lstm"]), "\"cell\" must be a string, not [\"lstm\"]"),
    (lambda info: info.update(encoding=5), "\"encoding\" must be a string, not 5"),
    (lambda info: info.update(tie_weights="false"), "\"tie_weights\" must be true or false"),
    (lambda info: info.update(config=[]), "\"config\" must be a JSON object"),
])
def test_bad_imports_are_one_line(tmp_path, change, message):
    make_checkpoint(tmp_path / "m.h5", "lstm")
    assert invoke("export", tmp_path / "m.h5", "-o", tmp_path / "m.safetensors").exit_code == 0
    info = json.loads((tmp_path / "m.json").read_text())
    change(info)
    (tmp_path / "m.json").write_text(json.dumps(info))
    result = invoke("import", tmp_path / "m.safetensors", "-o", tmp_path / "back.h5")
    assert result.exit_code == 1 and message in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "back.h5").exists()


@needs_safetensors
def test_not_safetensors_and_missing_json(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    result = invoke("import", tmp_path / "x.safetensors", "-o", tmp_path / "x.h5")
    assert result.exit_code == 1 and "is not a safetensors file" in result.output
    make_checkpoint(tmp_path / "m.h5", "lstm")
    invoke("export", tmp_path / "m.h5", "-o", tmp_path / "m.safetensors")
    os.unlink(tmp_path / "m.json")
    result = invoke("import", tmp_path / "m.safetensors", "-o", tmp_path / "x.h5")
    assert result.exit_code == 1 and "m.json not found" in result.output


def test_without_safetensors_and_the_same_bytes_each_time(tmp_path, monkeypatch):
    """rnnkit writes and reads the format itself; an export is the same bytes each time (the
    library wrote its metadata in any order: three exports, three files)."""
    make_checkpoint(tmp_path / "m.h5", "lstm")
    monkeypatch.setitem(sys.modules, "safetensors", None)       # as if not installed
    monkeypatch.setitem(sys.modules, "safetensors.numpy", None)
    assert invoke("export", tmp_path / "m.h5", "-o", tmp_path / "a.safetensors").exit_code == 0
    first = (tmp_path / "a.safetensors").read_bytes()
    again = subprocess.run([sys.executable, "-m", "rnnkit", "export", str(tmp_path / "m.h5"),
                            "-o", str(tmp_path / "b.safetensors")], capture_output=True)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "b.safetensors").read_bytes() == first
    assert invoke("import", tmp_path / "a.safetensors", "-o", tmp_path / "x.h5").exit_code == 0
    a, b = checkpoint.load(tmp_path / "m.h5"), checkpoint.load(tmp_path / "x.h5")
    assert all(np.array_equal(a.weights[k], b.weights[k]) for k in a.weights)


def pytorch_lstm(H=64, seed=0):
    """word_language_model's state dict of a one-layer LSTM (E=6, V=11), as numpy arrays."""
    rng = np.random.default_rng(seed)
    shapes = {"encoder.weight": (V, E), "rnn.weight_ih_l0": (4 * H, E),
              "rnn.weight_hh_l0": (4 * H, H), "rnn.bias_ih_l0": (4 * H,),
              "rnn.bias_hh_l0": (4 * H,), "decoder.weight": (V, H), "decoder.bias": (V,)}
    return {k: rng.uniform(-0.1, 0.1, s).astype(np.float32) for k, s in shapes.items()}


def import_tensors(tmp_path, tensors, info):
    from safetensors.numpy import save_file

    save_file(tensors, tmp_path / "w.safetensors")
    (tmp_path / "w.json").write_text(json.dumps({"level": "char", "tokens": TOKENS, **info}))
    return invoke("import", tmp_path / "w.safetensors", "-o", tmp_path / "w.h5")


@needs_safetensors
@pytest.mark.parametrize("info", [{"cell": "lstm"}, {"rnn_type": "LSTM"}, {}])
@pytest.mark.parametrize("name, shape, want", [
    ("rnn.weight_hh_l0", (256, 60), (256, 64)),
    ("rnn.weight_ih_l0", (255, E), (256, E)),
    ("rnn.bias_hh_l0", (128,), (256,)),
    ("decoder.weight", (V, 63), (V, 64)),
    ("encoder.weight", (V - 1, E), (V, E)),      # was blamed on decoder.weight
])
def test_a_wrong_shape_names_the_tensor_and_the_shape_expected(tmp_path, info, name, shape,
                                                               want):
    """Whether the JSON names the cell or not, the shape that the other tensors agree on is
    the one expected (an LSTM of H=64: 256 rows)."""
    tensors = pytorch_lstm()
    tensors[name] = np.zeros(shape, np.float32)
    result = import_tensors(tmp_path, tensors, info)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"tensor {name} has shape {shape}, expected {want}" in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "w.h5").exists()
    assert import_tensors(tmp_path, pytorch_lstm(), info).exit_code == 0      # as it was


@needs_safetensors
@pytest.mark.parametrize("name, at, value, dtype", [
    ("rnn.weight_hh_l0", (3, 4), np.nan, np.float32), ("decoder.bias", (0,), np.inf, np.float32),
    ("encoder.weight", (10, 5), -np.inf, np.float16)])
def test_non_finite_weights_are_refused(tmp_path, name, at, value, dtype):
    tensors = {k: v.astype(dtype) for k, v in pytorch_lstm(H=8).items()}
    tensors[name][at] = value
    result = import_tensors(tmp_path, tensors, {"cell": "lstm"})
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"tensor {name}" in lines[0] and "1 value" in lines[0] and \
        f"{value}".lower().lstrip("-") in lines[0].lower(), lines
    assert not (tmp_path / "w.h5").exists()


def bfloat16(a):
    """float32 -> bfloat16's bits (rounding to nearest even), as PyTorch stores them."""
    bits = a.astype(np.float32).view(np.uint32).astype(np.uint64)
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)


def test_bfloat16_weights_import_widened(tmp_path):
    """PyTorch's usual type for weights: its bits are a float32's top half (safetensors'
    numpy reader has no such type; rnnkit read it as 'not a safetensors file')."""
    tensors = pytorch_lstm(H=8)
    halves = {k: bfloat16(v) for k, v in tensors.items()}
    header = {k: {"dtype": "BF16", "shape": list(v.shape), "data_offsets": [0, 0]}
              for k, v in halves.items()}
    blob, at = b"", 0
    for k, v in halves.items():
        header[k]["data_offsets"] = [at, at + v.nbytes]
        blob, at = blob + v.tobytes(), at + v.nbytes
    text = json.dumps(header).encode()
    (tmp_path / "w.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + blob)
    (tmp_path / "w.json").write_text(json.dumps({"level": "char", "tokens": TOKENS}))
    result = invoke("import", tmp_path / "w.safetensors", "-o", tmp_path / "w.h5")
    assert result.exit_code == 0, result.output
    got = checkpoint.load(tmp_path / "w.h5").weights
    want = (halves["encoder.weight"].astype(np.uint32) << 16).view(np.float32)
    assert got["embed"].dtype == np.float32 and np.array_equal(got["embed"], want)
    assert np.abs(want - tensors["encoder.weight"]).max() < 1e-3


@needs_safetensors
def test_other_tensor_types_are_named(tmp_path):
    tensors = pytorch_lstm(H=8)
    tensors["decoder.bias"] = tensors["decoder.bias"].astype(np.int32)
    result = import_tensors(tmp_path, tensors, {})
    assert result.exit_code == 1
    assert "tensors of type I32; rnnkit reads float16, bfloat16, float32" in result.output


@needs_safetensors
def test_tie_weights_in_the_json_against_the_tensors(tmp_path):
    # before: "tie_weights": true dropped a decoder.weight that differed, without a word
    result = import_tensors(tmp_path, pytorch_lstm(H=6), {"tie_weights": True})
    assert result.exit_code == 1 and "decoder.weight differs from encoder.weight" in \
        result.output
    tensors = pytorch_lstm(H=6)
    tensors["decoder.weight"] = tensors["encoder.weight"].copy()
    assert import_tensors(tmp_path, tensors, {"tie_weights": True}).exit_code == 0
    assert checkpoint.load(tmp_path / "w.h5").config["model"]["tie_weights"] is True


@needs_safetensors
def test_a_tied_model_saved_by_safetensors_save_model_imports_tied(tmp_path):
    """save_model keeps one name of a shared tensor: decoder.weight, no encoder.weight."""
    tensors = pytorch_lstm(H=6)
    shared = tensors.pop("encoder.weight")
    tensors["decoder.weight"] = shared
    assert import_tensors(tmp_path, tensors, {}).exit_code == 0
    back = checkpoint.load(tmp_path / "w.h5")
    assert back.config["model"]["tie_weights"] is True
    assert np.array_equal(back.weights["embed"], shared)
    os.unlink(tmp_path / "w.h5")
    result = import_tensors(tmp_path, tensors, {"tie_weights": False})
    assert result.exit_code == 1 and "tensor encoder.weight is missing" in result.output


@needs_safetensors
def test_a_missing_layer_tensor_is_named(tmp_path):
    """Before: 'tensor rnn.weight_hh_l1 has no place ... (bidirectional ...)'."""
    tensors = pytorch_lstm(H=6)
    tensors.update({k.replace("_l0", "_l1"): np.zeros((24, 6), np.float32)
                    for k in ("rnn.weight_ih_l0", "rnn.weight_hh_l0")})
    del tensors["rnn.weight_ih_l1"]
    result = import_tensors(tmp_path, tensors, {})
    assert result.exit_code == 1 and "tensor rnn.weight_ih_l1 is missing" in result.output


@needs_safetensors
def test_a_word_vocabulary_without_eos_is_refused(tmp_path):
    from safetensors.numpy import save_file

    save_file(pytorch_lstm(H=6), tmp_path / "w.safetensors")
    words = [f"w{i}" for i in range(V)]
    (tmp_path / "w.json").write_text(json.dumps({"level": "word", "tokens": words}))
    result = invoke("import", tmp_path / "w.safetensors", "-o", tmp_path / "w.h5")
    assert result.exit_code == 1 and "a word-level vocabulary needs <eos>" in result.output


def test_div_value_found_from_the_tails_sizes():
    """PyTorch's tails are int(H // div_value ** (i + 1)) wide: H = 40, div_value 3 gives
    13 and 4 (before: only 4, 2 and H / 13 = 3.08 were tried, and 40 // 3.08 = 12)."""
    from rnnkit.tools.safetensors_import import _adaptive
    tensors = {"decoder.head.weight": np.zeros((12, 40)),
               "decoder.tail.0.1.weight": np.zeros((20, 13)),
               "decoder.tail.1.1.weight": np.zeros((30, 4))}
    got = _adaptive(tensors, {}, 40, "w.safetensors")
    assert got["cutoffs"] == [10, 30] and 40 // got["div_value"] == 13 and \
        40 // got["div_value"] ** 2 == 4


@needs_safetensors
def test_the_library_reads_what_rnnkit_writes(tmp_path):
    import safetensors.numpy

    make_checkpoint(tmp_path / "m.h5", "gru")
    assert invoke("export", tmp_path / "m.h5", "-o", tmp_path / "a.safetensors").exit_code == 0
    theirs = safetensors.numpy.load_file(tmp_path / "a.safetensors")
    ours, meta = read_safetensors(tmp_path / "a.safetensors")
    assert sorted(theirs) == sorted(ours)
    for name in ours:
        assert theirs[name].dtype == ours[name].dtype
        np.testing.assert_array_equal(theirs[name], ours[name])
    assert meta["producer"].startswith("rnnkit ")


def test_new_words_against_a_vocabulary_without_unk_are_one_line(tmp_path):
    # before: an internal error (a TypeError): a word vocabulary from an import (PyTorch's
    # word_language_model builds its own) has no <unk> to map a new word to
    cfg = TrainConfig()
    cfg.model.embed, cfg.model.hidden, cfg.model.layers, cfg.model.vocab_size = 4, 4, 1, 4
    model = Model(cfg.model, seed=0)
    checkpoint.save(tmp_path / "w.h5", Checkpoint(
        config=cfg.to_dict(), weights={k: np.array(v) for k, v in model.p.items()},
        vocab=Vocabulary("word", ["the", "cat", "sat", "<eos>"])))
    (tmp_path / "known.txt").write_text("the cat sat\n")
    (tmp_path / "more.txt").write_text("the cat sat\nthe dog sat\n")
    ok = invoke("preprocess", tmp_path / "known.txt", "--vocab-from", tmp_path / "w.h5",
                "--val-frac", "0", "--test-frac", "0", "-o", tmp_path / "a.h5")
    assert ok.exit_code == 0, ok.output
    bad = invoke("preprocess", tmp_path / "more.txt", "--vocab-from", tmp_path / "w.h5",
                 "--val-frac", "0", "--test-frac", "0", "-o", tmp_path / "b.h5")
    assert bad.exit_code == 1 and "word 'dog' is not in the vocabulary, which has no <unk>" \
        in bad.output, bad.output
    assert not (tmp_path / "b.h5").exists()
