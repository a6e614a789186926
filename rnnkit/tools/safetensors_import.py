"""`rnnkit import`: an rnnkit checkpoint from a safetensors file with word_language_model's
names and the JSON beside it (the names, layouts and JSON fields: rnnkit/tools/safetensors.py).
"""
import codecs
import json
import re
import struct
from collections import Counter
from pathlib import Path

import numpy as np

from rnnkit import cells, files
from rnnkit.corpus import bpe
from rnnkit.corpus.tokenize import EOS, LEVELS, Vocabulary
from rnnkit.model.config import ConfigError, ModelConfig, TrainConfig
from rnnkit.model.config_file import from_dict
from rnnkit.errors import RnnkitError
from rnnkit.tools.safetensors import RNN_TYPES, ExchangeError, adaptive_names, sidecar
from rnnkit.training.checkpoint import Checkpoint, save


# safetensors' dtype names -> what rnnkit reads them as (bfloat16: its bits are the top half
# of a float32's, so it widens exactly)
DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "BF16": np.uint16}
READS = "float16, bfloat16, float32 and float64"


def read_safetensors(path):
    """(tensors, the header's metadata) of a safetensors file, read here rather than by the
    library, whose numpy reader has no bfloat16 (PyTorch's usual type for weights)."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise ExchangeError(f"cannot read {path}: {err.strerror}") from None
    try:
        header, start = _header(data)
    except (ValueError, struct.error) as err:
        raise ExchangeError(f"{path} is not a safetensors file rnnkit can read ({err})") \
            from None
    meta = header.pop("__metadata__", None) or {}
    kinds = sorted({t["dtype"] for t in header.values()} - set(DTYPES))
    if kinds:
        raise ExchangeError(f"{path}: tensors of type {', '.join(kinds)}; rnnkit reads {READS}")
    tensors = {}
    for name, t in header.items():
        lo, hi = t["data_offsets"]
        a = np.frombuffer(data, DTYPES[t["dtype"]], (hi - lo) // DTYPES[t["dtype"]]().itemsize,
                          start + lo).reshape(t["shape"])
        if t["dtype"] == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = a
    # the format's metadata is text to text: anything else is left out
    meta = {k: v for k, v in meta.items() if isinstance(v, str)} if isinstance(meta, dict) else {}
    return tensors, meta


def _header(data):
    """The header of a safetensors file (checked: every tensor's bytes inside the file and
    as many as its shape and type take) and where the tensors' bytes start."""
    size = struct.unpack("<Q", data[:8])[0]
    if size > len(data) - 8:
        raise ValueError(f"a header of {size:,} bytes in a file of {len(data):,}")
    header = json.loads(data[8:8 + size])
    if not isinstance(header, dict):
        raise ValueError("its header is not a JSON object")
    end = len(data) - 8 - size
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if not (isinstance(t, dict) and isinstance(t.get("dtype"), str) and
                isinstance(t.get("shape"), list) and isinstance(t.get("data_offsets"), list) and
                len(t["data_offsets"]) == 2 and
                all(isinstance(n, int) and n >= 0 for n in t["shape"] + t["data_offsets"])):
            raise ValueError(f"tensor {name!r}: no dtype, shape and data_offsets")
        lo, hi = t["data_offsets"]
        item = DTYPES[t["dtype"]]().itemsize if t["dtype"] in DTYPES else None
        if not lo <= hi <= end or (item and hi - lo != item * int(np.prod(t["shape"]))):
            raise ValueError(f"tensor {name!r}: its bytes {lo}-{hi} do not fit")
    return header, 8 + size


def read_sidecar(path):
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except FileNotFoundError:
        raise ExchangeError(f"{path} not found: the vocabulary that goes with the weights "
                            f"(rnnkit export writes it; give another with --vocab)") from None
    except (OSError, ValueError) as err:
        raise ExchangeError(f"{path}: not a readable JSON file ({err})") from None
    if not isinstance(info, dict) or not isinstance(info.get("tokens"), list):
        raise ExchangeError(f"{path}: expected a JSON object with \"tokens\", the vocabulary "
                            f"in id order")
    if not all(isinstance(t, str) for t in info["tokens"]):
        raise ExchangeError(f"{path}: \"tokens\" must be strings (the vocabulary in id order)")
    for key, kind, what in FIELDS:
        value = info.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool) and
                                  kind is not bool):
            raise ExchangeError(f"{path}: \"{key}\" must be {what}, not {json.dumps(value)}")
    return info


# The JSON's fields that import reads, with their JSON types
FIELDS = [("level", str, "a string"), ("cell", str, "a string"), ("rnn_type", str, "a string"),
          ("encoding", str, "a string"), ("tie_weights", bool, "true or false"),
          ("div_value", (int, float), "a number"), ("config", dict, "a JSON object")]


