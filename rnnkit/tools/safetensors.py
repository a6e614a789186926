"""Weights to and from PyTorch: safetensors files with word_language_model's names.

    from rnnkit.tools.safetensors import export_checkpoint
    from rnnkit.tools.safetensors_import import import_safetensors
    export_checkpoint("runs/x/best.h5", "model.safetensors")    # and model.json beside it
    import_safetensors("model.safetensors", "model.h5")         # reads model.json too

PyTorch's examples/word_language_model (`RNNModel`: encoder, rnn, decoder) names and lays out
the parameters as below; the gate order is the same (docs/cells.md), so each maps by a
transpose. k is the layer, G the gate blocks (LSTM 4, GRU 3, RNN 1).

    rnnkit                  PyTorch
    embed (V, E)            encoder.weight (V, E)
    lk.w_x (D, G*H)         rnn.weight_ih_lk (G*H, D), the transpose
    lk.w_h (H, G*H)         rnn.weight_hh_lk (G*H, H), the transpose
    lk.b (G*H)              rnn.bias_ih_lk = b; rnn.bias_hh_lk = 0 (GRU: [0, 0, b_hn])
    lk.b_hn (H), GRU        (the last block of rnn.bias_hh_lk)
    out.w (V, H)            decoder.weight (tied: a copy of encoder.weight)
    out.b (V)               decoder.bias

With an adaptive softmax the decoder is torch.nn.AdaptiveLogSoftmaxWithLoss(H, V, cutoffs,
div_value, head_bias), its own names under decoder. (rnnkit/model/softmax.py, same layouts):

    out.head.w (c_0 + k, H) decoder.head.weight     out.head.b: decoder.head.bias
    out.tail{i}.proj        decoder.tail.{i}.0.weight
    out.tail{i}.w           decoder.tail.{i}.1.weight

Import adds bias_ih and bias_hh (the GRU's n blocks stay apart: b_n and b_hn); a missing bias
(bias=False) is zero. Exported and imported again, every weight comes back bit for bit. The
shapes expected are those most tensors agree on; a tensor of another shape, or one holding
NaN or infinity, is a one-line error naming it.

What the weights do not say goes in a JSON file beside them (NAME.json for NAME.safetensors):
{"format": "rnnkit-export", "format_version": 1, "cell", "rnn_type" (word_language_model's
--model), "level", "encoding", "tie_weights", "dtype", "softmax" (with "adaptive": its
"cutoffs" list, "div_value", "head_bias", the module's arguments), "start_id" (the token a
text follows, as generate and score start from: the newline, <eos>), "tokens" (the vocabulary
in id order; a byte token is its latin-1 character), "tokenizer" (bpe level: the Hugging Face
tokenizer's JSON, which tokenizers.Tokenizer.from_str reads), "config" (rnnkit's training
config)}. A
file made in PyTorch imports with such a JSON holding at least "level" and "tokens" (and
"cell" for an Elman RNN, whose weights do not tell tanh from relu; "div_value" where the
tails' sizes do not tell it). The header's metadata repeats the JSON's settings, each as JSON
text. Both directions read and write the format here (no extra needed): export in
safetensors_bytes, import in rnnkit/tools/safetensors_import.py (bfloat16 included).
"""
import json
import os
from pathlib import Path

import numpy as np

from rnnkit.corpus import bpe
from rnnkit import cells, files
from rnnkit.version import __version__
from rnnkit.training.checkpoint import load
from rnnkit.model.config import ConfigError, TrainConfig
from rnnkit.model.config_file import from_dict
from rnnkit.errors import RnnkitError

FORMAT, FORMAT_VERSION = "rnnkit-export", 1
RNN_TYPES = {"lstm": "LSTM", "gru": "GRU", "rnn-tanh": "RNN_TANH", "rnn-relu": "RNN_RELU"}


class ExchangeError(RnnkitError, ValueError):
    """A file that cannot be exported or imported (one line)."""


TYPES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64"}


def safetensors_bytes(tensors, metadata):
    """A safetensors file (its format: an 8-byte little-endian header size, the JSON header
    padded with spaces to a multiple of 8, the tensors' bytes) of float32/float64 `tensors`
    and str `metadata`, written here: names and metadata in sorted order, so that the same
    checkpoint gives the same bytes (the library's map gave its metadata in any order)."""
    header, at = {"__metadata__": dict(sorted(metadata.items()))}, 0
    arrays = {name: np.ascontiguousarray(tensors[name]) for name in sorted(tensors)}
    for name, a in arrays.items():
        header[name] = {"dtype": TYPES[a.dtype], "shape": list(a.shape),
                        "data_offsets": [at, at + a.nbytes]}
        at += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return b"".join([len(text).to_bytes(8, "little"), text,
                     *(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
                       for a in arrays.values())])


def sidecar(path):
    """The JSON file that goes with a weights file: NAME.json for NAME.safetensors."""
    return Path(path).with_suffix(".json")


