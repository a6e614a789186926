"""Turn text files into one HDF5 corpus of token ids (layout: docs/corpus-format.md).

Two passes, each reading the input block by block so that memory stays flat:
1. count: gives the vocabulary, the number of tokens and so the split sizes, the sha256s;
2. encode: maps each block to ids and appends them to the split datasets (write.py).
The corpus is written under a temporary name in the output folder and renamed into place only
when complete, so an interrupted run never leaves a half-written corpus under the final name.

    from rnnkit.corpus.preprocess import preprocess
    preprocess(["shakespeare.txt"], "corpus.h5", level="char")
"""
import codecs
import contextlib
import hashlib
import os
import re
import tempfile
import time
from dataclasses import dataclass

import numpy as np

from rnnkit import files
from rnnkit.checkpoint_format import CheckpointError, open_checkpoint
from rnnkit.corpus import bpe, write
from rnnkit.corpus.bpe import BpeTokenizer
from rnnkit.corpus.reader import Corpus, CorpusError
from rnnkit.errors import RnnkitError
from rnnkit.corpus.sources import (BLOCK, InputError, bom_hint, check_encoding, find_inputs,
                                   read_blocks, read_text, stamp)
from rnnkit.corpus.tokenize import EOS, LEVELS, TOKENIZERS, UNK
from rnnkit.corpus.chunks import thread_pool

DEFAULT_FRAC = 0.1   # torch-rnn's default for both val and test
MIN_TOKENS = 2       # a split needs one input and one target token at least


@dataclass
class Source:
    path: str
    split: str           # "train" for the main inputs (cut by the fractions), else "val"/"test"
    bytes: int = 0
    tokens: int = 0
    sha256: str = ""
    stamp: tuple = ()       # (size, mtime in ns, inode) as pass 1 began: a change shows after


