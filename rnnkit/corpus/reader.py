"""Read a corpus made by `rnnkit preprocess` and cut it into training batches.

Layout of a split (torch-rnn's): its token stream of length L is cut into N contiguous streams of
S = (L - 1) // N tokens, stream i starting at token i * S. Batch b is

    x = streams[:, b*T : (b+1)*T]          (N, T) inputs
    y = streams[:, b*T + 1 : (b+1)*T + 1]  (N, T) targets, the next token of each input

so row i of batch b + 1 continues row i of batch b, and a model carries its hidden state from
one batch to the next. There are S // T batches; the tokens left over are not used. Batches are
read from the file a block at a time, never the whole split, so a corpus larger than RAM works.

    with Corpus("corpus.h5") as corpus:
        corpus.check_fit("train", 50, 50)
        for x, y in corpus.batches("train", 50, 50):
            ...
"""
import hashlib
import json

import numpy as np

from rnnkit import h5
from rnnkit.errors import RnnkitError
from rnnkit.corpus.bpe import load_vocabulary
from rnnkit.corpus.tokenize import EOS

FORMAT = "rnnkit-corpus"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
BLOCK_TOKENS = 1 << 18   # tokens read per stream at a time (one HDF5 chunk)...
BUFFER_TOKENS = 1 << 23  # ...but at most this many for all streams together


def stream_length(tokens, N):
    """Tokens per stream S when `tokens` ids are cut into N streams (the layout above): each
    stream needs one more id, its last target."""
    return (tokens - 1) // N


class CorpusError(RnnkitError, ValueError):
    """The file is not a corpus this version of rnnkit can read."""


def changes(before, after):
    """What differs between two corpus fingerprints, for a message (empty: the same)."""
    out = []
    for key in ("level", "vocab"):
        if before.get(key) != after.get(key):
            out.append(f"{'level' if key == 'level' else 'vocabulary size'} {before.get(key)} "
                       f"-> {after.get(key)}")
    splits = before.get("splits", {}), after.get("splits", {})
    for name in sorted(set(splits[0]) | set(splits[1]), key=SPLITS.index):
        if splits[0].get(name) != splits[1].get(name):
            out.append(f"{name} split {splits[0].get(name, 0):,} -> {splits[1].get(name, 0):,} "
                       f"tokens")
    if not out and before.get("sha256") != after.get("sha256"):
        out.append(f"other text (content hash {before.get('sha256')} -> {after.get('sha256')})")
    return out


