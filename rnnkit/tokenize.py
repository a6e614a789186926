"""Tokenizers and the vocabulary.

Three levels:
- char: one token per Unicode code point. Vocabulary: the code points seen, in code point order.
- byte: one token per byte of the file, whatever its encoding. Vocabulary: the byte values seen,
  in order; a byte token's string is chr(value) (its latin-1 character).
- word: whitespace-separated words, and each newline is an `<eos>` token as in the Penn Treebank
  LM files; a file whose last line has no newline still ends with `<eos>`. Vocabulary: `<unk>`,
  `<eos>`, then the words by count (most frequent first, ties in code point order), keeping at
  most `max_vocab` tokens in all and only words seen at least `min_count` times; the rest become
  `<unk>`. A literal `<unk>` or `<eos>` in the text is that special token.

Each tokenizer cuts blocks of input into units (a code point array, a byte array, a list of
words), counts them in the first pass, and maps them to ids in the second, vectorised where it can.
"""
from collections import Counter
from itertools import repeat

import numpy as np

from rnnkit.sources import InputError

UNK, EOS = "<unk>", "<eos>"
LEVELS = ("char", "byte", "word")
CODE_POINTS = 0x110000


def id_dtype(vocab_size):
    """The smallest unsigned dtype holding the ids 0 .. vocab_size - 1."""
    if vocab_size <= 1 << 8:
        return np.dtype(np.uint8)
    if vocab_size <= 1 << 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


class Vocabulary:
    """Tokens in id order (`tokens[i]` is the string of id i)."""

    def __init__(self, level, tokens):
        self.level = level
        self.tokens = list(tokens)
        self.index = {token: i for i, token in enumerate(self.tokens)}
        self.unk_id = self.index.get(UNK) if level == "word" else None
        self.eos_id = self.index.get(EOS) if level == "word" else None

    def __len__(self):
        return len(self.tokens)

    @property
    def dtype(self):
        return id_dtype(len(self.tokens))

    def save(self, h5file):
        """Write the dataset /vocab: code points (char), byte values (byte), UTF-8 strings (word)."""
        if self.level == "word":
            import h5py

            data = np.array(self.tokens, dtype=object)
            h5file.create_dataset("vocab", data=data, dtype=h5py.string_dtype("utf-8"))
        else:
            dtype = np.uint32 if self.level == "char" else np.uint8
            h5file.create_dataset("vocab", data=np.array([ord(t) for t in self.tokens], dtype))

    @classmethod
    def load(cls, h5file, level):
        data = h5file["vocab"]
        if level == "word":
            return cls(level, data.asstr()[()])
        return cls(level, [chr(c) for c in data[()].tolist()])


def code_points(text):
    """The code points of `text` as a uint8 array (ASCII text) or a uint32 array."""
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), np.uint8)
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), "<u4")


def add_counts(counts, units):
    """counts[u] += 1 for each unit u (a uint8 or uint32 array)."""
    if units.dtype == np.uint8 and len(units) > 1:
        # bincount casts to intp first; counting byte pairs as uint16 halves that work
        even = len(units) & ~1
        pairs = np.bincount(units[:even].view(np.uint16), minlength=1 << 16).reshape(256, 256)
        counts[:256] += pairs.sum(0) + pairs.sum(1)
        if even < len(units):
            counts[units[-1]] += 1
    elif len(units):
        found = np.bincount(units)
        counts[:len(found)] += found


class CharTokenizer:
    level = "char"
    reads_bytes = False

    def __init__(self):
        self.counts = np.zeros(CODE_POINTS, np.int64)

    def splitter(self, path):
        return lambda text, final: code_points(text)

    def count(self, units):
        add_counts(self.counts, units)

    def vocabulary(self, max_vocab=None, min_count=1):
        return Vocabulary(self.level, [chr(c) for c in np.flatnonzero(self.counts).tolist()])

    def unknown(self, vocab):
        """The first symbol counted so far that `vocab` lacks, or None."""
        known = np.zeros(len(self.counts), bool)
        known[[ord(t) for t in vocab.tokens]] = True
        missing = np.flatnonzero((self.counts > 0) & ~known)
        return chr(missing[0]) if len(missing) else None

    def id_counts(self, vocab):
        return self.counts[[ord(t) for t in vocab.tokens]].astype(np.uint64)

    def encoder(self, vocab):
        table = np.zeros(len(self.counts), vocab.dtype)
        table[[ord(t) for t in vocab.tokens]] = np.arange(len(vocab))
        small = table[:256].tobytes() if vocab.dtype == np.uint8 else None

        def encode(units):
            if small is not None and units.dtype == np.uint8:
                # bytes.translate is a 256-entry lookup, ~5x faster than np.take on uint8
                return np.frombuffer(units.tobytes().translate(small), np.uint8)
            return np.take(table, units)

        return encode


class ByteTokenizer(CharTokenizer):
    level = "byte"
    reads_bytes = True

    def __init__(self):
        self.counts = np.zeros(256, np.int64)

    def splitter(self, path):
        return lambda data, final: np.frombuffer(data, np.uint8)


class WordTokenizer:
    level = "word"
    reads_bytes = False

    def __init__(self):
        self.counts = Counter()

    def splitter(self, path):
        """A function of (text block, final) giving the words of a file, block by block.

        A word cut by the end of a block is held back and joined to the start of the next one.
        """
        state = {"carry": "", "ended": True}

        def split(text, final):
            if "\0" in text:
                raise InputError(f"{path}: NUL character in the text; use --level byte")
            text = state["carry"] + text
            words = text.replace("\n", f" {EOS} ").split()
            state["carry"] = ""
            if not final and text and not text[-1].isspace():
                state["carry"] = words.pop()
            if words:
                state["ended"] = words[-1] == EOS
            if final and not state["ended"]:
                words.append(EOS)
                state["ended"] = True
            return words

        return split

    def count(self, words):
        self.counts.update(words)

    def vocabulary(self, max_vocab=None, min_count=1):
        specials = [UNK, EOS]
        words = [(w, n) for w, n in self.counts.items() if n >= min_count and w not in specials]
        words.sort(key=lambda item: (-item[1], item[0]))
        if max_vocab is not None:
            words = words[:max(0, max_vocab - len(specials))]
        tokens = specials + [w for w, _ in words]
        for token in tokens:
            try:
                token.encode("utf-8")
            except UnicodeEncodeError:
                raise InputError(f"word {token!r} is not valid Unicode; use --level byte") from None
        return Vocabulary(self.level, tokens)

    def unknown(self, vocab):
        return None  # unknown words become <unk>

    def id_counts(self, vocab):
        out = np.zeros(len(vocab), np.uint64)
        for word, n in self.counts.items():
            out[vocab.index.get(word, vocab.unk_id)] += n
        return out

    def encoder(self, vocab):
        index, unk = vocab.index, vocab.unk_id

        def encode(words):
            return np.fromiter(map(index.get, words, repeat(unk)), vocab.dtype, len(words))

        return encode


TOKENIZERS = {"char": CharTokenizer, "byte": ByteTokenizer, "word": WordTokenizer}
