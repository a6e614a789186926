"""Text <-> token ids for a model, from the vocabulary stored in its checkpoint.

The rules are the tokenizer's (rnnkit/tokenize.py) and match `Corpus.encode`/`decode`, but need
no corpus file, and decoding streams: `decoder()` turns one id at a time into the text to print
now (a byte-level model's multi-byte UTF-8 characters are held back until complete).

A character (or byte) that a char (byte) vocabulary lacks is an error by default, naming its
line and column; `unknown="skip"` leaves such symbols out and `"replace"` puts REPLACEMENTS'
first symbol the vocabulary has in their place. Word level maps unknown words to <unk>.
"""
import codecs

import numpy as np

from rnnkit.errors import RnnkitError
from rnnkit.tokenize import EOS, code_points

UNKNOWN = ("error", "skip", "replace")
REPLACEMENTS = ("\ufffd", "?", " ", "_")    # tried in this order for --unknown replace


class UnknownSymbol(RnnkitError, ValueError):
    """Text holds a symbol that a char or byte vocabulary lacks (message: one line)."""


class TextCodec:
    def __init__(self, vocabulary, encoding="utf-8"):
        self.vocabulary = vocabulary
        self.level = vocabulary.level
        self.encoding = encoding
        self.tokens = vocabulary.tokens

    def __len__(self):
        return len(self.tokens)

    def encode(self, text, unknown="error", where="the text"):
        """Ids of `text` as an int64 array; see encode_text."""
        return self.encode_text(text, unknown, where)[0]

    def encode_text(self, text, unknown="error", where="the text"):
        """(ids, symbols left out or replaced, the replacement or None). Char and byte level
        treat a symbol outside the vocabulary by `unknown` (module docstring); word level maps
        unknown words to <unk>. `where` names the text in messages."""
        if unknown not in UNKNOWN:
            raise ValueError(f"unknown must be one of {', '.join(UNKNOWN)}, not {unknown!r}")
        index = self.vocabulary.index
        if self.level == "word":
            words = text.replace("\n", f" {EOS} ").split()
            unk = self.vocabulary.unk_id
            if unk is None and any(w not in index for w in words):
                bad = next(w for w in words if w not in index)
                raise UnknownSymbol(f"word {bad!r} in {where} is not in the vocabulary (which "
                                    f"has no <unk>)")
            return np.array([index.get(w, unk) for w in words], np.int64), 0, None
        if self.level == "byte":
            data = text if isinstance(text, bytes) else text.encode(self.encoding)
            units = np.frombuffer(data, np.uint8)
        else:
            units = code_points(text)
        table = np.full(max(int(units.max(initial=0)), max(map(ord, self.tokens), default=0))
                        + 1, -1, np.int64)
        table[[ord(t) for t in self.tokens]] = np.arange(len(self.tokens))
        ids = table[units]
        bad = np.flatnonzero(ids < 0)
        if not len(bad):
            return ids, 0, None
        if unknown == "error":
            raise UnknownSymbol(self._unknown_message(units, bad, where))
        if unknown == "skip":
            return ids[ids >= 0], len(bad), None
        symbol = next((s for s in REPLACEMENTS if s in index), None)
        if symbol is None:
            raise UnknownSymbol(f"{self._unknown_message(units, bad, where)}; and it has none "
                                f"of {' '.join(map(repr, REPLACEMENTS))} to replace them by: "
                                f"use --unknown skip")
        ids[bad] = index[symbol]
        return ids, len(bad), symbol

    def _unknown_message(self, units, bad, where):
        first = int(bad[0])
        newline = 10
        line_starts = np.flatnonzero(units[:first] == newline)
        line = len(line_starts) + 1
        column = first - (int(line_starts[-1]) + 1 if len(line_starts) else 0) + 1
        value = int(units[first])
        what = (f"byte 0x{value:02x}" if self.level == "byte" else
                f"character {chr(value)!r} (U+{value:04X})")
        others = len(bad) - 1
        more = f" ({others:,} more unknown symbols follow)" if others else ""
        return (f"{what} at line {line}, column {column} of {where} is not in the model's "
                f"vocabulary{more}; --unknown skip leaves such symbols out, --unknown replace "
                f"puts a known one in their place")

    def decode(self, ids):
        step = self.decoder()
        return "".join(step(i) for i in np.asarray(ids).ravel().tolist()) + step(None)

    def decoder(self):
        """A function of one id giving the text to emit now; call it with None at the end to
        flush what is held back."""
        tokens = self.tokens
        if self.level == "char":
            return lambda i: "" if i is None else tokens[i]
        if self.level == "byte":
            inc = codecs.getincrementaldecoder(self.encoding)(errors="replace")
            return lambda i: inc.decode(b"", final=True) if i is None else \
                inc.decode(bytes([ord(tokens[i])]))
        eos = self.vocabulary.eos_id
        state = {"line_start": True}

        def word(i):
            if i is None:
                return ""
            if i == eos:
                state["line_start"] = True
                return "\n"
            text = tokens[i] if state["line_start"] else " " + tokens[i]
            state["line_start"] = False
            return text

        return word


def read_text(path, level, encoding):
    """The contents of a text file for a model of `level`: bytes for byte level, else str
    decoded with `encoding`; errors are one line (RnnkitError) naming the file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise RnnkitError(f"cannot read {path}: {err.strerror}") from None
    if level == "byte":
        return data
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise RnnkitError(f"unknown encoding {encoding!r}") from None
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        raise RnnkitError(f"{path} is not valid {encoding} at byte {err.start} "
                          f"({err.object[err.start:err.start + 1].hex()}); give its encoding "
                          f"with --encoding (latin-1 reads any bytes)") from None
