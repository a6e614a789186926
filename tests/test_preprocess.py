"""`rnnkit preprocess` and `rnnkit info`: round trips, vocabularies, splits, layout, bad input."""
import hashlib
import os
import re

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from rnnkit.corpus import chunks
from rnnkit.cli.main import main
from rnnkit.corpus.reader import Corpus
from rnnkit.corpus.preprocess import preprocess
from rnnkit.corpus.sources import InputError, find_inputs
from rnnkit.corpus.tokenize import id_dtype

TEXT = "Première ligne: naïve café!\r\n日本語のテキスト 😀\n\ttabs\tand  spaces\nend"


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    return path


def make(tmp_path, data, name="corpus.h5", **options):
    src = write(tmp_path / "input.txt", data)
    out = tmp_path / name
    options.setdefault("val_frac", 0)
    options.setdefault("test_frac", 0)
    preprocess([str(src)], out, force=True, **options)
    return out


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def stored(path, split="train"):
    with Corpus(path) as corpus:
        return corpus.tokens(split)


# -- round trips --

@pytest.mark.parametrize("block", [1, 3, 7, 1 << 20])
def test_char_round_trip_across_block_boundaries(tmp_path, block):
    out = make(tmp_path, TEXT, block=block)
    with Corpus(out) as corpus:
        assert corpus.decode(corpus.tokens("train")) == TEXT
        assert corpus.vocab == sorted(set(TEXT))  # code point order


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "latin-1", "utf-16", "utf-7"])
@pytest.mark.parametrize("block", [1, 3, 7, 64, 1 << 20])
def test_char_round_trip_in_ascii_blocks_and_others(tmp_path, encoding, block):
    """Blocks of ASCII bytes are taken undecoded only where that gives the same characters:
    not after a character cut by the block's start, not in UTF-16 (ASCII text has NUL bytes
    that are ASCII too) nor UTF-7 (b"+-" is "+"), not where a BOM is still to come."""
    text = ("plain ascii + more " * 5 + "café déjà " + "ascii again + " * 5) * 3
    src = tmp_path / "input.txt"
    src.write_bytes(text.encode(encoding))
    out = tmp_path / "c.h5"
    preprocess([str(src)], out, encoding=encoding, block=block, val_frac=0, test_frac=0,
               force=True)
    with Corpus(out) as corpus:
        assert corpus.decode(corpus.tokens("train")) == text


def test_read_text_gives_ascii_blocks_as_bytes(tmp_path):
    from rnnkit.corpus.sources import read_text

    path = write(tmp_path / "t.txt", "abcdéfghijklmn")       # é: bytes 4 and 5
    blocks = list(read_text(str(path), "utf-8", "strict", 5, ascii_bytes=True))
    # "abcd" and the first byte of é; the rest of é and "fghi" (decoded: é was carried over);
    # then "jklmn", all ASCII with nothing carried over: its bytes
    assert blocks == ["abcd", "éfghi", b"jklmn"]
    assert list(read_text(str(path), "utf-8", "strict", 5)) == ["abcd", "éfghi", "jklmn"]
    # a cut character that ASCII follows is replaced where it stands, not after the ASCII
    path = write(tmp_path / "t.txt", b"ab\xc3cdefgh")
    blocks = read_text(str(path), "utf-8", "replace", 3, ascii_bytes=True)
    assert "".join(b.decode() if isinstance(b, bytes) else b for b in blocks) == \
        "ab\ufffdcdefgh"


def test_char_splits_concatenate_to_the_text(tmp_path):
    text = "".join(chr(ord("a") + i % 26) for i in range(1000)) + TEXT
    out = make(tmp_path, text, val_frac=0.1, test_frac=0.05)
    with Corpus(out) as corpus:
        parts = [corpus.decode(corpus.tokens(s)) for s in ("train", "val", "test")]
    n = len(text)
    n_val, n_test = int(0.1 * n), int(0.05 * n)
    assert [len(p) for p in parts] == [n - n_val - n_test, n_val, n_test]
    assert "".join(parts) == text