def _cell_and_hidden(tensors, info, meta, path):
    """(cell, H) from what most tensors agree on, so that the one tensor that does not is
    named with the shape expected of it (_tensor): the layers' rows (G*H), the hidden size
    of the tensors that have it, and the cell the JSON names (else the one of G gate blocks)."""
    layers = range(_layers(tensors))
    rows = Counter(tensors[f"rnn.{w}_l{k}"].shape[0] for k in layers for w in (
        "weight_ih", "weight_hh", "bias_ih", "bias_hh") if f"rnn.{w}_l{k}" in tensors)
    hidden = Counter([tensors[f"rnn.weight_hh_l{k}"].shape[-1] for k in layers
                      if f"rnn.weight_hh_l{k}" in tensors] +
                     [tensors[f"rnn.weight_ih_l{k}"].shape[-1] for k in layers
                      if k and f"rnn.weight_ih_l{k}" in tensors] +
                     [tensors[n].shape[-1] for n in ("decoder.weight",) if n in tensors])
    GH = rows.most_common(1)[0][0]
    cell = info.get("cell") or meta.get("cell")
    if cell is None and info.get("rnn_type"):
        cell = {v: k for k, v in RNN_TYPES.items()}.get(info["rnn_type"])
    if cell:
        if cell not in RNN_TYPES:
            raise ExchangeError(f"{path}: unknown cell {cell!r} (one of "
                                f"{', '.join(RNN_TYPES)})")
        G = cells.get(cell).gates
        # a hidden size that several tensors agree on and that says another gate count
        agreed = next(iter(hidden)) if len(hidden) == 1 and hidden.total() > 1 else None
        if GH % G or (agreed and GH != G * agreed):
            what = (f"{GH // agreed} gate blocks of hidden size {agreed}"
                    if agreed and GH % agreed == 0 else f"{GH} rows a layer")
            raise ExchangeError(f"{path}: cell {cell!r} does not fit weights of {what}")
        return cell, GH // G
    H = next((H for H, _ in hidden.most_common() if GH % H == 0 and
              cells.with_gates(GH // H)), None)
    if H is None:
        raise ExchangeError(f"{path}: the layers' {GH} rows are no whole number of gate "
                            f"blocks of the hidden size ({', '.join(map(str, hidden))})")
    found = cells.with_gates(GH // H)
    if len(found) > 1:
        raise ExchangeError(f"{path}: an Elman RNN's weights do not say tanh or relu; put "
                            f"\"cell\": \"rnn-tanh\" or \"rnn-relu\" in its JSON file")
    return found[0], H


def _layers(tensors):
    """1 + the highest layer any rnn. tensor names (one missing below it is then named)."""
    found = [int(m.group(1)) for m in map(LAYER.fullmatch, tensors) if m]
    return max(found, default=-1) + 1


LAYER = re.compile(r"rnn\.(?:weight|bias)_(?:ih|hh)_l(\d+)")


def _tensor(tensors, name, shape, path, dtype):
    if name not in tensors:
        raise ExchangeError(f"{path}: tensor {name} is missing")
    a = tensors[name]
    if tuple(a.shape) != tuple(shape):
        raise ExchangeError(f"{path}: tensor {name} has shape {tuple(a.shape)}, expected "
                            f"{tuple(shape)}")
    bad = ~np.isfinite(a)
    if bad.any():       # NaN weights would import, and generate and score give only NaN
        first = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad)), a.shape))
        raise ExchangeError(f"{path}: tensor {name} holds {int(bad.sum()):,} value(s) that "
                            f"are not finite numbers ({a[first]} at {list(first)}); a model "
                            f"with them computes only NaN")
    return np.asarray(a, dtype)


