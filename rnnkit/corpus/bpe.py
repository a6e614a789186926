"""Level bpe: byte-level BPE subwords, trained and run by Hugging Face `tokenizers`.

The tokenizer is GPT-2's kind: text as UTF-8 bytes, the 256 byte values always in the
vocabulary (so any text encodes, without unknowns), merges learned from the training split up
to `vocab_size` tokens in all. One change: the text is first cut after each newline, so no
token crosses a line end; the ids of a text are then the ids of its lines one after the other,
which is what lets `score` read lines and `preprocess` read blocks and agree with both.

Tokens are the tokenizer's own strings (GPT-2's printable stand-ins for bytes: "Ġthe" is
" the", "Ċ" a newline). The tokenizer's JSON is stored with the vocabulary (`BpeVocabulary.
save`: the corpus, and from it every checkpoint); decoding needs only the token strings, so a
model decodes (generate without a prime) even where `tokenizers` is not installed.

Preprocessing (rnnkit/corpus/preprocess.py) trains before its two passes: on the main inputs' first
1 - val_frac - test_frac of bytes (all of them when --val/--test files are given), then
counts and encodes with `BpeTokenizer`. The training split is then the tokens of that text
(encoded once more to count them; exact at a line's end, within a few tokens when the byte cut
falls inside a line), so the tokenizer learns nothing from validation or test text; val and
test share the rest in their fractions' ratio.
`--min-count N` is the tokenizer's min_frequency: a pair is merged only if seen N times.
"""
import itertools
import json
import os

import numpy as np

from rnnkit.errors import RnnkitError
from rnnkit.corpus.sources import InputError, read_text
from rnnkit.corpus.tokenize import Vocabulary, add_counts

MIN_VOCAB = 256             # the byte values: a vocabulary of no merges
LEVEL = "bpe"
CARRY_LIMIT = 1 << 22       # a line longer than this (characters) is cut before a word
CHUNK = 1 << 16             # characters per piece that the tokenizer encodes on a thread


def tokenizers():
    """The `tokenizers` package, or one clear line about installing it."""
    try:
        import tokenizers as hf
    except ImportError:
        raise RnnkitError("level bpe needs Hugging Face tokenizers: pip install "
                          "'rnnkit[bpe]' (or pip install tokenizers)") from None
    return hf