def test_byte_round_trip_any_bytes(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    out = make(tmp_path, data, level="byte", block=333)
    with Corpus(out) as corpus:
        assert corpus.vocab_size == len(set(data))
        assert corpus.decode_bytes(corpus.tokens("train")) == data
        assert corpus.dtype == np.uint8


def test_byte_level_decodes_with_the_encoding(tmp_path):
    out = make(tmp_path, TEXT, level="byte")
    with Corpus(out) as corpus:
        assert corpus.decode(corpus.tokens("train")) == TEXT
        assert list(corpus.encode(TEXT)) == list(corpus.tokens("train"))


@pytest.mark.parametrize("block", [2, 5, 1 << 20])
def test_word_tokens_and_eos(tmp_path, block):
    text = "the cat\n sat  on\tthe mat\r\n\nthe end"
    out = make(tmp_path, text, level="word", block=block)
    with Corpus(out) as corpus:
        words = [corpus.vocab[i] for i in corpus.tokens("train")]
        assert corpus.vocab[:2] == ["<unk>", "<eos>"]
        assert corpus.vocab[2] == "the"  # most frequent first, then ties in code point order
        assert corpus.vocab[3:] == sorted(corpus.vocab[3:])
    assert words == ["the", "cat", "<eos>", "sat", "on", "the", "mat", "<eos>", "<eos>",
                     "the", "end", "<eos>"]


def test_word_max_vocab_and_min_count(tmp_path):
    text = "a a a b b c d\n"
    out = make(tmp_path, text, level="word", min_count=2)
    with Corpus(out) as corpus:
        assert corpus.vocab == ["<unk>", "<eos>", "a", "b"]
        assert corpus.decode(corpus.tokens("train")) == "a a a b b <unk> <unk>\n"
        assert corpus.counts.tolist() == [2, 1, 3, 2]
    out = make(tmp_path, text, level="word", max_vocab=3)
    with Corpus(out) as corpus:
        assert corpus.vocab == ["<unk>", "<eos>", "a"]
        assert corpus.attrs["max_vocab"] == 3


def test_several_inputs_in_given_then_sorted_order(tmp_path):
    write(tmp_path / "d" / "b.txt", "B")
    write(tmp_path / "d" / "a.txt", "A")
    write(tmp_path / "d" / "sub" / "c.txt", "C")
    write(tmp_path / "d" / ".hidden.txt", "H")
    write(tmp_path / "d" / "blob.bin", b"\x00\x01binary")
    write(tmp_path / "z.txt", "Z")
    paths = find_inputs([str(tmp_path / p) for p in ("z.txt", "d", "d/*.txt")])
    assert [os.path.relpath(p, tmp_path) for p in paths] == [
        "z.txt", "d/a.txt", "d/b.txt", "d/sub/c.txt"]  # the glob repeats nothing
    out = tmp_path / "c.h5"
    preprocess([str(tmp_path / "z.txt"), str(tmp_path / "d")], out, val_frac=0, test_frac=0)
    with Corpus(out) as corpus:
        assert corpus.decode(corpus.tokens("train")) == "ZABC"


# -- dtype --

@pytest.mark.parametrize("dtype, size", [(np.uint8, 1), (np.uint8, 2), (np.uint8, 7),
                                         (np.uint16, 7), (np.uint32, 7)])
@pytest.mark.parametrize("slice_", [3, 1 << 20])
def test_add_counts_is_a_bincount(monkeypatch, dtype, size, slice_):
    from rnnkit.corpus import tokenize

    monkeypatch.setattr(tokenize, "SLICE", slice_)
    units = np.random.default_rng(size).integers(0, 256 if dtype == np.uint8 else 70_000,
                                                 size * 1001).astype(dtype)
    counts = np.zeros(1 << 17, np.int64)
    tokenize.add_counts(counts, units)
    tokenize.add_counts(counts, units[:5])
    expected = np.bincount(units, minlength=1 << 17) + np.bincount(units[:5], minlength=1 << 17)
    assert (counts == expected).all()


def test_as_bytes_gives_the_viewed_bytes_or_a_copy():
    from rnnkit.corpus.tokenize import as_bytes

    data = b"abcdef"
    whole = np.frombuffer(data, np.uint8)
    assert as_bytes(whole) is data
    for view in (whole[1:], whole[:-1], whole[::-1], whole[::2], np.arange(3, dtype=np.uint8)):
        assert as_bytes(view) == view.tobytes() and as_bytes(view) is not data


def test_id_dtype_boundaries():
    assert [id_dtype(v) for v in (1, 256, 257, 65536, 65537)] == \
        [np.uint8, np.uint8, np.uint16, np.uint16, np.uint32]


@pytest.mark.parametrize("size,dtype", [(256, np.uint8), (257, np.uint16),
                                        (65536, np.uint16), (65537, np.uint32)])
def test_stored_dtype_at_the_boundaries(tmp_path, size, dtype):
    points = [c for c in range(0x100, 0x100 + size + 2048) if not 0xD800 <= c < 0xE000][:size]
    text = "".join(map(chr, points))
    out = make(tmp_path, text)
    with Corpus(out) as corpus:
        ids = corpus.tokens("train")
        assert corpus.vocab_size == size and corpus.dtype == dtype
        assert ids.max() == size - 1 and corpus.decode(ids) == text


# -- vocabulary reuse --

def test_vocab_from_shares_ids(tmp_path):
    first = make(tmp_path, "abcdef", name="first.h5")
    second = tmp_path / "second.h5"
    write(tmp_path / "other.txt", "fad")
    preprocess([str(tmp_path / "other.txt")], second, vocab_from=first, val_frac=0, test_frac=0)
    with Corpus(first) as a, Corpus(second) as b:
        assert a.vocab == b.vocab
        assert b.tokens("train").tolist() == [5, 0, 3]
        assert b.attrs["vocab_from"] == str(first)


def test_vocab_from_word_level_maps_unknown_words_to_unk(tmp_path):
    first = make(tmp_path, "a b c\n", name="first.h5", level="word")
    write(tmp_path / "other.txt", "a x b y\n")
    result = preprocess([str(tmp_path / "other.txt")], tmp_path / "second.h5",
                        vocab_from=first, val_frac=0, test_frac=0)
    assert result["unk"] == 2
    with Corpus(tmp_path / "second.h5") as corpus:
        assert corpus.decode(corpus.tokens("train")) == "a <unk> b <unk>\n"


def test_vocab_from_char_level_names_the_unknown_symbol(tmp_path):
    first = make(tmp_path, "abc", name="first.h5")
    write(tmp_path / "other.txt", "abé")
    result = cli("preprocess", tmp_path / "other.txt", "--vocab-from", first, "-o",
                 tmp_path / "second.h5")
    assert result.exit_code == 1
    assert "'é' (U+00E9) is not in the vocabulary" in result.output
    assert not (tmp_path / "second.h5").exists()


# -- splits and layout --

def test_explicit_val_and_test_files(tmp_path):
    write(tmp_path / "train.txt", "x" * 100)
    write(tmp_path / "valid.txt", "y" * 30)
    write(tmp_path / "test.txt", "z" * 20)
    result = cli("preprocess", tmp_path / "train.txt", "--val", tmp_path / "valid.txt",
                 "--test", tmp_path / "test.txt", "-o", tmp_path / "c.h5")
    assert result.exit_code == 0, result.output
    with Corpus(tmp_path / "c.h5") as corpus:
        sizes = {s: corpus.len_split(s) for s in corpus.splits}
        assert sizes == {"train": 100, "val": 30, "test": 20}
        assert corpus.decode(corpus.tokens("val")) == "y" * 30


def test_word_level_with_val_and_test_files(tmp_path):
    write(tmp_path / "train.txt", "a b c\nb c\n")
    write(tmp_path / "valid.txt", "c d\n")
    write(tmp_path / "test.txt", "e a")
    preprocess([str(tmp_path / "train.txt")], tmp_path / "c.h5", level="word", block=3,
               val=str(tmp_path / "valid.txt"), test=str(tmp_path / "test.txt"))
    with Corpus(tmp_path / "c.h5") as corpus:
        assert [corpus.decode(corpus.tokens(s)) for s in corpus.splits] == \
            ["a b c\nb c\n", "c d\n", "e a\n"]
        assert corpus.vocab == ["<unk>", "<eos>", "c", "a", "b", "d", "e"]


def test_val_file_with_a_test_fraction_and_absent_empty_split(tmp_path):
    write(tmp_path / "train.txt", "x" * 100)
    write(tmp_path / "valid.txt", "y" * 30)
    preprocess([str(tmp_path / "train.txt")], tmp_path / "c.h5", val=str(tmp_path / "valid.txt"),
               test_frac=0.2)
    with Corpus(tmp_path / "c.h5") as corpus:
        assert [(s, corpus.len_split(s)) for s in corpus.splits] == \
            [("train", 80), ("val", 30), ("test", 20)]
    preprocess([str(tmp_path / "train.txt")], tmp_path / "d.h5", val=str(tmp_path / "valid.txt"))
    with Corpus(tmp_path / "d.h5") as corpus:
        assert corpus.splits == ["train", "val"] and "test" not in corpus.file


def test_file_layout_and_attributes(tmp_path, monkeypatch):
    monkeypatch.setattr(chunks, "CHUNK", 64)  # many chunks through the threaded path, and a tail
    text = "".join(chr(ord("a") + i % 7) for i in range(10_001))
    out = make(tmp_path, text, val_frac=0.1, test_frac=0.1)
    with h5py.File(out, "r") as f:
        a = f.attrs
        assert a["format"] == "rnnkit-corpus" and a["format_version"] == 1
        assert a["level"] == "char" and a["encoding"] == "utf-8" and a["errors"] == "strict"
        assert list(a["splits"]) == ["train", "val", "test"]
        assert a["split_tokens"].tolist() == [8001, 1000, 1000]
        train = f["train"]
        assert train.compression == "gzip" and train.chunks == (64,) and train.maxshape == (None,)
        assert "".join(chr(ord("a") + i) for i in f["train"][:14]) == text[:14]
        assert f["vocab"][()].tolist() == [ord(c) for c in "abcdefg"]
        assert f["counts"][()].sum() == len(text)
        row = f["sources"][0]
        assert row["bytes"] == len(text) and row["tokens"] == len(text)
        assert row["sha256"].decode() == hashlib.sha256(text.encode()).hexdigest()
    with Corpus(out) as corpus:
        assert corpus.decode(np.concatenate([corpus.tokens(s) for s in corpus.splits])) == text


def test_replace_errors_keep_going(tmp_path):
    out = make(tmp_path, b"ab\xffcd", errors="replace")
    with Corpus(out) as corpus:
        assert corpus.decode(corpus.tokens("train")) == "ab\ufffdcd"


@pytest.mark.parametrize("block", [1, 4, 1 << 20])
def test_strict_errors_name_the_byte_offset(tmp_path, block):
    write(tmp_path / "bad.txt", "héllo ".encode() + b"\xe2\x82" + b"x")
    with pytest.raises(InputError, match=r"bad.txt: invalid utf-8 at byte 7 \(0xe2 0x82\)"):
        preprocess([str(tmp_path / "bad.txt")], tmp_path / "c.h5", block=block)
    write(tmp_path / "cut.txt", "abc".encode() + "é".encode()[:1])
    with pytest.raises(InputError, match="at byte 3"):
        preprocess([str(tmp_path / "cut.txt")], tmp_path / "c.h5", block=block)


# -- bad input through the command line: one line, exit code != 0, no file left behind --

def assert_fails(tmp_path, args, message, code=1):
    before = set(os.listdir(tmp_path))
    result = cli(*args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and message in errors[0], result.output
    assert set(os.listdir(tmp_path)) == before  # no corpus, no temporary file


@pytest.mark.parametrize("setup,args,message", [
    (None, ["missing.txt"], "no such file or folder: "),
    ({"empty.txt": ""}, ["empty.txt"], "the input is empty"),
    ({"d/blob.bin": b"\0\1"}, ["d"], "has no text files"),
    ({"in.txt": "x" * 50}, ["in.txt", "--val-frac", "0.5", "--test-frac", "0.5"],
     "leaves no training data"),
    ({"in.txt": "x" * 15}, ["in.txt"], "gives 1 val token(s)"),
    ({"in.txt": "x"}, ["in.txt", "--val-frac", "0", "--test-frac", "0"], "gives 1 train token"),
    ({"in.txt": "x" * 50, "v.txt": "y"}, ["in.txt", "--val", "v.txt"], "the --val file gives 1"),
    ({"in.txt": "x" * 50}, ["in.txt", "--val", "v.txt", "--val-frac", "0.1"],
     "--val-frac or --val FILE"),
    ({"in.txt": "x" * 50}, ["in.txt", "--max-vocab", "10"],
     "--max-vocab applies to --level word, --min-count to word and bpe"),
    ({"in.txt": "x" * 50}, ["in.txt", "--encoding", "nope"], "unknown encoding 'nope'"),
    ({"in.txt": "x" * 50, "v.txt": "abc"}, ["in.txt", "--vocab-from", "v.txt"],
     "is not an HDF5 file"),
    ({"in.txt": b"ab\xffcd"}, ["in.txt"], "in.txt: invalid utf-8 at byte 2 (0xff)"),
    ({"in.txt": "a\0b"}, ["in.txt", "--level", "word"], "NUL character"),
])
def test_bad_input(tmp_path, monkeypatch, setup, args, message):
    for name, data in (setup or {}).items():
        write(tmp_path / name, data)
    monkeypatch.chdir(tmp_path)
    assert_fails(tmp_path, ["preprocess", *args, "-o", "out.h5"], message)


@pytest.mark.parametrize("args,message", [
    (["--val-frac", "abc"], "'abc' is not a valid float"),
    (["--val-frac", "1.5"], "1.5 is not in the range 0<=x<1"),
    (["--max-vocab", "0"], "0 is not in the range x>=3"),
    (["--min-count", "-1"], "is not in the range x>=1"),
    (["--level", "line"], "'line' is not one of"),
])
def test_invalid_numbers_and_choices(tmp_path, monkeypatch, args, message):
    write(tmp_path / "in.txt", "x" * 50)
    monkeypatch.chdir(tmp_path)
    assert_fails(tmp_path, ["preprocess", "in.txt", *args, "-o", "out.h5"], message, code=2)


def test_vocab_from_must_be_an_rnnkit_corpus_of_the_same_level(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "in.txt", "x" * 50)
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = [1, 2]
    assert_fails(tmp_path, ["preprocess", "in.txt", "--vocab-from", "plain.h5", "-o", "o.h5"],
                 "plain.h5 is not an rnnkit corpus")
    make(tmp_path, "xyz", name="chars.h5")
    assert_fails(tmp_path, ["preprocess", "in.txt", "--vocab-from", "chars.h5", "--level", "word",
                            "-o", "o.h5"], "does not match the char-level vocabulary")


def test_existing_output_needs_force(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "in.txt", "x" * 50)
    write(tmp_path / "out.h5", "precious")
    assert_fails(tmp_path, ["preprocess", "in.txt", "-o", "out.h5"], "out.h5 exists; use --force")
    assert (tmp_path / "out.h5").read_text() == "precious"
    assert cli("preprocess", "in.txt", "-o", "out.h5", "--force").exit_code == 0
    assert stored(tmp_path / "out.h5").tolist() == [0] * 40


def test_unwritable_output_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "in.txt", "x" * 50)
    assert_fails(tmp_path, ["preprocess", "in.txt", "-o", "nowhere/out.h5"], "does not exist")
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # we may run as root
    assert_fails(tmp_path, ["preprocess", "in.txt", "-o", "out.h5"], "is not writable")


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    write(tmp_path / "in.txt", "x" * 5000)
    write(tmp_path / "out.h5", "old corpus")

    def interrupt(self, ids):
        raise KeyboardInterrupt

    monkeypatch.setattr(chunks.SplitWriter, "append", interrupt)
    with pytest.raises(KeyboardInterrupt):
        preprocess([str(tmp_path / "in.txt")], tmp_path / "out.h5", force=True)
    assert sorted(os.listdir(tmp_path)) == ["in.txt", "out.h5"]
    assert (tmp_path / "out.h5").read_text() == "old corpus"


def test_summary_on_stderr_and_quiet(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "in.txt", "hello world\n" * 20)
    result = CliRunner().invoke(main, ["preprocess", "in.txt", "-o", "c.h5"])
    assert result.exit_code == 0 and result.stdout == ""
    assert "wrote c.h5: char level, vocabulary 9 (uint8); tokens: train 192, val 24, test 24; " \
        "1 file(s), 240 bytes in" in result.stderr
    result = CliRunner().invoke(main, ["preprocess", "in.txt", "-o", "c.h5", "-f", "-q"])
    assert result.exit_code == 0 and result.output == ""


# -- rnnkit info --

def test_info_describes_a_corpus(tmp_path):
    out = make(tmp_path, "hello world\n" * 20, level="word", val_frac=0.25)
    result = cli("info", out)
    assert result.exit_code == 0, result.output
    assert "rnnkit corpus, format version 1" in result.output
    assert "tokens: 60 (train 45, val 15), stored as uint8" in result.output
    assert "vocabulary: 4 tokens; most frequent: <eos> hello world\n" in result.output
    assert "input.txt  [train]  240 bytes  60 tokens  sha256" in result.output


def test_info_dispatches_on_the_format_attribute(tmp_path, monkeypatch):
    from rnnkit.tools import info

    with h5py.File(tmp_path / "new.h5", "w") as f:
        f.attrs["format"] = "rnnkit-new"
    assert_fails(tmp_path, ["info", tmp_path / "new.h5"], "has format 'rnnkit-new'")
    monkeypatch.setitem(info.DESCRIBERS, "rnnkit-new", "os.path:basename")
    assert cli("info", tmp_path / "new.h5").output.startswith("new.h5\nchecksums: none")


def test_info_reports_a_damaged_file_in_one_line(tmp_path):
    out = make(tmp_path, "abc" * 10)
    with h5py.File(out, "a") as f:
        del f["vocab"]
    assert_fails(tmp_path, ["info", out], "is an incomplete rnnkit corpus")
    with h5py.File(tmp_path / "ck.h5", "w") as f:
        f.attrs["format"] = "rnnkit-checkpoint"
    assert_fails(tmp_path, ["info", tmp_path / "ck.h5"], "ck.h5")


def test_info_rejects_other_files(tmp_path):
    write(tmp_path / "a.txt", "text")
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = [1]
    assert_fails(tmp_path, ["info", tmp_path / "a.txt"], "is not an HDF5 file")
    assert_fails(tmp_path, ["info", tmp_path / "plain.h5"], "not an rnnkit file")
    assert_fails(tmp_path, ["info", tmp_path / "none.h5"], "does not exist", code=2)


# -- the writer's own chunks --

@pytest.mark.parametrize("data", [b"", b"\x01", b"\x00" * 7, b"\xff" * 2000, b"\xff" * 721,
                                  bytes(range(256)) * 5,
                                  np.random.default_rng(0).integers(0, 256, 100_001, np.uint8)
                                  .tobytes(),
                                  np.random.default_rng(1).integers(250, 256, 262_144, np.uint8)
                                  .tobytes()])
@pytest.mark.parametrize("segment", [None, 7])
def test_fletcher32_is_hdf5s(tmp_path, monkeypatch, data, segment):
    """The checksum the writer appends to the chunks it compresses is the one HDF5's own
    fletcher32 filter appends (read back raw), for odd and even lengths, across its 360-word
    folds, where the sums are multiples of 65535 (all 0xff), and summed in segments."""
    from rnnkit.corpus import fletcher32
    from rnnkit.corpus.fletcher32 import with_checksum

    if segment:
        monkeypatch.setattr(fletcher32, "SEGMENT", segment)

    if not data:
        assert with_checksum(b"") == b"\0\0\0\0"
        return
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("d", data=np.frombuffer(data, np.uint8), chunks=(len(data),),
                         fletcher32=True)
    with h5py.File(tmp_path / "f.h5", "r") as f:
        _, raw = f["d"].id.read_direct_chunk((0,))
    assert with_checksum(data) == raw


def test_preprocess_loads_no_compiler(tmp_path):
    """Numba and LLVM take about 160 MB of memory, more than preprocessing itself: a corpus
    is written without them (bench/RESULTS.md, "Preprocess")."""
    import subprocess
    import sys

    src = write(tmp_path / "input.txt", TEXT * 1000)
    code = ("import sys; from rnnkit.cli.main import main\n"
            "try: main(sys.argv[1:])\n"
            "except SystemExit as e: assert not e.code, e.code\n"
            "print(sorted(m for m in ('numba', 'llvmlite') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, "preprocess", str(src), "-o",
                          str(tmp_path / "c.h5"), "-q"], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_a_file_in_two_splits_is_refused(tmp_path):
    (tmp_path / "a.txt").write_text("some text\n" * 50)
    (tmp_path / "v.txt").write_text("other text\n" * 50)
    for args, said in ((["a.txt", "--val", "a.txt"], "a.txt is given as an input and as --val"),
                       (["a.txt", "--val", "v.txt", "--test", "v.txt"],
                        "v.txt is given as --val and as --test")):
        result = CliRunner().invoke(main, ["preprocess", *[str(tmp_path / a) if a.endswith(
            ".txt") else a for a in args], "-o", str(tmp_path / "c.h5")])
        assert result.exit_code == 1 and said in result.output, result.output
    assert not (tmp_path / "c.h5").exists()


def test_errors_replace_at_byte_level_is_refused(tmp_path):
    (tmp_path / "a.txt").write_text("some text\n" * 50)
    result = CliRunner().invoke(main, ["preprocess", str(tmp_path / "a.txt"), "--level", "byte",
                                       "--errors", "replace", "-o", str(tmp_path / "c.h5")])
    assert result.exit_code == 1 and "does nothing at --level byte" in result.output


def test_a_utf8_byte_order_mark_gets_a_note(tmp_path):
    (tmp_path / "b.txt").write_bytes(b"\xef\xbb\xbfhello world\n" * 20)
    result = CliRunner().invoke(main, ["preprocess", str(tmp_path / "b.txt"), "--level", "word",
                                       "-o", str(tmp_path / "b.h5")])
    assert result.exit_code == 0 and "starts with a UTF-8 byte order mark" in result.output
    result = CliRunner().invoke(main, ["preprocess", str(tmp_path / "b.txt"), "--level", "word",
                                       "--encoding", "utf-8-sig", "-o", str(tmp_path / "s.h5")])
    assert result.exit_code == 0 and "byte order mark" not in result.output


def test_info_names_a_byte_corpus_encoding(tmp_path):
    out = make(tmp_path, "caf\xe9 au lait\n" * 20, level="byte", encoding="latin-1")
    result = cli("info", out)
    assert result.exit_code == 0 and "level byte, encoding iso8859-1\n" in result.output


def test_bpe_tokens_that_are_part_of_a_character_show_their_bytes():
    pytest.importorskip("tokenizers")
    from rnnkit.corpus.bpe import show
    assert show("Ġthe") == "' the'"
    assert show("â\u0122") == repr(b"\xe2\x80")        # two bytes of a three-byte character


def test_an_edit_in_place_between_the_passes_is_found(tmp_path, monkeypatch):
    """Same size, same symbols: the token count matched, so the ids were the new text while
    the counts and sha256 described the old one, and nothing was said."""
    from rnnkit.corpus import preprocess as pre
    src = write(tmp_path / "in.txt", "abcd\n" * 200)
    count = pre.Reader.count

    def count_then_edit(self, source):
        count(self, source)
        with open(source.path, "r+b") as f:
            f.seek(500)
            f.write(b"dcba")
        st = os.stat(source.path)
        os.utime(source.path, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))

    monkeypatch.setattr(pre.Reader, "count", count_then_edit)
    with pytest.raises(InputError, match="changed while being read"):
        preprocess([str(src)], tmp_path / "c.h5", val_frac=0, test_frac=0)
    assert not (tmp_path / "c.h5").exists()