def model_config(ck, path):
    """The TrainConfig of a loaded checkpoint, its vocabulary size set."""
    try:
        cfg = from_dict(ck.config, TrainConfig())
        cfg.model.vocab_size = len(ck.vocab)
        cfg.model.check()
    except ConfigError as err:
        raise ExchangeError(f"{path}: the stored config is not usable: {err}") from None
    return cfg


# -------------------------------------------------------------------------------- export

def to_pytorch(weights, cfg):
    """rnnkit's named weights -> word_language_model's state dict (contiguous arrays)."""
    H = cfg.hidden
    out = {"encoder.weight": weights["embed"]}
    for k in range(cfg.layers):
        b = weights[f"l{k}.b"]
        bias_hh = np.zeros_like(b)
        if "b_hn" in cells.get(cfg.cell).extra:    # the GRU's: the n block of bias_hh
            bias_hh[2 * H:] = weights[f"l{k}.b_hn"]
        out[f"rnn.weight_ih_l{k}"] = weights[f"l{k}.w_x"].T
        out[f"rnn.weight_hh_l{k}"] = weights[f"l{k}.w_h"].T
        out[f"rnn.bias_ih_l{k}"] = b
        out[f"rnn.bias_hh_l{k}"] = bias_hh
    clusters = cfg.clusters()
    if clusters is not None:
        for ours, theirs in adaptive_names(clusters).items():
            out[theirs] = weights[ours]
    else:
        out["decoder.weight"] = weights["embed" if cfg.tie_weights else "out.w"]
        out["decoder.bias"] = weights["out.b"]
    return {name: np.ascontiguousarray(a) for name, a in out.items()}


def export_checkpoint(path, output, force=False):
    """Write the weights of checkpoint `path` to `output` (safetensors, PyTorch's names) and
    the vocabulary and settings to sidecar(output); returns the two paths written."""
    meta_path = check_outputs(path, output, force, "safetensors")
    ck, cfg = load_export(path)
    tensors = to_pytorch({k: np.asarray(v) for k, v in ck.weights.items()}, cfg)
    info = export_info(ck, cfg)
    weights = safetensors_bytes(tensors, {**{k: v if isinstance(v, str) else json.dumps(v)
                                            for k, v in info.items()},
                                         "producer": f"rnnkit {__version__}"})
    sidecar_text = json.dumps({**info, "tokens": ck.vocab.tokens, **bpe.sidecar(ck.vocab),
                               "config": ck.config}, indent=1) + "\n"
    write_both(output, weights, meta_path, sidecar_text.encode("utf-8"))
    return Path(output), meta_path


def check_outputs(path, output, force, suffix):
    """sidecar(output), once neither it nor `output` is in the way of an export of `path`."""
    meta_path = sidecar(output)
    if os.path.abspath(meta_path) == os.path.abspath(output):
        raise ExchangeError(f"output {output} ends in .json, the name of the file that goes "
                            f"with it; name it NAME.{suffix}")
    for out in (output, meta_path):
        files.check_output(out, force, inputs=[path])
    return meta_path


def load_export(path):
    """(checkpoint, ModelConfig) of a checkpoint to export."""
    ck = load(path, weights_only=True)
    if ck.vocab is None:
        raise ExchangeError(f"{path}: the checkpoint has no vocabulary")
    return ck, model_config(ck, path).model


def export_info(ck, cfg):
    """What the JSON beside an export says of the model, but the tokens and the config."""
    from rnnkit.corpus.textcodec import TextCodec

    return {"format": FORMAT, "format_version": FORMAT_VERSION, "cell": cfg.cell,
            "rnn_type": RNN_TYPES[cfg.cell], "level": ck.vocab.level, "encoding": ck.encoding,
            "tie_weights": bool(cfg.tie_weights), "dtype": cfg.dtype, **softmax_info(cfg),
            "start_id": TextCodec(ck.vocab, ck.encoding).start_id()}


def adaptive_names(clusters):
    """rnnkit's names of an adaptive softmax's weights -> PyTorch's (the module's
    state_dict() names under decoder.)."""
    out = {"out.head.w": "decoder.head.weight"}
    if clusters.head_bias:
        out["out.head.b"] = "decoder.head.bias"
    for i in range(clusters.k):
        out[f"out.tail{i}.proj"] = f"decoder.tail.{i}.0.weight"
        out[f"out.tail{i}.w"] = f"decoder.tail.{i}.1.weight"
    return out


def softmax_info(cfg):
    """The output layer in the export's JSON: an adaptive one's module arguments."""
    c = cfg.clusters()
    if c is None:
        return {"softmax": "full"}
    return {"softmax": "adaptive", "cutoffs": list(c.cutoffs), "div_value": c.div_value,
            "head_bias": c.head_bias}


def write_both(path, data, meta_path, meta):
    """Both new files or both old ones (files.atomic_all)."""
    files.check_space(path, len(data) + len(meta))
    with files.atomic_all([path, meta_path], needed=len(data) + len(meta)) as (tmp, tmp_meta):
        Path(tmp).write_bytes(data)
        Path(tmp_meta).write_bytes(meta)