def _byte_of_char():
    """GPT-2's bytes_to_unicode, inverted: the byte each stand-in character is."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1),
                 *range(0xAE, 0xFF + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


BYTE_OF_CHAR = _byte_of_char()


class BpeVocabulary(Vocabulary):
    """A Vocabulary whose tokens come from a tokenizer's JSON (`tokenizer_json`, a str)."""

    def __init__(self, tokenizer_json):
        self.tokenizer_json = tokenizer_json
        try:
            spec = json.loads(tokenizer_json)
            vocab = spec["model"]["vocab"]
            tokens = sorted(vocab, key=vocab.__getitem__)
            data = [bytes(BYTE_OF_CHAR[c] for c in t) for t in tokens]
        except (ValueError, KeyError, TypeError) as err:
            raise RnnkitError(f"not a byte-level BPE tokenizer ({err!r})") from None
        if [vocab[t] for t in tokens] != list(range(len(tokens))):
            raise RnnkitError("the BPE tokenizer's ids are not 0 .. V - 1")
        if len({d for d in data if len(d) == 1}) < MIN_VOCAB:
            raise RnnkitError("the BPE tokenizer lacks some of the 256 byte tokens")
        super().__init__(LEVEL, tokens)
        self.token_bytes = data                 # what each id stands for, for decoding
        self.newline_id = self.index[next(c for c, b in BYTE_OF_CHAR.items() if b == 10)]
        self.ends_line = np.array([d.endswith(b"\n") for d in data], bool)
        self._hf = None

    @property
    def merges(self):
        return len(self) - MIN_VOCAB

    def hf(self):
        """The tokenizers.Tokenizer (built on first use)."""
        if self._hf is None:
            hf = tokenizers()
            try:
                self._hf = hf.Tokenizer.from_str(self.tokenizer_json)
            except Exception as err:    # a Rust error: the JSON of a later tokenizers?
                raise RnnkitError(f"tokenizers {hf.__version__} cannot read the stored "
                                  f"tokenizer: {err}") from None
        return self._hf

    def encode(self, text):
        """Ids of `text` (str) as an int64 array."""
        if not text:                # no tokenizer needed: generate without a prime
            return np.zeros(0, np.int64)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as err:
            c = ord(text[err.start])
            raise RnnkitError(f"the text holds U+{c:04X} (a lone surrogate), which UTF-8 "
                              f"cannot encode") from None
        hf = self.hf()
        if len(text) <= CHUNK:
            return np.array(hf.encode(text).ids, np.int64)
        # no token crosses a line end: pieces of whole lines encode apart, in parallel
        found = hf.encode_batch(list(_line_pieces(text, CHUNK)))
        return np.fromiter(itertools.chain.from_iterable(e.ids for e in found), np.int64)

    def decode(self, ids):
        """The text of `ids` (invalid UTF-8, from a lone piece of a character, as U+FFFD)."""
        data = b"".join(self.token_bytes[i] for i in np.asarray(ids).ravel().tolist())
        return data.decode("utf-8", errors="replace")

    def save(self, h5file):
        """/vocab: the token strings, as at word level; /tokenizer: the tokenizer's JSON."""
        from rnnkit import h5

        h5.write_text(h5file, "vocab", np.array(self.tokens, dtype=object))
        h5.write_text(h5file, "tokenizer", self.tokenizer_json)

    @classmethod
    def load(cls, h5file, level=LEVEL):
        from rnnkit import h5

        stored = h5.read_text(h5file["vocab"])      # checked; the tokens come from the JSON
        vocab = cls(h5.read_text(h5file["tokenizer"]))
        if list(stored) != vocab.tokens:
            raise h5.DamagedFile(f"{h5file.filename}: /vocab differs from the tokenizer's "
                                 f"vocabulary; the file is damaged")
        return vocab

    def sidecar(self):
        """What export's JSON file adds for this vocabulary: the tokenizer itself."""
        return {"tokenizer": json.loads(self.tokenizer_json)}


def load_vocabulary(h5file, level):
    """The vocabulary of any level stored in an open HDF5 file (a corpus, a checkpoint)."""
    return BpeVocabulary.load(h5file) if level == LEVEL else Vocabulary.load(h5file, level)


def _line_pieces(text, size):
    """`text` in pieces of whole lines, about `size` characters each (a longer line whole)."""
    start = 0
    while start < len(text):
        end = text.find("\n", start + size - 1)
        end = len(text) if end < 0 else end + 1
        yield text[start:end]
        start = end


def sidecar(vocab):
    """export's extra JSON keys for `vocab` (none but at level bpe)."""
    return vocab.sidecar() if isinstance(vocab, BpeVocabulary) else {}


def from_sidecar(info, tokens, where):
    """The BpeVocabulary of an export's JSON `info`, checked against its `tokens`."""
    if not isinstance(info.get("tokenizer"), dict):
        raise RnnkitError(f"{where}: a bpe-level vocabulary needs its \"tokenizer\" object")
    try:
        vocab = BpeVocabulary(json.dumps(info["tokenizer"]))
    except RnnkitError as err:
        raise RnnkitError(f"{where}: {err}") from None
    if vocab.tokens != list(tokens):
        raise RnnkitError(f"{where}: \"tokens\" differ from the tokenizer's vocabulary")
    return vocab


# ---------------------------------------------------------------------------- preprocessing

MAX_VOCAB = 1 << 24     # the tokenizer allocates by it: 5e9 asked 283 GB and aborted


def check_vocab_size(vocab_size):
    if not MIN_VOCAB <= vocab_size <= MAX_VOCAB:
        raise InputError(f"--vocab-size must be in [{MIN_VOCAB} (the byte values), "
                         f"{MAX_VOCAB:,}], got {vocab_size:,}")