def test_a_symlink_loop_is_named_as_one(tmp_path):
    os.symlink(tmp_path / "b", tmp_path / "a")
    os.symlink(tmp_path / "a", tmp_path / "b")
    with pytest.raises(InputError, match="a symbolic link to nothing"):
        find_inputs([str(tmp_path / "a")])


def test_vocab_from_names_the_first_symbol_it_lacks_and_where(tmp_path, monkeypatch):
    # before: the lowest code point it lacked ('ß' for "Café ... straße"), and no place
    from rnnkit.corpus import preprocess as module
    from rnnkit.corpus.sources import InputError

    (tmp_path / "a.txt").write_text("plain ascii text\n" * 10)
    first = str(tmp_path / "a.h5")
    preprocess([str(tmp_path / "a.txt")], first)
    (tmp_path / "b.txt").write_text("plain\nplain text ß and C\n")
    monkeypatch.setattr(module, "BLOCK", 4)         # a line across blocks
    with pytest.raises(InputError, match=r"b\.txt, line 2, column 12: 'ß' \(U\+00DF\) is not "
                                         r"in the vocabulary"):
        preprocess([str(tmp_path / "b.txt")], str(tmp_path / "b.h5"), vocab_from=first)


def test_a_last_line_ending_in_the_word_eos_gets_its_line_end_as_the_text_commands_give(
        tmp_path):
    # before: "the dog <eos>" without a newline took the word for the line's end: one token
    # fewer than score and eval --text (which the same file gave 8)
    (tmp_path / "a.txt").write_text("the cat sat\nthe dog <eos>")
    out = str(tmp_path / "a.h5")
    preprocess([str(tmp_path / "a.txt")], out, level="word", val_frac=0, test_frac=0)
    with h5py.File(out) as f:
        vocab = f["vocab"].asstr()[()]
        assert [vocab[i] for i in f["train"][()]] == \
            ["the", "cat", "sat", "<eos>", "the", "dog", "<eos>", "<eos>"]


