"""Text <-> token ids for a model, from the vocabulary stored in its checkpoint.

The rules are the tokenizer's (rnnkit/corpus/tokenize.py) and match `Corpus.encode`/`decode`, but need
no corpus file, and decoding streams: `decoder()` turns one id at a time into the text to print
now (a byte-level model's multi-byte UTF-8 characters are held back until complete).

A character (or byte) that a char (byte) vocabulary lacks is an error by default, naming its
line and column; `unknown="skip"` leaves such symbols out and `"replace"` puts REPLACEMENTS'
first symbol the vocabulary has in their place. At word level an unknown word is <unk>, as in
training (with "error" and "replace"; an error for a vocabulary without <unk>), or left out
with "skip". At bpe level (rnnkit/corpus/bpe.py) every text encodes: there are no unknowns.
"""
import codecs
import os
import select

import numpy as np

from rnnkit.errors import ArgumentError, ArgumentTypeError, RnnkitError
from rnnkit.corpus.sources import bom_hint, check_encoding
from rnnkit.corpus.tokenize import EOS, UNK, code_points

UNKNOWN = ("error", "skip", "replace")
REPLACEMENTS = ("\ufffd", "?", " ", "_")    # tried in this order for --unknown replace
NEWLINE = 10                                # "\n" as a code point and as a byte


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
            raise ArgumentError(f"unknown must be one of {', '.join(UNKNOWN)}, not {unknown!r}")
        text = self.text(text, where)
        if self.level == "bpe":
            return self.vocabulary.encode(text), 0, None
        if self.level == "word":
            ids, _, dropped, symbol = self._word_ids(text.replace("\n", f" {EOS} ").split(),
                                                     unknown, where)
            return ids, dropped, symbol
        units, ids = self._symbol_ids(text)
        ids, _, dropped, symbol = self._resolve(units, ids, unknown, where)
        return ids, dropped, symbol

    def encode_lines(self, text, unknown="error", where="the text", first_line=1):
        """The ids of each line of `text`, as (ids, ends, dropped, symbol): the lines' ids one
        after the other, line i being ids[ends[i - 1]:ends[i]]. A line ends after its newline
        (char and byte level keep it; a last line without one counts too); at word level every
        line ends with <eos>, the last one too, as preprocessing makes it. Unknown symbols: as
        encode_text; messages number the lines from `first_line`."""
        if unknown not in UNKNOWN:
            raise ArgumentError(f"unknown must be one of {', '.join(UNKNOWN)}, not {unknown!r}")
        text = self.text(text, where)
        if self.level == "bpe":             # no token crosses a line end (rnnkit/corpus/bpe.py)
            ids = self.vocabulary.encode(text)
            ends = np.flatnonzero(self.vocabulary.ends_line[ids]) + 1
            if len(ids) and (not len(ends) or ends[-1] != len(ids)):
                ends = np.append(ends, len(ids))
            return ids, ends.astype(np.int64), 0, None
        if self.level == "word":
            lines = text.split("\n")
            if lines[-1] == "":             # the text ends with a newline, or is empty
                lines.pop()
            words = [line.split() + [EOS] for line in lines]
            line_of = np.repeat(np.arange(len(words)), [len(w) for w in words])
            ids, kept, dropped, symbol = self._word_ids([w for line in words for w in line],
                                                        unknown, where)
            if kept is not None:
                line_of = line_of[kept]
            ends = np.cumsum(np.bincount(line_of, minlength=len(words))).astype(np.int64)
            return ids, ends, dropped, symbol
        units, ids = self._symbol_ids(text)
        newline = units == NEWLINE
        line_of = np.cumsum(newline) - newline          # a newline belongs to the line it ends
        lines = int(newline.sum()) + int(len(units) > 0 and not newline[-1])
        ids, kept, dropped, symbol = self._resolve(units, ids, unknown, where, first_line)
        if kept is not None:
            line_of = line_of[kept]
        ends = np.cumsum(np.bincount(line_of, minlength=lines)).astype(np.int64)
        return ids, ends, dropped, symbol

    def text(self, text, where="the text"):
        """`text` as this level reads it: a str, or bytes at byte level; bytes given to another
        level are decoded with the corpus's encoding."""
        if isinstance(text, (bytes, bytearray)):
            return bytes(text) if self.level == "byte" else \
                decode_text(bytes(text), self.level, self.encoding, where)
        if not isinstance(text, str):
            raise ArgumentTypeError(f"{where} must be a str, not "
                                    f"{type(text).__name__}")
        return text

    def start_id(self):
        """The id a text follows, as every line follows the one before in training: <eos> at
        word level, a newline at char, byte and bpe level (0 when the vocabulary has neither)."""
        if self.level == "bpe":
            return self.vocabulary.newline_id
        index = self.vocabulary.index
        for symbol in (EOS, "\n"):
            if symbol in index:
                return index[symbol]
        return 0

    def _word_ids(self, words, unknown, where):
        """As _resolve, for words: those the vocabulary lacks left out (skip), else <unk>."""
        index, unk = self.vocabulary.index, self.vocabulary.unk_id
        ids = np.array([index.get(w, -1) for w in words], np.int64)
        bad = np.flatnonzero(ids < 0)
        if not len(bad):
            return ids, None, 0, None
        if unknown == "skip":
            kept = ids >= 0
            return ids[kept], kept, len(bad), None
        if unk is None:
            raise UnknownSymbol(f"word {words[bad[0]]!r} in {where} is not in the vocabulary "
                                f"(which has no <unk>); --unknown skip leaves such words out")
        ids[bad] = unk
        return ids, None, len(bad), UNK

    def _symbol_ids(self, text):
        """(units, ids) of char or byte text: its code points (bytes) and their ids, -1 where
        the vocabulary lacks the symbol."""
        if self.level == "byte":
            data = text if isinstance(text, bytes) else text.encode(self.encoding)
            units = np.frombuffer(data, np.uint8)
        else:
            units = code_points(text)
        table = np.full(max(int(units.max(initial=0)), max(map(ord, self.tokens), default=0))
                        + 1, -1, np.int64)
        table[[ord(t) for t in self.tokens]] = np.arange(len(self.tokens))
        return units, table[units]

    def _resolve(self, units, ids, unknown, where, first_line=1):
        """(ids, the mask of units kept or None for all, symbols left out or replaced, the
        replacement or None) after treating the unknown symbols (ids -1) by `unknown`."""
        bad = np.flatnonzero(ids < 0)
        if not len(bad):
            return ids, None, 0, None
        if unknown == "error":
            raise UnknownSymbol(self._unknown_message(units, bad, where, first_line))
        if unknown == "skip":
            kept = ids >= 0
            return ids[kept], kept, len(bad), None
        index = self.vocabulary.index
        symbol = next((s for s in REPLACEMENTS if s in index), None)
        if symbol is None:
            raise UnknownSymbol(f"{self._unknown_message(units, bad, where, first_line)}; "
                                f"and it has none "
                                f"of {' '.join(map(repr, REPLACEMENTS))} to replace them by: "
                                f"use --unknown skip")
        ids[bad] = index[symbol]
        return ids, None, len(bad), symbol

    def _unknown_message(self, units, bad, where, first_line=1):
        first = int(bad[0])
        line_starts = np.flatnonzero(units[:first] == NEWLINE)
        line = len(line_starts) + first_line
        column = first - (int(line_starts[-1]) + 1 if len(line_starts) else 0) + 1
        value = int(units[first])
        what = (f"byte 0x{value:02x}" if self.level == "byte" else
                f"character {chr(value)!r} (U+{value:04X})")
        others = len(bad) - 1
        more = f" ({others:,} more unknown symbols follow)" if others else ""
        if first == 0 and first_line == 1 and value == 0xFEFF:
            return f"{what} at the start of {where} is not in the model's vocabulary" + \
                bom_hint("\ufeff")
        return (f"{what} at line {line}, column {column} of {where} is not in the model's "
                f"vocabulary{more}; --unknown skip leaves such symbols out, --unknown replace "
                f"puts a known one in their place")

    def decode(self, ids):
        """The text of token ids (a sequence of ints); ArgumentError for an id out of range."""
        ids = np.asarray(ids).ravel()
        if ids.size and ids.dtype.kind not in "iu":
            raise ArgumentTypeError(f"token ids must be integers, not {ids.dtype}")
        bad = ids[(ids < 0) | (ids >= len(self.tokens))]
        if bad.size:
            raise ArgumentError(f"token id {int(bad[0])} is not in [0, {len(self.tokens)})")
        step = self.decoder()
        return "".join(step(i) for i in ids.tolist()) + step(None)

    def decoder(self):
        """A function of one id giving the text to emit now; call it with None at the end to
        flush what is held back."""
        state = self.start_state()

        def step(i):
            nonlocal state
            text, state = self.piece(state, i)
            return text

        return step

    def start_state(self):
        """What decoding has to remember before the first id (see piece)."""
        if self.level in ("byte", "bpe"):
            return codecs.getincrementaldecoder(self._bytes_encoding())().getstate()
        return True if self.level == "word" else None

    def _bytes_encoding(self):
        """What decodes the bytes that byte and bpe tokens stand for (bpe's are UTF-8)."""
        return "utf-8" if self.level == "bpe" else self.encoding

    def piece(self, state, i):
        """(the text id `i` emits after `state`, the state after it); i None flushes. A state
        is a value, so texts that share a past share it (beam search): a byte-level (or bpe)
        model's incomplete UTF-8 character, whether a word-level model is at the start of a
        line."""
        tokens = self.tokens
        if self.level == "char":
            return ("" if i is None else tokens[i]), None
        if self.level in ("byte", "bpe"):
            inc = codecs.getincrementaldecoder(self._bytes_encoding())(errors="replace")
            inc.setstate(state)
            text = inc.decode(b"", final=True) if i is None else inc.decode(
                self.vocabulary.token_bytes[i] if self.level == "bpe" else bytes([ord(tokens[i])]))
            return text, inc.getstate()
        if i is None:
            return "", state
        if i == self.vocabulary.eos_id:
            return "\n", True
        return (tokens[i] if state else " " + tokens[i]), False


