"""Pass 2 of `rnnkit preprocess`: the corpus file itself (layout: docs/corpus-format.md),
written from the sources read again, at a temporary path that preprocess.py renames into place.
"""
import contextlib
import os

import numpy as np

from rnnkit import files
from rnnkit import h5 as rnnkit_h5
from rnnkit.corpus import chunks
from rnnkit.corpus.chunks import SplitWriter, compression_pool
from rnnkit.corpus.reader import FORMAT, FORMAT_VERSION
from rnnkit.corpus.sources import InputError, stamp
from rnnkit.corpus.tokenize import EOS, UNK
from rnnkit.version import __version__


def write(path, output, reader, vocab, sources, sizes, feeds, attrs):
    """Write the corpus file at `path` (to become `output`). A write that fails (a
    full disk) becomes a WriteError with the size the corpus would need, estimated from what
    was written."""
    writers = []
    try:
        _write_corpus(path, reader, vocab, sources, sizes, feeds, attrs, writers)
    except OSError as err:
        if isinstance(err, files.WriteError):
            raise
        try:
            size = os.path.getsize(path)
            os.unlink(path)         # first, so that the message counts its space as free
        except OSError:
            size = 0
        ids = sum(w.stored_ids for w in writers)
        stored = sum(w.stored_bytes for w in writers)
        last = [w.sizes for w in writers if w.sizes]
        per_id = (stored / ids if ids else last[0][1] / last[0][0] if last else None)
        needed = (int(per_id * sum(sizes.values()) + max(0, size - stored) + chunks.RESERVE)
                  if per_id else None)
        raise files.write_error(output, err, needed) from None


def _write_corpus(path, reader, vocab, sources, sizes, feeds, attrs, writers):
    import h5py

    # libver v110: the file's metadata carries HDF5's checksums
    h5 = h5py.File(path, "w", libver="v110")
    try:
        with compression_pool() as pool:
            _fill(h5, pool, reader, vocab, sources, sizes, feeds, attrs, writers)
    except BaseException:
        # after a failed write HDF5's close fails too (RuntimeError, OSError): the first
        # error is the one to report, and the file is removed anyway
        with contextlib.suppress(Exception):
            h5.close()
        raise
    try:
        h5.close()
    except RuntimeError as err:     # a failed flush at close (h5py raises RuntimeError)
        raise OSError(str(err)) from None


def _fill(h5, pool, reader, vocab, sources, sizes, feeds, attrs, writers):
    """Pass 2 into the open file `h5`; `writers` gets the split writers (for their counts)."""
    encode = reader.tokenizer.encoder(vocab)
    _write_attrs(h5, **attrs)
    vocab.save(h5)
    h5.create_dataset("counts", data=reader.tokenizer.id_counts(vocab), fletcher32=True)
    _write_sources(h5, sources)
    by_name = {name: SplitWriter(h5, name, n, vocab.dtype, pool)
               for name, n in sizes.items() if n}
    writers += by_name.values()
    # the same order as pass 1 (train sources come first), which the word cache relies on
    for group in ("train", "val", "test"):
        parts = [[by_name[name], n] for name, n in feeds.get(group, []) if n]
        for source in (s for s in sources if s.split == group):
            seen = 0
            for units in reader.again(source):
                ids = encode(units)
                seen += len(ids)
                while len(ids) and parts:
                    writer, room = parts[0]
                    take = min(room, len(ids))
                    writer.append(ids[:take])
                    ids = ids[take:]
                    parts[0][1] -= take
                    if parts[0][1] == 0:
                        parts.pop(0)
            # the same count can hide an edit in place (same size, same vocabulary): then the
            # ids would not be the text that the counts and the sha256 describe
            if seen != source.tokens or stamp(source.path) != source.stamp:
                raise InputError(f"{source.path} changed while being read; run again")
    for writer in by_name.values():
        writer.close()


def _write_attrs(h5, *, level, encoding, errors, max_vocab, min_count, vocab_from, val_frac,
                 test_frac, sizes):
    attrs = h5.attrs
    attrs["format"] = FORMAT
    attrs["format_version"] = FORMAT_VERSION
    attrs["rnnkit_version"] = __version__
    attrs["level"] = level
    attrs["encoding"] = encoding
    attrs["errors"] = errors
    attrs["max_vocab"] = max_vocab or 0
    attrs["min_count"] = min_count
    attrs["unk_token"] = UNK if level == "word" else ""
    attrs["eos_token"] = EOS if level == "word" else ""
    attrs["vocab_from"] = os.fspath(vocab_from) if vocab_from else ""
    attrs["val_frac"] = val_frac
    attrs["test_frac"] = test_frac
    names = [name for name, n in sizes.items() if n]
    attrs["splits"] = names
    attrs["split_tokens"] = np.array([sizes[name] for name in names], np.uint64)


def _write_sources(h5, sources):
    import h5py

    text = h5py.string_dtype("utf-8")
    dtype = np.dtype([("name", text), ("split", text), ("bytes", np.uint64),
                      ("tokens", np.uint64), ("sha256", "S64")])
    rows = np.array([(s.path.encode("utf-8", "replace").decode("utf-8"), s.split, s.bytes,
                      s.tokens, s.sha256.encode()) for s in sources], dtype)
    rnnkit_h5.write_table(h5, "sources", rows)