def train(texts, vocab_size, min_count=1):
    """A BpeVocabulary learned from the str pieces of `texts` (an iterable)."""
    hf = tokenizers()
    pre = hf.pre_tokenizers
    tok = hf.Tokenizer(hf.models.BPE())
    tok.pre_tokenizer = pre.Sequence([pre.Split("\n", "merged_with_previous"),
                                      pre.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = hf.decoders.ByteLevel()
    trainer = hf.trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_count,
                                     initial_alphabet=pre.ByteLevel.alphabet(),
                                     special_tokens=[], show_progress=False)
    tok.train_from_iterator(texts, trainer)
    return BpeVocabulary(tok.to_str())


def training_text(sources, train_frac, encoding, errors, block):
    """The text of the main inputs (split "train") up to train_frac of their bytes, in
    pieces of whole lines (so that the merges learnt do not depend on the block size)."""
    main = [s for s in sources if s.split == "train"]
    left = train_frac * sum(os.path.getsize(s.path) for s in main)
    for source in main:
        seen, used, carry = [0], 0, ""

        def on_bytes(data):
            seen[0] += len(data)

        for text in read_text(source.path, encoding, errors, block, on_bytes):
            n, used = seen[0] - used, seen[0]
            if n > left:            # the cut: by bytes as well as re-encoding tells them
                data = text.encode(encoding, "replace")
                text = data[:int(len(data) * max(0, left) / n)].decode(encoding, "ignore")
            left -= n
            text = carry + text
            cut = text.rfind("\n") + 1 or (len(text) if len(text) > CARRY_LIMIT else 0)
            if cut:
                yield text[:cut]
            carry = text[cut:]
            if left <= 0:
                break
        if carry:
            yield carry
        if left <= 0:
            return


def _before_a_word(text):
    """Where a line too long to carry is cut: before its last space that a non-space follows,
    where the tokenizer's pre-split cuts too (" word" is one piece), so the ids are those of
    the whole line; at the end where there is none."""
    at = text.rfind(" ")
    while at > 0 and (at + 1 == len(text) or text[at + 1].isspace()):
        at = text.rfind(" ", 0, at)
    return at if at > 0 else len(text)


class BpeTokenizer:
    """preprocess's tokenizer protocol (rnnkit/corpus/tokenize.py) over a trained BpeVocabulary:
    units are the final ids already, so pass 2 reads them from the cache."""
    level = LEVEL
    reads_bytes = False
    ascii_bytes = False
    caches_units = True
    max_block = 1 << 20

    def __init__(self, vocab):
        self.vocab = vocab
        self.counts = np.zeros(len(vocab), np.int64)

    def splitter(self, path):
        """Ids of each block, up to its last newline; the rest is joined to the next one."""
        state = {"carry": ""}

        def split(text, final):
            text = state["carry"] + text
            cut = len(text) if final else text.rfind("\n") + 1
            if not cut and len(text) > CARRY_LIMIT:
                cut = _before_a_word(text)
            state["carry"] = text[cut:]
            try:
                ids = self.vocab.encode(text[:cut]) if cut else np.zeros(0, np.int64)
            except RnnkitError as err:
                raise InputError(f"{path}: {err}") from None
            return ids.astype(np.uint32)

        return split

    def count(self, units):
        add_counts(self.counts, units)

    def vocabulary(self, max_vocab=None, min_count=1):
        return self.vocab

    def unknown(self, vocab):
        return None                 # every byte is a token

    def id_counts(self, vocab):
        return self.counts.astype(np.uint64)

    def encoder(self, vocab):
        return lambda units: units.astype(vocab.dtype)


def show(token):
    """A token as readable text: the repr of what it decodes to ("Ġthe" is ' the'), or of its
    bytes where they are part of a character (b'\\xe2\\x80')."""
    data = bytes(BYTE_OF_CHAR[c] for c in token)
    try:
        return repr(data.decode("utf-8"))
    except UnicodeDecodeError:
        return repr(data)