def read_text(path, level, encoding):
    """The contents of a text file for a model of `level`: bytes for byte level, else str
    decoded with `encoding`; errors are one line (RnnkitError) naming the file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise RnnkitError(f"cannot read {path}: {err.strerror}") from None
    return decode_text(data, level, encoding, path)


def decode_text(data, level, encoding, name):
    """Bytes read from `name` (a file, standard input) as a model of `level` reads them:
    unchanged at byte level, else decoded with `encoding` (one-line RnnkitError if they are
    not valid in it)."""
    if level == "byte":
        return data
    try:
        return _decoder(encoding).decode(data, final=True)
    except UnicodeDecodeError as err:
        raise _not_valid(name, encoding, err, 0, data[:4]) from None
    except UnicodeError as err:     # a codec's own complaint (utf-16 without its mark, ...)
        raise RnnkitError(f"{name} is not valid {encoding}: {err}") from None


def _decoder(encoding):
    check_encoding(encoding)
    return codecs.getincrementaldecoder(encoding)("strict")


def _not_valid(name, encoding, err, offset, head):
    """The error for bytes of `name` not valid in `encoding`; `offset`: where err's input
    starts in the whole, whose first bytes are `head` (a byte order mark gets its hint)."""
    at = offset + err.start
    hint = bom_hint(head) if at < 4 else ""
    return RnnkitError(f"{name} is not valid {encoding} at byte {at} "
                       f"({err.object[err.start:err.start + 1].hex()})" +
                       (hint or "; give its encoding with --encoding (latin-1 reads any "
                        "bytes)"))


def read_lines(fd, level, encoding, name, most=1 << 20):
    """Yield what the file descriptor `fd` (standard input, a pipe) holds in pieces of whole
    lines, each as soon as it can be read: after waiting for some input, all that comes
    without waiting (about `most` bytes at most), up to its last newline; what follows the
    last newline comes at the end. As decode_text: bytes at byte level, else str."""
    decoder = None if level == "byte" else _decoder(encoding)
    held = b"" if decoder is None else ""
    newline = b"\n" if decoder is None else "\n"
    offset = 0      # bytes read before this read
    first = b""     # the stream's first bytes
    ended = False
    while not ended:
        data = os.read(fd, most)                        # waits for input, or the end
        ended = not data
        while data and len(data) < most and select.select([fd], [], [], 0)[0]:
            more = os.read(fd, most - len(data))
            if not more:
                ended = True
                break
            data += more
        first = first or data[:4]
        if decoder is None:
            held += data
        else:
            pending = len(decoder.getstate()[0])
            try:
                held += decoder.decode(data, final=ended)
            except UnicodeDecodeError as err:
                raise _not_valid(name, encoding, err, offset - pending, first) from None
            except UnicodeError as err:
                raise RnnkitError(f"{name} is not valid {encoding}: {err}") from None
        offset += len(data)
        cut = len(held) if ended else held.rfind(newline) + 1
        if cut:
            yield held[:cut]
            held = held[cut:]