class Reader:
    """Reads the sources for both passes with one tokenizer and one set of decoding options."""

    def __init__(self, tokenizer, encoding, errors, block, update, hasher, cache=None):
        self.tokenizer, self.encoding, self.errors, self.block = tokenizer, encoding, errors, block
        self.update = update  # progress, in bytes
        self.hasher = hasher  # a one-thread executor: hashlib releases the GIL, so sha256 is free
        self.cache = cache    # word level: a temporary file keeping pass 1's units for pass 2

    def units(self, source, on_bytes):
        """The units of one file, block by block (see rnnkit.corpus.tokenize)."""
        split = self.tokenizer.splitter(source.path)
        if self.tokenizer.reads_bytes:
            for data in read_blocks(source.path, self.block):
                on_bytes(data)
                yield split(data, False)
        else:
            for text in read_text(source.path, self.encoding, self.errors, self.block, on_bytes,
                                  self.tokenizer.ascii_bytes):
                yield split(text, False)
            yield split("", True)

    def count(self, source):
        """Pass 1 over one file: count its units; fill in its size, token count and sha256."""
        source.stamp = stamp(source.path)
        digest = hashlib.sha256()
        hashing = None  # the block being hashed; at most one waits

        def on_bytes(data):
            nonlocal hashing
            if hashing is not None:
                hashing.result()
            hashing = self.hasher.submit(digest.update, data)
            source.bytes += len(data)
            self.update(len(data))

        for units in self.units(source, on_bytes):
            self.tokenizer.count(units)
            source.tokens += len(units)
            if self.cache is not None:
                self.cache.write(units)
        if hashing is not None:
            hashing.result()
        source.sha256 = digest.hexdigest()

    def again(self, source):
        """Pass 2 over one file: its units again, from the cache or from the file."""
        if self.cache is None:
            yield from self.units(source, lambda data: self.update(len(data)))
            return
        left, per_token = source.tokens, source.bytes / max(1, source.tokens)
        while left:
            n = min(left, max(1, self.block // 4))
            units = np.frombuffer(self.cache.read(4 * n), np.uint32)
            left -= n
            self.update(int(n * per_token))
            yield units


def _fractions(val_frac, test_frac, val, test):
    """Resolve the split options: a fraction or a file per split, not both."""
    for name, frac, path in (("val", val_frac, val), ("test", test_frac, test)):
        if frac is not None and path is not None:
            raise InputError(f"give --{name}-frac or --{name} FILE, not both")
        if frac is not None and not 0 <= frac < 1:
            raise InputError(f"--{name}-frac must be in [0, 1), got {frac}")
    default = 0.0 if (val or test) else DEFAULT_FRAC
    val_frac = (0.0 if val else default) if val_frac is None else val_frac
    test_frac = (0.0 if test else default) if test_frac is None else test_frac
    if val_frac + test_frac >= 1:
        raise InputError(f"--val-frac {val_frac} + --test-frac {test_frac} >= 1 "
                         "leaves no training data")
    return val_frac, test_frac


def _check_output(output, force, inputs):
    """The output path and its folder; refused: a folder, an existing file without force,
    anything but a regular file even with force, one of the inputs."""
    output = os.fspath(output)
    folder = os.path.dirname(os.path.abspath(output))
    try:
        files.check_output(output, force, inputs)
    except RnnkitError as err:
        raise InputError(str(err)) from None
    if not os.path.isdir(folder):
        raise InputError(f"output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise InputError(f"output folder {folder} is not writable")
    return output, folder


def _reused_vocab(vocab_from, level, max_vocab, min_count):
    """The vocabulary of a corpus, or of a checkpoint (the corpus it was trained on's)."""
    try:
        with Corpus(vocab_from) as other:
            vocab = other.vocabulary
    except CorpusError as err:
        vocab = _checkpoint_vocab(vocab_from)
        if vocab is None:
            raise InputError(f"--vocab-from: {err}") from None
    if level is not None and level != vocab.level:
        raise InputError(f"--level {level} does not match the {vocab.level}-level vocabulary "
                         f"of {vocab_from}")
    if max_vocab is not None or min_count != 1:
        raise InputError("--max-vocab and --min-count cannot change a vocabulary from --vocab-from")
    return vocab


def _checkpoint_vocab(path):
    """The vocabulary stored in checkpoint `path`; None if `path` is no checkpoint."""
    try:
        f = open_checkpoint(path)
    except CheckpointError:
        return None
    with f:
        if "vocab" not in f:
            raise InputError(f"--vocab-from: the checkpoint {path} holds no vocabulary")
        level = f.attrs.get("level")
        try:
            return bpe.load_vocabulary(f, level.decode() if isinstance(level, bytes) else level)
        except (RnnkitError, KeyError, OSError) as err:
            raise InputError(f"--vocab-from: cannot read the vocabulary of {path} "
                             f"({err})") from None


def bpe_options(vocab_size, max_vocab, vocab_from):
    """Level bpe's checks: --vocab-size gives its size, not --max-vocab; tokenizers is there."""
    if vocab_from and vocab_size is not None:
        raise InputError("--vocab-size cannot change a vocabulary from --vocab-from")
    if max_vocab is not None:
        raise InputError("--max-vocab is for --level word; --level bpe takes --vocab-size")
    if not vocab_from and vocab_size is None:
        raise InputError("--level bpe needs --vocab-size K (the tokens in all, at least "
                         f"{bpe.MIN_VOCAB})")
    if vocab_size is not None:
        bpe.check_vocab_size(vocab_size)
    try:
        bpe.tokenizers()
    except RnnkitError as err:
        raise InputError(str(err)) from None


def _distinct_splits(sources):
    """InputError for a file named in two splits (its text would be trained on and measured,
    or measured twice)."""
    first = {}
    option = {"train": "an input", "val": "--val", "test": "--test"}
    for s in sources:
        key = os.path.realpath(s.path)
        if key in first and first[key].split != s.split:
            raise InputError(f"{s.path} is given as {option[first[key].split]} and as "
                             f"{option[s.split]}; each split needs text of its own")
        first.setdefault(key, s)


def utf8_marks(sources, encoding):
    """The sources that start with a UTF-8 byte order mark when read as UTF-8 (the mark then
    is the character U+FEFF of the text)."""
    if codecs.lookup(encoding).name != "utf-8":
        return []
    marked = []
    for s in sources:
        with open(s.path, "rb") as f:
            if f.read(3) == codecs.BOM_UTF8:
                marked.append(s.path)
    return marked


def _plan(main_tokens, val_frac, test_frac, sources, train_tokens=None):
    """Tokens per split, and for each group of sources the (split, count) parts it feeds.
    train_tokens: the training split's size where it is set by the text a BPE tokenizer
    learnt from (the rest shared by val and test in their fractions' ratio)."""
    n_val, n_test = int(val_frac * main_tokens), int(test_frac * main_tokens)
    if train_tokens is not None and val_frac + test_frac > 0:
        rest = main_tokens - min(train_tokens, main_tokens)
        n_val = round(rest * val_frac / (val_frac + test_frac))
        n_test = rest - n_val
    sizes = {"train": main_tokens - n_val - n_test, "val": n_val, "test": n_test}
    feeds = {"train": [("train", sizes["train"]), ("val", n_val), ("test", n_test)]}
    why = {"train": "the input", "val": f"--val-frac {val_frac} of {main_tokens} tokens",
           "test": f"--test-frac {test_frac} of {main_tokens} tokens"}
    wanted = {"train": True, "val": val_frac > 0, "test": test_frac > 0}
    for name in ("val", "test"):
        if any(s.split == name for s in sources):  # --val/--test FILE; its fraction is 0
            sizes[name] = sum(s.tokens for s in sources if s.split == name)
            feeds[name] = [(name, sizes[name])]
            why[name], wanted[name] = f"the --{name} file", True
    for name in sizes:
        if wanted[name] and sizes[name] < MIN_TOKENS:
            raise InputError(f"{why[name]} gives {sizes[name]} {name} token(s); a split needs "
                             f"at least {MIN_TOKENS} (add text or raise the fraction)")
    return sizes, feeds


def preprocess(inputs, output, *, level=None, encoding="utf-8", errors="strict", val_frac=None,
               test_frac=None, val=None, test=None, vocab_from=None, max_vocab=None,
               min_count=1, force=False, progress=None, block=BLOCK, vocab_size=None):
    """Write the corpus `output` from `inputs` (files, folders, globs); return a summary dict.

    `level` None means char, or the level of `vocab_from`; level bpe learns `vocab_size`
    tokens (rnnkit/corpus/bpe.py). `val_frac`/`test_frac` None mean
    0.1, or 0 when a `val`/`test` file is given. `progress(total_bytes)` may return a context
    manager with `update(nbytes)`, such as click.progressbar, or None for no progress report.
    Raises InputError for bad input.
    """
    started = time.perf_counter()
    if errors not in ("strict", "replace"):
        raise InputError(f"errors must be strict or replace, got {errors!r}")
    if level is not None and level not in LEVELS:
        raise InputError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
    encoding = check_encoding(encoding)
    val_frac, test_frac = _fractions(val_frac, test_frac, val, test)
    if max_vocab is not None and max_vocab < len((UNK, EOS)) + 1:
        raise InputError(f"--max-vocab must be at least 3, got {max_vocab}")
    if min_count < 1:
        raise InputError(f"--min-count must be at least 1, got {min_count}")
    for flag, value in (("--min-count", min_count), ("--max-vocab", max_vocab)):
        if value is not None and value >= 1 << 63:     # stored as int64 (the BPE trainer: u64)
            raise InputError(f"{flag} must be below 2^63, got {value}")
    vocab = _reused_vocab(vocab_from, level, max_vocab, min_count) if vocab_from else None
    level = vocab.level if vocab else (level or "char")
    if level == "bpe":
        bpe_options(vocab_size, max_vocab, vocab_from)
    elif vocab_size is not None:
        raise InputError("--vocab-size applies to --level bpe only")
    if level == "byte" and errors != "strict":
        raise InputError("--errors replace does nothing at --level byte, which reads bytes as "
                         "they are")
    if level not in ("word", "bpe") and (max_vocab is not None or min_count != 1):
        raise InputError("--max-vocab applies to --level word, --min-count to word and bpe")
    if not inputs:
        raise InputError("no input given")
    skipped = []
    sources = [Source(p, "train") for p in find_inputs(inputs, encoding, skipped)]
    for name, patterns in (("val", val), ("test", test)):
        if patterns is not None:
            patterns = [patterns] if isinstance(patterns, (str, bytes, os.PathLike)) else patterns
            sources += [Source(p, name) for p in find_inputs(list(patterns), encoding, skipped)]
    _distinct_splits(sources)
    output, folder = _check_output(output, force, [s.path for s in sources] +
                                   ([vocab_from] if vocab_from else []))
    removed = files.clean_stale(folder)
    total_bytes = sum(os.path.getsize(s.path) for s in sources)
    train_tokens = None
    if level == "bpe":
        if vocab is None:
            text = lambda: bpe.training_text(sources, 1 - val_frac - test_frac,  # noqa: E731
                                             encoding, errors, min(block, BpeTokenizer.max_block))
            vocab = bpe.train(text(), vocab_size, min_count)
            if val_frac + test_frac > 0:    # the training split: the text it learnt from
                train_tokens = sum(len(vocab.encode(piece)) for piece in text())
        tokenizer = BpeTokenizer(vocab)
    else:
        tokenizer = TOKENIZERS[level]()
    block = min(block, tokenizer.max_block or block)
    bar = (progress(2 * total_bytes) if progress else None) or contextlib.nullcontext()
    try:
        sizes = _run(sources, output, folder, tokenizer, vocab, bar, level, encoding, errors,
                     block, vocab_from, max_vocab, min_count, val_frac, test_frac, train_tokens)
    except files.WriteError:
        raise
    except OSError as err:  # pass 1's word cache in the output folder
        raise files.write_error(output, err) from None
    vocab = sizes.pop("vocab")
    unk = 0
    if vocab.unk_id is not None:
        unk = int(tokenizer.id_counts(vocab)[vocab.unk_id])
    return {"output": output, "level": level, "vocab_size": len(vocab), "dtype": str(vocab.dtype),
            "splits": {name: n for name, n in sizes.items() if n}, "unk": unk,
            "files": len(sources), "bytes": total_bytes, "removed": removed,
            "marked": utf8_marks(sources, encoding) if level != "byte" else [],
            "skipped": sorted(set(skipped)),
            "seconds": time.perf_counter() - started}


def _first_unknown(path, vocab, level, encoding, errors, symbol):
    """(the first symbol of the file at `path` that `vocab` lacks, ", line L, column C"); the
    counts found that one is missing (`symbol`), not where: read again, on this error only."""
    unknown = re.compile("[^" + "".join(re.escape(t) for t in vocab.tokens) + "]")
    decoder = codecs.getincrementaldecoder("latin-1" if level == "byte" else encoding)(errors)
    line, carried = 1, 0            # carried: the line's characters in earlier blocks
    for block in read_blocks(path, BLOCK):
        text = decoder.decode(block)
        found = unknown.search(text)
        end = found.start() if found else len(text)
        start = text.rfind("\n", 0, end)
        line, column = line + text.count("\n", 0, end), \
            end - start if start >= 0 else carried + end + 1
        if found:
            return found.group(), f", line {line}, column {column}"
        carried = column - 1
    return symbol, ""


def _run(sources, output, folder, tokenizer, vocab, bar, level, encoding, errors, block,
         vocab_from, max_vocab, min_count, val_frac, test_frac, train_tokens):
    """Both passes; returns the split sizes and, under "vocab", the vocabulary."""
    with bar, contextlib.ExitStack() as cleanup:
        cache = None
        if tokenizer.caches_units:
            cache = cleanup.enter_context(_temporary(folder, lambda: tempfile.TemporaryFile(
                dir=folder)))
        hasher = cleanup.enter_context(thread_pool(1, "rnnkit-sha256"))
        reader = Reader(tokenizer, encoding, errors, block,
                        getattr(bar, "update", None) or (lambda n: None), hasher, cache)
        for source in sources:
            reader.count(source)
            if vocab is not None and (symbol := tokenizer.unknown(vocab)) is not None:
                symbol, where = _first_unknown(source.path, vocab, level, encoding, errors,
                                               symbol)
                what = f"byte 0x{ord(symbol):02x}" if level == "byte" else \
                    f"{symbol!r} (U+{ord(symbol):04X})"
                raise InputError(f"{source.path}{where}: {what} is not in the vocabulary of "
                                 f"{vocab_from}; --vocab-from needs every symbol to be in it"
                                 + bom_hint(symbol))
        main_tokens = sum(s.tokens for s in sources if s.split == "train")
        if main_tokens == 0:
            raise InputError("the input is empty (no tokens)")
        sizes, feeds = _plan(main_tokens, val_frac, test_frac, sources, train_tokens)
        if vocab is None:
            vocab = tokenizer.vocabulary(max_vocab, min_count)
        if cache is not None:
            cache.seek(0)

        # pass 2: encode, into a temporary file renamed into place at the end
        with files.atomic(output) as tmp:
            write.write(tmp, output, reader, vocab, sources, sizes, feeds,
                    attrs=dict(level=level, encoding=encoding, errors=errors,
                               max_vocab=max_vocab, min_count=min_count, vocab_from=vocab_from,
                               val_frac=val_frac, test_frac=test_frac, sizes=sizes))
    return {**sizes, "vocab": vocab}


def _temporary(folder, make):
    try:
        return make()
    except OSError as err:
        raise InputError(f"cannot write in {folder}: {err.strerror}") from None