def _plain(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


class Corpus:
    """An open corpus file. Use as a context manager, or call `close()`."""

    def __init__(self, path):
        self.path = str(path)
        try:
            # the chunk cache holds the chunks of many streams at once (see `batches`)
            self.file = h5.open_file(path, "corpus", rdcc_nbytes=64 << 20, rdcc_nslots=10007)
        except h5.DamagedFile as err:
            raise CorpusError(str(err)) from None
        try:
            self.attrs = {key: _plain(value) for key, value in self.file.attrs.items()}
            # every member opened now: a damaged header is found here, not at some later read
            self.members = dict(h5.members(self.file))
            if self.attrs.get("format") != FORMAT:
                hint = (" (a checkpoint: give it as CHECKPOINT, and a corpus here)"
                        if self.attrs.get("format") == "rnnkit-checkpoint" else "")
                raise CorpusError(f"{path} is not an rnnkit corpus "
                                  f"(no format={FORMAT!r} attribute){hint}")
            if self.attrs.get("format_version", 0) > FORMAT_VERSION:
                raise CorpusError(f"{path} has corpus format version "
                                  f"{self.attrs['format_version']}; this rnnkit reads up to "
                                  f"{FORMAT_VERSION}, upgrade rnnkit")
            self.level = self.attrs["level"]
            self.encoding = self.attrs["encoding"]
            self.vocabulary = load_vocabulary(self.file, self.level)
            # read once, here: HDF5 (1.14, 2.0) can crash reading a table of variable-length
            # strings through one handle after another on the same file that read it closed
            self.sources = h5.read_table(self.members["sources"]) \
                if "sources" in self.members else []     # its rows: name, split, bytes, ...
        except KeyError as err:
            self.file.close()
            raise CorpusError(f"{path} is an incomplete rnnkit corpus: {err.args[0]}") from None
        except h5.DamagedFile as err:
            self.file.close()
            raise CorpusError(str(err)) from None
        except OSError as err:
            self.file.close()
            raise CorpusError(h5.describe_error(path, err)) from None
        except BaseException:
            self.file.close()
            raise
        self.vocab = self.vocabulary.tokens
        self.vocab_size = len(self.vocab)
        self.splits = [name for name in SPLITS if name in self.members]
        self.dtype = self.members[self.splits[0]].dtype if self.splits else \
            self.vocabulary.dtype

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.file.close()

    def __repr__(self):
        sizes = ", ".join(f"{name}={self.len_split(name)}" for name in self.splits)
        return f"Corpus({self.path!r}, level={self.level!r}, vocab_size={self.vocab_size}, {sizes})"

    def _split(self, name):
        if name not in self.splits:
            present = ", ".join(self.splits) or "none"
            raise ValueError(f"{self.path} has no {name!r} split (present: {present})")
        return self.members[name]

    def len_split(self, name):
        """Number of tokens in split `name`."""
        return self._split(name).shape[0]

    def tokens(self, split, start=0, stop=None):
        """Token ids split[start:stop] as an int64 array (read from the file now)."""
        try:
            return h5.read(self._split(split), np.s_[start:stop]).astype(np.int64)
        except h5.DamagedFile as err:
            raise CorpusError(f"{err}; make the corpus again with rnnkit preprocess") from None

    @property
    def counts(self):
        """Occurrences of each id over all splits, as a uint64 array."""
        return h5.read(self.members["counts"])

    def fingerprint(self):
        """What tells this corpus from another, read cheaply (not its tokens): its level,
        vocabulary size, split sizes, and a hash of those, the vocabulary, the id counts and
        the sources' sha256s. A corpus moved, or made again from the same text with the same
        options, keeps its fingerprint; names and dates play no part."""
        sizes = {name: int(self.len_split(name)) for name in self.splits}
        sources = self.sources
        content = [self.level, self.encoding, self.vocab, sizes, self.counts.tolist(),
                   [[_plain(row["split"]), int(row["tokens"]), _plain(row["sha256"])]
                    for row in sources]]
        digest = hashlib.sha256(json.dumps(content).encode()).hexdigest()[:16]
        return {"level": self.level, "vocab": self.vocab_size, "splits": sizes,
                "sha256": digest}

    # -- text <-> ids, the same rules as the tokenizer that made the corpus --

    def encode(self, text):
        """Token ids of `text` (str; bytes also for byte level) as an int64 array.

        Char and byte level raise ValueError for a symbol outside the vocabulary; word level maps
        unknown words to <unk>.
        """
        index = self.vocabulary.index
        if self.level == "bpe":
            return self.vocabulary.encode(text)
        if self.level == "word":
            words = text.replace("\n", f" {EOS} ").split()
            unk = self.vocabulary.unk_id
            return np.array([index.get(w, unk) for w in words], np.int64)
        if self.level == "byte":
            symbols = [chr(b) for b in (text if isinstance(text, bytes) else
                                        text.encode(self.encoding))]
        else:
            symbols = text
        try:
            return np.array([index[s] for s in symbols], np.int64)
        except KeyError as err:
            symbol = err.args[0]
            what = (f"byte 0x{ord(symbol):02x}" if self.level == "byte" else
                    f"{symbol!r} (U+{ord(symbol):04X})")
            raise ValueError(f"{what} is not in the vocabulary of {self.path}") from None

    def decode_bytes(self, ids):
        """Byte level only: the bytes that `ids` stand for."""
        if self.level != "byte":
            raise ValueError("decode_bytes is for byte-level corpora")
        return bytes(ord(self.vocab[i]) for i in np.asarray(ids).ravel().tolist())

    def decode(self, ids):
        """Text of `ids`. Byte level decodes the bytes with the corpus encoding (invalid bytes
        become U+FFFD); word level joins words with spaces and turns <eos> into newlines."""
        ids = np.asarray(ids).ravel().tolist()
        if self.level == "byte":
            return self.decode_bytes(ids).decode(self.encoding, errors="replace")
        if self.level == "char":
            return "".join(self.vocab[i] for i in ids)
        if self.level == "bpe":
            return self.vocabulary.decode(ids)
        out, line = [], []
        for i in ids:
            if i == self.vocabulary.eos_id:
                out.append(" ".join(line) + "\n")
                line = []
            else:
                line.append(self.vocab[i])
        return "".join(out) + " ".join(line)

    # -- batches --

    def check_fit(self, split, N, T, world=1, even=True):
        """Raise ValueError, naming N and T that would fit, unless `split` gives a batch (of
        N streams that `world` ranks share evenly, unless not `even`)."""
        L = self.len_split(split)
        if N < 1 or T < 1:
            raise ValueError(f"N and T must be positive, got N={N}, T={T}")
        if world < 1 or (even and N % world):
            raise ValueError(f"N={N} streams cannot be shared evenly by {world} ranks; "
                             f"use a multiple of {world}")
        if stream_length(L, N) >= T:
            return
        hints = []
        if (n := (L - 1) // T // world * world) >= 1:
            hints.append(f"N={n} with T={T}")
        if (t := stream_length(L, N)) >= 1:
            hints.append(f"T={t} with N={N}")
        if not hints and (t := (L - 1) // world) >= 1:
            hints.append(f"N={world} with T={t}")
        hint = "try " + " or ".join(hints) if hints else "add text"
        raise ValueError(f"the {split!r} split of {self.path} has {L} tokens, too few for one "
                         f"batch of N={N} streams x T={T} steps (needs N*T+1 = {N * T + 1}); "
                         f"{hint}")

    def batches(self, split, N, T, start=0, rank=0, world=1, even=True, tail=False):
        """Batches (x, y) of split `split`, from batch `start` on; see the module docstring.
        With `tail` (validation), the streams' last tokens that fill no batch of T steps make
        one shorter batch at the end, as `rnnkit eval` scores them.

        With `world` ranks, rank `rank` gets the streams rank*N/world .. (rank+1)*N/world - 1,
        so x and y have N/world rows. Not `even` (validation): N need not divide by world, and
        rank r gets the streams ceil(r*N/world) .. ceil((r+1)*N/world) - 1, the first ranks
        one more, the last none where N < world. The result can be iterated more than once.
        """
        self.check_fit(split, N, T, world, even)
        return Batches(self._split(split), N, T, start, rank, world, tail)


class Batches:
    """Input/target batches of one split; `len()` is the number of batches left from `start`."""

    def __init__(self, dataset, N, T, start=0, rank=0, world=1, tail=False):
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in 0..{world - 1}")
        self.dataset, self.N, self.T = dataset, N, T
        self.S = stream_length(dataset.shape[0], N)   # tokens per stream
        self.num_batches = self.S // T                # batches of T steps in a full pass
        self.tail = self.S % T if tail else 0         # steps of a last, shorter batch
        if not 0 <= start <= self.num_batches:
            raise ValueError(f"start batch {start} is not in 0..{self.num_batches}")
        self.start, self.rank, self.world = start, rank, world
        self.rows = range(-(-rank * N // world), -(-(rank + 1) * N // world))

    def __len__(self):
        return self.num_batches - self.start + bool(self.tail)

    def _read(self, first, count, steps=None):
        """Tokens for batches first .. first+count-1: (rows, count*T + 1), storage dtype;
        with `steps`, that many after batch `first`'s start."""
        T, S = self.T, self.S
        steps = count * T if steps is None else steps
        out = np.empty((len(self.rows), steps + 1), self.dataset.dtype)
        for j, i in enumerate(self.rows):
            begin = i * S + first * T
            try:
                self.dataset.read_direct(out, np.s_[begin:begin + steps + 1], np.s_[j])
            except OSError as err:
                reason = h5.describe_error(self.dataset.file.filename, err, self.dataset.name)
                raise CorpusError(f"{reason} (tokens {begin:,} to {begin + steps:,}); make "
                                  f"the corpus again with rnnkit preprocess") from None
        return out

    def batch(self, b):
        """Batch `b` alone (reads it from the file)."""
        if not 0 <= b < self.num_batches:
            raise IndexError(f"batch {b} is not in 0..{self.num_batches - 1}")
        block = self._read(b, 1)
        return block[:, :-1].astype(np.int32), block[:, 1:].astype(np.int32)

    def __iter__(self):
        T = self.T
        per_block = max(1, min(BLOCK_TOKENS, BUFFER_TOKENS // len(self.rows)) // T)
        b = self.start
        while b < self.num_batches:
            count = min(per_block, self.num_batches - b)
            block = self._read(b, count)
            for k in range(count):
                chunk = block[:, k * T:(k + 1) * T + 1]
                yield chunk[:, :-1].astype(np.int32), chunk[:, 1:].astype(np.int32)
            b += count
        if self.tail:
            block = self._read(self.num_batches, 0, self.tail)
            yield block[:, :-1].astype(np.int32), block[:, 1:].astype(np.int32)


def describe(path):
    """Lines for `rnnkit info`: splits, vocabulary, sources."""
    with Corpus(path) as corpus:
        a = corpus.attrs
        lines = [f"{path}: rnnkit corpus, format version {a['format_version']}, "
                 f"made by rnnkit {a.get('rnnkit_version', '?')}"]
        how = f"level {corpus.level}, encoding {corpus.encoding}"
        if corpus.level != "byte":
            how += f", errors={a.get('errors')}"
        if corpus.level == "bpe":
            how += f", byte-level BPE of {corpus.vocabulary.merges:,} merges, " \
                   f"min_count={a.get('min_count')}"
        if corpus.level == "word":
            how += f", max_vocab={a.get('max_vocab') or 'none'}, min_count={a.get('min_count')}"
        if a.get("vocab_from"):
            how += f", vocabulary from {a['vocab_from']}"
        lines.append(how)
        total = sum(corpus.len_split(s) for s in corpus.splits)
        sizes = ", ".join(f"{s} {corpus.len_split(s):,}" for s in corpus.splits)
        lines.append(f"tokens: {total:,} ({sizes or 'no splits'}), stored as {corpus.dtype}")
        counts = corpus.counts
        top = np.argsort(-counts.astype(np.int64), kind="stable")[:20]
        top = top[counts[top] > 0]
        sample = " ".join(_show(corpus.vocab[i], corpus.level) for i in top)
        lines.append(f"vocabulary: {corpus.vocab_size:,} tokens; most frequent: {sample}")
        sources = corpus.sources
        lines.append(f"sources: {len(sources)} file{'s' * (len(sources) != 1)}, "
                     f"{sum(int(row['bytes']) for row in sources):,} bytes")
        for row in sources[:20]:
            lines.append(f"  {_plain(row['name'])}  [{_plain(row['split'])}]  {int(row['bytes']):,}"
                         f" bytes  {int(row['tokens']):,} tokens  sha256 {_plain(row['sha256'])}")
        if len(sources) > 20:
            lines.append(f"  ... and {len(sources) - 20} more")
    return "\n".join(lines)


def _show(token, level):
    if level == "bpe":
        from rnnkit.corpus.bpe import show

        return show(token)
    if level == "byte":
        return f"{ord(token):02x}"
    return repr(token) if level == "char" else token
