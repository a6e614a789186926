"""A checkpoint as a standard ONNX graph, for inference servers (onnxruntime and others).

    from rnnkit.tools.onnx_export import export_onnx
    export_onnx("runs/x/best.h5", "model.onnx")        # and model.json beside it

The graph (opset 17, float32) uses ONNX's own operators, so any runtime runs it:

    tokens (N, T) int64 -> Gather(embed) -> Transpose to (T, N, E)
      -> per layer k: LSTM / GRU / RNN (one direction), initial state h0[k] (and c0[k])
      -> MatMul(W_out^T) + b_out -> Transpose -> logits (N, T, V)

With an adaptive softmax (rnnkit/model/softmax.py) the last line is its exact log-probabilities
instead, under the same name: LogSoftmax of the head; each cluster's LogSoftmax of
tail_i(x) plus its column of the head; concatenated in id order. A softmax of them is the
next token's distribution, as of the full softmax's logits (what model.step gives too).

Inputs tokens, h0 (L, N, H) and, for the LSTM, c0 (L, N, H); outputs logits, h and c, the
state after the last step: feed h (and c) back as h0 (c0) with the next tokens to go on, as a
server streaming text does (zeros start a text). N and T are free. The JSON file beside it is
the one rnnkit export writes (rnnkit/tools/safetensors.py: the vocabulary in id order, cell, level,
encoding, the training config) plus the graph's inputs and outputs and start_id, the token a
text follows (<eos> or a newline).

The gate blocks are converted from PyTorch's layout, which rnnkit uses (docs/cells.md), to
ONNX's: the LSTM's i, f, g, o become i, o, f, c; the GRU's r, z, n become z, r, h, with
linear_before_reset=1 (PyTorch's formulation: the reset gate multiplies h W_hn + b_hn). The
bias b goes in ONNX's input bias Wb and b_hn in the recurrent bias Rb's h block; the rest of
Rb is zero. Built with the `onnx` package's helper API (the optional extra rnnkit[onnx]).
"""
import json
from pathlib import Path

import numpy as np

from rnnkit import cells, files
from rnnkit.tools.safetensors import (ExchangeError, check_outputs, export_info, load_export,
                                      write_both)
from rnnkit.corpus.bpe import sidecar

OPSET, IR_VERSION = 17, 8       # what onnxruntime 1.14 and later run
# cell -> ONNX's operator, the order of its gate blocks as rnnkit's (PyTorch's) blocks, and
# its attributes
OPS = {
    "lstm": ("LSTM", (0, 3, 1, 2), {}),                         # i, f, g, o -> i, o, f, c
    "gru": ("GRU", (1, 0, 2), {"linear_before_reset": 1}),      # r, z, n -> z, r, h
    "rnn-tanh": ("RNN", (0,), {"activations": ["Tanh"]}),
    "rnn-relu": ("RNN", (0,), {"activations": ["Relu"]}),
}


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ExchangeError("ONNX export needs the onnx package: pip install "
                            "'rnnkit[onnx]'") from None
    return onnx


def _blocks(a, order, H):
    """The gate blocks of a's last axis (each H wide) in `order`."""
    return np.concatenate([a[..., g * H:(g + 1) * H] for g in order], axis=-1)


def layer_weights(order, p, H):
    """ONNX's W (1, G*H, D), R (1, G*H, H), B (1, 2*G*H) of one layer from rnnkit's w_x
    (D, G*H), w_h (H, G*H), b (G*H,) and the GRU's b_hn (H,), the recurrent bias of the last
    block; order: OPS's."""
    W = _blocks(p["w_x"], order, H).T
    R = _blocks(p["w_h"], order, H).T
    recurrent = np.zeros_like(p["b"])
    if "b_hn" in p:
        recurrent[-H:] = p["b_hn"]
    B = np.concatenate([_blocks(p["b"], order, H), _blocks(recurrent, order, H)])
    return [np.ascontiguousarray(a[None], np.float32) for a in (W, R, B)]


