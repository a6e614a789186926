"""`rnnkit export --format onnx`: the graph passes onnx.checker, and onnxruntime gives rnnkit's
logits and states for every cell, over a few hundred tokens, carried state included."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from rnnkit.cli.main import main
from rnnkit.tools.load import load_model
from tests.test_exchange import TOKENS, V, make_checkpoint

onnx = pytest.importorskip("onnx", reason="needs the onnx package (the test extra)")
ort = pytest.importorskip("onnxruntime", reason="needs onnxruntime (the test extra)")

CASES = [("lstm", False), ("gru", False), ("rnn-tanh", False), ("rnn-relu", False),
         ("gru", True)]
N, T = 2, 300


def rnnkit_run(path, x):
    """Logits (N, T, V), a token at a time, and the final state of checkpoint `path`."""
    model, _, _ = load_model(path)
    state = model.init_state(N)
    b = model.backend
    logits = np.stack([b.to_host(model.step(x[:, t], state)).copy() for t in range(x.shape[1])],
                      axis=1)
    return logits, model.state_to_host(state)


@pytest.mark.parametrize("cell,tied", CASES)
def test_onnxruntime_gives_rnnkit_logits(tmp_path, cell, tied):
    make_checkpoint(tmp_path / "m.h5", cell, tied)
    result = CliRunner().invoke(main, ["export", str(tmp_path / "m.h5"), "-o",
                                       str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    onnx.checker.check_model(str(tmp_path / "m.onnx"), full_check=True)
    graph = onnx.load(str(tmp_path / "m.onnx")).graph
    ops = {node.op_type for node in graph.node}
    assert {"Gather", "MatMul", {"lstm": "LSTM", "gru": "GRU"}.get(cell, "RNN")} <= ops
    info = json.loads((tmp_path / "m.json").read_text())
    assert info["tokens"] == TOKENS and info["cell"] == cell and info["start_id"] == 0

    x = np.random.default_rng(1).integers(0, V, (N, T))
    want, state = rnnkit_run(tmp_path / "m.h5", x)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert names == (["tokens", "h0", "c0"] if cell == "lstm" else ["tokens", "h0"])
    carried = {name: np.zeros((2, N, 8), np.float32) for name in names[1:]}
    got = []
    for chunk in (x[:, :T // 2], x[:, T // 2:]):         # the state fed back in between
        logits, *after = session.run(None, {"tokens": chunk.astype(np.int64), **carried})
        got.append(logits)
        carried = dict(zip(names[1:], after))
    np.testing.assert_allclose(np.concatenate(got, axis=1), want, rtol=0, atol=1e-4)
    for name, value in carried.items():
        np.testing.assert_allclose(value, state[name[0]], rtol=0, atol=1e-5)


def test_export_refuses_to_overwrite_and_names_the_format(tmp_path):
    make_checkpoint(tmp_path / "m.h5", "lstm")
    args = ["export", str(tmp_path / "m.h5"), "-o", str(tmp_path / "m.bin"), "--format", "onnx"]
    assert CliRunner().invoke(main, args).exit_code == 0
    assert onnx.load(str(tmp_path / "m.bin")).graph.node
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1 and "exists" in again.output
    json_name = CliRunner().invoke(main, ["export", str(tmp_path / "m.h5"), "-o",
                                          str(tmp_path / "x.json"), "--format", "onnx"])
    assert json_name.exit_code == 1 and "NAME.onnx" in json_name.output


@pytest.mark.parametrize("head_bias", [False, True])
def test_adaptive_softmax_gives_its_log_probabilities(tmp_path, head_bias):
    from tests.test_adaptive_run import make_checkpoint as adaptive_checkpoint

    adaptive_checkpoint(tmp_path / "a.h5", head_bias)
    result = CliRunner().invoke(main, ["export", str(tmp_path / "a.h5"), "-o",
                                       str(tmp_path / "a.onnx"), "--format", "onnx"])
    assert result.exit_code == 0, result.output
    onnx.checker.check_model(str(tmp_path / "a.onnx"), full_check=True)
    model, _, _ = load_model(tmp_path / "a.h5")
    x = np.random.default_rng(2).integers(0, model.cfg.vocab_size, (N, 40))
    want, _ = rnnkit_run(tmp_path / "a.h5", x)
    session = ort.InferenceSession(str(tmp_path / "a.onnx"), providers=["CPUExecutionProvider"])
    zeros = {i.name: np.zeros((model.cfg.layers, N, model.cfg.hidden), np.float32)
             for i in session.get_inputs()[1:]}
    got = session.run(None, {"tokens": x.astype(np.int64), **zeros})[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)
    np.testing.assert_allclose(np.exp(got).sum(axis=-1), 1.0, atol=1e-5)
    assert "log-probabilities" in json.loads((tmp_path / "a.json").read_text())[
        "outputs"]["logits"]


def test_a_model_over_onnx_limit_is_refused_before_building(tmp_path, monkeypatch):
    """Before: 30 s of building, then 'internal error: EncodeError' (a 2.3 GB model)."""
    from rnnkit.tools import onnx_export
    make_checkpoint(tmp_path / "m.h5", "lstm")
    monkeypatch.setattr(onnx_export, "LIMIT", 1000)
    monkeypatch.setattr(onnx_export, "build_graph", None)       # never reached
    result = CliRunner().invoke(main, ["export", str(tmp_path / "m.h5"), "-o",
                                       str(tmp_path / "m.onnx")])
    assert result.exit_code == 1 and "an ONNX file holds at most 2 GiB" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.h5"]