def test_folders_in_path_order_several_val_files_and_wide_encodings(tmp_path):
    # before: a folder gave its files before its subfolders' (a glob: path order), --val A
    # --val B kept B only, and a UTF-16 file was left out of a folder as binary, silently
    import rnnkit
    from rnnkit.errors import ArgumentTypeError

    d = tmp_path / "d"
    (d / "b").mkdir(parents=True)
    for name, text in (("a.txt", "one\n"), ("b/x.txt", "two\n"), ("c.txt", "three\n")):
        (d / name).write_text(text * 20)
    out = str(tmp_path / "o.h5")
    preprocess([str(d)], out, val_frac=0, test_frac=0)
    with h5py.File(out) as f:
        names = [os.path.relpath(n.decode() if isinstance(n, bytes) else n, d)
                 for n in f["sources"]["name"]]
    assert names == ["a.txt", os.path.join("b", "x.txt"), "c.txt"]
    (tmp_path / "va.txt").write_text("one two\n")
    (tmp_path / "vb.txt").write_text("three\n")
    result = CliRunner().invoke(main, ["preprocess", str(d), "--val", str(tmp_path / "va.txt"),
                                       "--val", str(tmp_path / "vb.txt"), "-o", out, "-f"])
    assert result.exit_code == 0, result.output
    with Corpus(out) as c:
        assert c.len_split("val") == len("one two\nthree\n")
    wide = tmp_path / "w"
    wide.mkdir()
    (wide / "u.txt").write_text("hi there\n" * 10, encoding="utf-16")
    summary = preprocess([str(wide)], str(tmp_path / "w.h5"), encoding="utf-16", val_frac=0,
                         test_frac=0)
    assert summary["files"] == 1 and summary["splits"]["train"] == 90
    (wide / "p.txt").write_text("plain\n")
    summary = preprocess([str(wide)], str(tmp_path / "b.h5"), level="byte", val_frac=0,
                         test_frac=0)
    assert summary["skipped"] == [str(wide / "u.txt")]
    with pytest.raises(ArgumentTypeError, match="val must be a path"):
        rnnkit.preprocess(str(d), str(tmp_path / "z.h5"), val=[123])


@pytest.mark.parametrize("settings, says", [
    (dict(level="bpe", vocab_size=5_000_000_000), "--vocab-size must be in [256"),
    (dict(level="bpe", vocab_size=300, min_count=10 ** 23), "--min-count must be below 2^63"),
    (dict(level="word", max_vocab=10 ** 23), "--max-vocab must be below 2^63"),
])
def test_absurd_sizes_are_one_line_before_reading(tmp_path, settings, says):
    # before: a Rust abort (283 GB asked), an OverflowError, a TypeError after pass 1
    from rnnkit.corpus.sources import InputError

    (tmp_path / "t.txt").write_text("hello world\nhello there\n")
    with pytest.raises(InputError, match=re.escape(says)):
        preprocess([str(tmp_path / "t.txt")], str(tmp_path / "x.h5"), val_frac=0, test_frac=0,
                   **settings)