def from_pytorch(tensors, info, meta, path):
    """(ModelConfig, rnnkit's named weights) from word_language_model's state dict."""
    if "encoder.weight" not in tensors and "decoder.weight" in tensors and \
            info.get("tie_weights") is not False:
        # safetensors.torch.save_model keeps one name of a shared tensor: a tied model
        tensors = {("encoder.weight" if k == "decoder.weight" else k): v
                   for k, v in tensors.items()}
    for name in ("encoder.weight", "rnn.weight_hh_l0",
                 "decoder.head.weight" if "decoder.head.weight" in tensors else "decoder.bias"):
        if name not in tensors:
            raise ExchangeError(f"{path}: tensor {name} is missing (expected PyTorch "
                                f"word_language_model's names: encoder., rnn., decoder.)")
    kinds = {np.dtype(a.dtype) for a in tensors.values()}
    dtype = np.float64 if kinds == {np.dtype(np.float64)} else np.float32
    # the vocabulary's size as most of the embedding, the decoder and the JSON's tokens say, so
    # that the one that differs is named (_tensor, _vocabulary)
    if tensors["encoder.weight"].ndim != 2:
        raise ExchangeError(f"{path}: tensor encoder.weight has shape "
                            f"{tuple(tensors['encoder.weight'].shape)}, expected (V, E)")
    E = tensors["encoder.weight"].shape[1]
    V = Counter([tensors["encoder.weight"].shape[0], len(info["tokens"])] +
                [tensors[n].shape[0] for n in ("decoder.weight", "decoder.bias")
                 if n in tensors]).most_common(1)[0][0]
    layers = _layers(tensors)
    cell, H = _cell_and_hidden(tensors, info, meta, path)
    GH = cells.get(cell).gates * H
    adaptive = _adaptive(tensors, info, H, path) if "decoder.head.weight" in tensors else {}
    tied = info.get("tie_weights")
    dec = tensors.get("decoder.weight")
    same = dec is None or (dec.shape == (V, E) and np.array_equal(dec, tensors[
        "encoder.weight"]))
    if adaptive:
        if tied:
            raise ExchangeError(f"{path}: its JSON says \"tie_weights\": true, but an adaptive "
                                f"softmax has no decoder.weight to tie (set it to false)")
        tied = False
    elif tied is None:    # a PyTorch file: tied when the decoder is the encoder
        tied = same
    elif tied and not same:
        raise ExchangeError(f"{path}: its JSON says \"tie_weights\": true, but decoder.weight "
                            f"differs from encoder.weight (set it to false to import both)")
    try:
        cfg = ModelConfig(cell=cell, vocab_size=V, embed=E, hidden=H, layers=max(layers, 1),
                          tie_weights=bool(tied), dtype=np.dtype(dtype).name, **adaptive)
    except ConfigError as err:
        raise ExchangeError(f"{path}: {err}") from None
    used = {"encoder.weight"} if adaptive else {"encoder.weight", "decoder.bias"} | (
        {"decoder.weight"} if "decoder.weight" in tensors else set())
    weights = {"embed": _tensor(tensors, "encoder.weight", (V, E), path, dtype)}
    for k in range(cfg.layers):
        D = E if k == 0 else H
        names = [f"rnn.{w}_l{k}" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        used.update(names)
        w_ih = _tensor(tensors, names[0], (GH, D), path, dtype)
        w_hh = _tensor(tensors, names[1], (GH, H), path, dtype)
        b_ih, b_hh = (_tensor(tensors, n, (GH,), path, dtype) if n in tensors else
                      np.zeros(GH, dtype) for n in names[2:])
        weights[f"l{k}.w_x"] = np.ascontiguousarray(w_ih.T)
        weights[f"l{k}.w_h"] = np.ascontiguousarray(w_hh.T)
        if "b_hn" in cells.get(cell).extra:
            weights[f"l{k}.b"] = np.concatenate([b_ih[:2 * H] + b_hh[:2 * H], b_ih[2 * H:]])
            weights[f"l{k}.b_hn"] = b_hh[2 * H:].copy()
        else:
            weights[f"l{k}.b"] = b_ih + b_hh
    if adaptive:
        shapes = cfg.clusters().shapes()
        for ours, theirs in adaptive_names(cfg.clusters()).items():
            weights[ours] = _tensor(tensors, theirs, shapes[ours], path, dtype)
            used.add(theirs)
    else:
        if not cfg.tie_weights:
            weights["out.w"] = _tensor(tensors, "decoder.weight", (V, H), path, dtype)
        weights["out.b"] = _tensor(tensors, "decoder.bias", (V,), path, dtype)
    extra = sorted(set(tensors) - used)
    if extra:
        raise ExchangeError(f"{path}: tensor {extra[0]} has no place in an rnnkit model "
                            f"(bidirectional and projected RNNs are not supported)")
    return cfg, weights


def _adaptive(tensors, info, H, path):
    """ModelConfig's adaptive softmax settings from an AdaptiveLogSoftmaxWithLoss's weights:
    the cutoffs from the head's and the tails' sizes; div_value from the JSON, else one that
    gives every tail's projection size (they are all div_value sets: any that gives them is
    the same model), the simplest: 4, 2, an integer, the fewest decimals."""
    k = 0
    while f"decoder.tail.{k}.1.weight" in tensors:
        k += 1
    sizes = [tensors[f"decoder.tail.{i}.1.weight"].shape[0] for i in range(k)]
    hidden = [tensors[f"decoder.tail.{i}.1.weight"].shape[1] for i in range(k)]
    shortlist = tensors["decoder.head.weight"].shape[0] - k
    if k == 0 or shortlist < 1:
        raise ExchangeError(f"{path}: decoder.head.weight without decoder.tail.N.1.weight: "
                            f"not an adaptive softmax rnnkit can read")
    cutoffs = [shortlist + sum(sizes[:i]) for i in range(k)]
    model = (info.get("config") or {}).get("model", {})
    given = info.get("div_value", model.get("div_value"))
    for d in [given] if given is not None else [4.0, 2.0, *range(3, H + 1),
                                                 *_between(H, hidden)]:
        if all(int(H // (float(d) ** (i + 1))) == h for i, h in enumerate(hidden)):
            return dict(softmax="adaptive", cutoffs=cutoffs, div_value=float(d),
                        head_bias="decoder.head.bias" in tensors)
    if given is not None:
        raise ExchangeError(f"{path}: its JSON's div_value {given} does not give the tails' "
                            f"projection sizes {hidden} (H // div_value^(i+1), H = {H}); "
                            f"correct it, or leave it out to have it found")
    raise ExchangeError(f"{path}: no div_value gives the tails' projection sizes {hidden} "
                        f"(H // div_value^(i+1), H = {H}): not an adaptive softmax of "
                        f"PyTorch's")


def _between(H, hidden):
    """div_values with the fewest decimals inside the range where H // d^(i+1) is each
    hidden[i] (PyTorch's projection sizes)."""
    if not all(hidden):
        return []
    lo = max((H / (h + 1)) ** (1 / (i + 1)) for i, h in enumerate(hidden))
    hi = min((H / h) ** (1 / (i + 1)) for i, h in enumerate(hidden))
    return [round((lo + hi) / 2, digits) for digits in range(1, 8)] if lo < hi else []


def _vocabulary(info, meta, V, path):
    level = info.get("level") or meta.get("level")
    if level not in LEVELS:
        raise ExchangeError(f"{path}: \"level\" must be one of {', '.join(LEVELS)}, not "
                            f"{level!r}")
    tokens = info["tokens"]
    if len(tokens) != V or len(set(tokens)) != len(tokens):
        raise ExchangeError(f"{path}: {len(tokens)} tokens ({len(set(tokens))} distinct) for "
                            f"an embedding of {V} rows")
    if level == "bpe":
        try:
            return bpe.from_sidecar(info, tokens, path)
        except RnnkitError as err:
            raise ExchangeError(str(err)) from None
    if level != "word" and not all(isinstance(t, str) and len(t) == 1 and
                                   (level == "char" or ord(t) < 256) for t in tokens):
        raise ExchangeError(f"{path}: a {level}-level vocabulary holds single characters"
                            f"{' below U+0100' if level == 'byte' else ''}")
    if level == "word" and not all(isinstance(t, str) and t for t in tokens):
        raise ExchangeError(f"{path}: a word-level vocabulary holds non-empty strings")
    if level == "word" and EOS not in tokens:
        raise ExchangeError(f"{path}: a word-level vocabulary needs {EOS}, the token that ends "
                            f"each line (rnnkit preprocess puts it at id 1)")
    return Vocabulary(level, tokens)


def import_safetensors(path, output, vocab=None, force=False):
    """Write an rnnkit checkpoint to `output` from the safetensors file `path` and its JSON
    (vocab, by default sidecar(path)); returns the ModelConfig."""
    vocab = vocab or sidecar(path)
    files.check_output(output, force, inputs=[path, vocab])
    tensors, meta = read_safetensors(path)
    info = read_sidecar(vocab)
    cfg, weights = from_pytorch(tensors, info, meta, path)
    vocabulary = _vocabulary(info, meta, cfg.vocab_size, vocab)
    try:
        train = from_dict(info.get("config") or {}, TrainConfig())
    except ConfigError as err:
        raise ExchangeError(f"{vocab}: its \"config\" is not usable: {err}") from None
    # its paths were relative to a run folder somewhere else: they name nothing here
    train.data.corpus, train.train.init_from = "", ""
    train.model = ModelConfig(**{**{f: getattr(cfg, f) for f in (
        "cell", "embed", "hidden", "layers", "tie_weights", "dtype", "softmax", "cutoffs",
        "div_value", "head_bias")}, "dropout": train.model.dropout})
    encoding = info.get("encoding") or meta.get("encoding") or "utf-8"
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ExchangeError(f"{vocab}: unknown encoding {encoding!r}") from None
    save(output, Checkpoint(config=train.to_dict(), weights=weights, vocab=vocabulary,
                            encoding=encoding))
    return cfg
