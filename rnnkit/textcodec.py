"""Text <-> token ids for a model, from the vocabulary stored in its checkpoint.

The rules are the tokenizer's (rnnkit/tokenize.py) and match `Corpus.encode`/`decode`, but need
no corpus file, and decoding streams: `decoder()` turns one id at a time into the text to print
now (a byte-level model's multi-byte UTF-8 characters are held back until complete).
"""
import codecs

import numpy as np

from rnnkit.errors import RnnkitError
from rnnkit.tokenize import EOS


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

    def encode(self, text):
        """Ids of `text` as an int64 array. Char and byte level raise UnknownSymbol for a symbol
        outside the vocabulary; word level maps unknown words to <unk>."""
        index = self.vocabulary.index
        if self.level == "word":
            words = text.replace("\n", f" {EOS} ").split()
            unk = self.vocabulary.unk_id
            if unk is None and any(w not in index for w in words):
                bad = next(w for w in words if w not in index)
                raise UnknownSymbol(f"word {bad!r} is not in the vocabulary (which has no <unk>)")
            return np.array([index.get(w, unk) for w in words], np.int64)
        if self.level == "byte":
            data = text if isinstance(text, bytes) else text.encode(self.encoding)
            symbols = [chr(b) for b in data]
        else:
            symbols = text
        ids = np.empty(len(symbols), np.int64)
        for i, s in enumerate(symbols):
            if s not in index:
                what = (f"byte 0x{ord(s):02x}" if self.level == "byte" else
                        f"character {s!r} (U+{ord(s):04X})")
                raise UnknownSymbol(f"{what} at position {i} is not in the model's vocabulary")
            ids[i] = index[s]
        return ids

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
