"""Tokenizers and the vocabulary.

Three levels here (and bpe, byte-level subwords: rnnkit/corpus/bpe.py):
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
from collections import defaultdict
from itertools import count

import numpy as np

from rnnkit.corpus.sources import InputError

UNK, EOS = "<unk>", "<eos>"
LEVELS = ("char", "byte", "word", "bpe")    # bpe: subwords, rnnkit/corpus/bpe.py
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
        """Write /vocab: code points (char), byte values (byte), UTF-8 strings (word)."""
        if self.level == "word":
            from rnnkit import h5

            h5.write_text(h5file, "vocab", np.array(self.tokens, dtype=object))
        else:
            dtype = np.uint32 if self.level == "char" else np.uint8
            data = np.array([ord(t) for t in self.tokens], dtype)
            h5file.create_dataset("vocab", data=data, fletcher32=bool(len(data)))

    @classmethod
    def load(cls, h5file, level):
        data = h5file["vocab"]
        if level == "word":
            from rnnkit import h5

            return cls(level, h5.read_text(data))
        return cls(level, [chr(c) for c in data[()].tolist()])


SLICE = 1 << 20  # elements per numpy call that casts indices to intp: bounds that temporary


def code_points(text):
    """The code points of `text` as a uint8 (ASCII), uint16 (all below U+10000) or uint32 array;
    `text` may also be ASCII bytes (rnnkit.corpus.sources.read_text's ascii_bytes)."""
    if isinstance(text, bytes):
        return np.frombuffer(text, np.uint8)
    if text.isascii():
        return np.frombuffer(text.encode("ascii"), np.uint8)
    data = text.encode("utf-16-le", "surrogatepass")  # far faster to make than UTF-32
    if len(data) == 2 * len(text):  # no surrogate pairs, so one unit per code point
        return np.frombuffer(data, "<u2")
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), "<u4")


def add_counts(counts, units):
    """counts[u] += 1 for each unit u (a uint8, uint16 or uint32 array)."""
    if units.dtype == np.uint8 and len(units) > 1:
        # bincount casts to intp first; counting byte pairs as uint16 halves that work, and
        # slices keep the intp copy small (a fresh big one per block costs more than counting)
        pairs = np.zeros(1 << 16, np.int64)
        words = units[:len(units) & ~1].view(np.uint16)
        for i in range(0, len(words), SLICE):
            pairs += np.bincount(words[i:i + SLICE], minlength=1 << 16)
        pairs = pairs.reshape(256, 256)
        counts[:256] += pairs.sum(0) + pairs.sum(1)
        if len(units) % 2:
            counts[units[-1]] += 1
        return
    for i in range(0, len(units), SLICE):
        found = np.bincount(units[i:i + SLICE])
        counts[:len(found)] += found


def as_bytes(units):
    """The bytes of a uint8 array: the bytes object that it views whole, in order, if it does
    (code_points' arrays of ASCII), else a copy. A copy of a block costs more than the lookup."""
    base = units.base
    if isinstance(base, bytes) and units.flags.c_contiguous and units.nbytes == len(base):
        return base
    return units.tobytes()


def lookup(table, units):
    """table[units], in slices so the intp copy of the indices stays small."""
    out = np.empty(len(units), table.dtype)
    for i in range(0, len(units), SLICE):
        np.take(table, units[i:i + SLICE], out=out[i:i + SLICE])
    return out


class CharTokenizer:
    level = "char"
    reads_bytes = False
    ascii_bytes = True    # ASCII blocks may come undecoded, as bytes (code_points takes both)
    caches_units = False  # reading the file again is cheaper than storing its units
    max_block = None

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
                # bytes.translate is a 256-entry lookup, faster than np.take on uint8
                return np.frombuffer(as_bytes(units).translate(small), np.uint8)
            return lookup(table, units)

        return encode


class ByteTokenizer(CharTokenizer):
    level = "byte"
    reads_bytes = True

    def __init__(self):
        self.counts = np.zeros(256, np.int64)

    def splitter(self, path):
        return lambda data, final: np.frombuffer(data, np.uint8)


class WordTokenizer:
    """Words become provisional ids (first seen, first numbered) as the text is split, so that
    counting is a bincount and encoding a table lookup, both vectorised."""
    level = "word"
    reads_bytes = False
    ascii_bytes = False
    caches_units = True  # re-splitting the text in pass 2 would cost as much as pass 1
    max_block = 1 << 20  # a block's list of words costs ~60 bytes a word: keep it small

    def __init__(self):
        self.ids = defaultdict(count().__next__)  # word -> provisional id, all in C
        self.counts = np.zeros(1 << 16, np.int64)  # per provisional id

    def splitter(self, path):
        """A function of (text block, final) giving the provisional ids of a file's words.

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
            if words:       # a line break ended them (not a word "<eos>" of the text)
                last = text.rfind("\n")
                state["ended"] = last >= 0 and not text[last + 1:].strip()
            if final and not state["ended"]:
                words.append(EOS)
                state["ended"] = True
            return np.fromiter(map(self.ids.__getitem__, words), np.uint32, len(words))

        return split

    def count(self, units):
        if len(self.ids) > len(self.counts):
            grown = np.zeros(max(len(self.ids), 2 * len(self.counts)), np.int64)
            grown[:len(self.counts)] = self.counts
            self.counts = grown
        add_counts(self.counts, units)

    def vocabulary(self, max_vocab=None, min_count=1):
        specials = [UNK, EOS]
        counts = self.counts.tolist()
        words = [(w, counts[i]) for w, i in self.ids.items()
                 if counts[i] >= min_count and w not in specials]
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

    def _table(self, vocab):
        """Final id of each provisional id."""
        index, unk = vocab.index, vocab.unk_id
        if unk is None:                 # a vocabulary made elsewhere (an import) may have none
            missing = next((w for w in self.ids if w not in index), None)
            if missing is not None:
                raise InputError(f"word {missing!r} is not in the vocabulary, which has no "
                                 f"<unk> to map it to (a vocabulary from --vocab-from or an "
                                 f"import); give text of its words only")
        return np.fromiter((index.get(w, unk) for w in self.ids), np.int64, len(self.ids))

    def id_counts(self, vocab):
        table = self._table(vocab)
        found = np.bincount(table, self.counts[:len(table)], minlength=len(vocab))
        return found.round().astype(np.uint64)

    def encoder(self, vocab):
        table = self._table(vocab).astype(vocab.dtype)
        return lambda units: lookup(table, units)


TOKENIZERS = {"char": CharTokenizer, "byte": ByteTokenizer, "word": WordTokenizer}