def build_graph(weights, cfg):
    """The ONNX ModelProto of a model of ModelConfig `cfg` with named weights (host arrays)."""
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    L, H = cfg.layers, cfg.hidden
    states = list(cells.get(cfg.cell).state)
    op, order, attrs = OPS[cfg.cell]
    init = {"embed": weights["embed"], "axis1": np.array([1], np.int64)}
    nodes = [helper.make_node("Gather", ["embed", "tokens"], ["emb"], axis=0),
             helper.make_node("Transpose", ["emb"], ["x0"], perm=[1, 0, 2])]
    first = {}
    for s in states:                    # each layer's initial state, (1, N, H)
        first[s] = [f"{s}0"] if L == 1 else [f"{s}0_{k}" for k in range(L)]
        if L > 1:
            nodes.append(helper.make_node("Split", [f"{s}0"], first[s], axis=0))
    for k in range(L):
        W, R, B = layer_weights(order, {n: np.asarray(weights[f"l{k}.{n}"], np.float64)
                                        for n in ("w_x", "w_h", "b", "b_hn")
                                        if f"l{k}.{n}" in weights}, H)
        init.update({f"W{k}": W, f"R{k}": R, f"B{k}": B})
        inputs = [f"x{k}", f"W{k}", f"R{k}", f"B{k}", ""] + [first[s][k] for s in states]
        outputs = [f"y{k}"] + [f"{s}_last{k}" for s in states]
        nodes.append(helper.make_node(op, inputs, outputs, hidden_size=H, **attrs))
        nodes.append(helper.make_node("Squeeze", [f"y{k}", "axis1"], [f"x{k + 1}"]))
    for s in states:
        parts = [f"{s}_last{k}" for k in range(L)]
        nodes.append(helper.make_node("Concat", parts, [s], axis=0) if L > 1 else
                     helper.make_node("Identity", parts, [s]))
    clusters = cfg.clusters()
    top = (adaptive_nodes if clusters else full_nodes)(helper, weights, cfg, f"x{L}", init)
    nodes += top + [helper.make_node("Transpose", ["logits_tn"], ["logits"], perm=[1, 0, 2])]
    f32 = TensorProto.FLOAT
    state_shape = [L, "batch", H]
    graph = helper.make_graph(
        nodes, f"rnnkit_{cfg.cell.replace('-', '_')}",
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["batch", "steps"])] +
        [helper.make_tensor_value_info(f"{s}0", f32, state_shape) for s in states],
        [helper.make_tensor_value_info("logits", f32, ["batch", "steps", cfg.vocab_size])] +
        [helper.make_tensor_value_info(s, f32, state_shape) for s in states],
        [numpy_helper.from_array(np.ascontiguousarray(a, np.float32 if a.dtype.kind == "f"
                                                      else a.dtype), name)
         for name, a in init.items()])
    model = helper.make_model(graph, producer_name="rnnkit", ir_version=IR_VERSION,
                              opset_imports=[helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    return model


def full_nodes(helper, weights, cfg, x, init):
    """The full softmax's logits_tn = x W_out^T + b_out."""
    init["out_wt"] = weights["embed" if cfg.tie_weights else "out.w"].T
    init["out_b"] = weights["out.b"]
    return [helper.make_node("MatMul", [x, "out_wt"], ["proj"]),
            helper.make_node("Add", ["proj", "out_b"], ["logits_tn"])]


def adaptive_nodes(helper, weights, cfg, x, init):
    """The adaptive softmax's log-probabilities logits_tn: the shortlist's from the head, a
    cluster's its own LogSoftmax plus the head's column for it (PyTorch's log_prob)."""
    c = cfg.clusters()
    init["head_wt"] = weights["out.head.w"].T
    nodes = [helper.make_node("MatMul", [x, "head_wt"], ["head_xw"])]
    head = "head_xw"
    if c.head_bias:
        init["head_b"] = weights["out.head.b"]
        nodes.append(helper.make_node("Add", ["head_xw", "head_b"], ["head_logits"]))
        head = "head_logits"
    nodes.append(helper.make_node("LogSoftmax", [head], ["head_lp"], axis=-1))
    # Slice's starts, ends and axes are inputs from opset 10 on
    init.update({"axis2": np.array([2], np.int64), "zero": np.array([0], np.int64)})
    bounds = [c.cutoffs[0] + i for i in range(c.k + 1)]
    for n in set(bounds):
        init[f"at{n}"] = np.array([n], np.int64)
    nodes.append(helper.make_node("Slice", ["head_lp", "zero", f"at{bounds[0]}", "axis2"],
                                  ["lp_short"]))
    parts = ["lp_short"]
    for i in range(c.k):
        init[f"tail{i}_pt"] = weights[f"out.tail{i}.proj"].T
        init[f"tail{i}_wt"] = weights[f"out.tail{i}.w"].T
        nodes += [
            helper.make_node("Slice", ["head_lp", f"at{bounds[i]}", f"at{bounds[i] + 1}",
                                       "axis2"], [f"lp_c{i}"]),
            helper.make_node("MatMul", [x, f"tail{i}_pt"], [f"tail{i}_h"]),
            helper.make_node("MatMul", [f"tail{i}_h", f"tail{i}_wt"], [f"tail{i}_logits"]),
            helper.make_node("LogSoftmax", [f"tail{i}_logits"], [f"tail{i}_lp"], axis=-1),
            helper.make_node("Add", [f"tail{i}_lp", f"lp_c{i}"], [f"lp_t{i}"])]
        parts.append(f"lp_t{i}")
    nodes.append(helper.make_node("Concat", parts, ["logits_tn"], axis=-1))
    return nodes


# A protobuf message, hence an ONNX file without external data, is under 2 GiB; the graph's
# own text is kept well below the margin.
LIMIT = 2**31 - 2**24


def export_onnx(path, output, force=False):
    """Write checkpoint `path` as the ONNX graph `output` and its JSON beside it (sidecar);
    returns the two paths."""
    _onnx()
    meta_path = check_outputs(path, output, force, "onnx")
    ck, cfg = load_export(path)
    size = sum(np.asarray(v).size * 4 for v in ck.weights.values())     # as float32
    if size >= LIMIT:
        raise ExchangeError(f"{path}: its weights take {files.human(size)} as float32; an ONNX "
                            f"file holds at most 2 GiB (protobuf's limit): export to "
                            f"safetensors instead")
    model = build_graph({k: np.asarray(v) for k, v in ck.weights.items()}, cfg)
    states = cells.get(cfg.cell).state
    info = {**export_info(ck, cfg), "dtype": "float32",
            "inputs": {"tokens": "(N, T) int64", **{f"{s}0": f"({cfg.layers}, N, "
                                                           f"{cfg.hidden}) float32"
                                                   for s in states}},
            "outputs": {"logits": f"(N, T, {cfg.vocab_size}) float32" + (
                             ", log-probabilities" if cfg.clusters() else ""),
                        **{s: f"({cfg.layers}, N, {cfg.hidden}) float32" for s in states}}}
    text = json.dumps({**info, "tokens": ck.vocab.tokens, **sidecar(ck.vocab),
                       "config": ck.config}, indent=1)
    try:
        data = model.SerializeToString()
    except Exception as err:        # noqa: BLE001  protobuf's EncodeError: over its limit
        raise ExchangeError(f"{path}: the ONNX graph cannot be written ({err}); an ONNX file "
                            f"holds at most 2 GiB: export to safetensors instead") from None
    write_both(output, data, meta_path, (text + "\n").encode("utf-8"))
    return Path(output), meta_path
