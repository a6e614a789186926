"""The corpus reader: torch-rnn batch layout, resume, rank shares, text <-> ids."""
import h5py
import numpy as np
import pytest

from rnnkit.corpus import reader
from rnnkit.corpus.reader import Corpus, CorpusError
from rnnkit.corpus.preprocess import preprocess


def make(tmp_path, text, name="c.h5", **options):
    src = tmp_path / (name + ".txt")
    src.write_text(text, encoding="utf-8")
    options.setdefault("val_frac", 0)
    options.setdefault("test_frac", 0)
    preprocess([str(src)], tmp_path / name, **options)
    return tmp_path / name


@pytest.fixture
def counting(tmp_path):
    """A corpus whose token at position p has id p (distinct code points, in order)."""
    return make(tmp_path, "".join(chr(0x4E00 + p) for p in range(1000)))


def test_streams_are_contiguous_and_targets_shifted(counting):
    N, T = 4, 7
    with Corpus(counting) as corpus:
        batches = corpus.batches("train", N, T)
        S = 999 // N
        assert batches.num_batches == len(batches) == S // T
        seen = list(batches)
    assert len(seen) == S // T
    for b, (x, y) in enumerate(seen):
        assert x.shape == y.shape == (N, T) and x.dtype == y.dtype == np.int32
        assert x.flags.c_contiguous and y.flags.c_contiguous
        expect = np.arange(N)[:, None] * S + b * T + np.arange(T)[None, :]
        np.testing.assert_array_equal(x, expect)
        np.testing.assert_array_equal(y, expect + 1)


def test_state_carries_from_batch_to_batch(counting):
    with Corpus(counting) as corpus:
        seen = list(corpus.batches("train", 5, 3))
    for (x0, y0), (x1, _) in zip(seen, seen[1:]):
        # row i of batch b+1 starts where row i of batch b stopped
        np.testing.assert_array_equal(x1[:, 0], y0[:, -1])
        np.testing.assert_array_equal(x1[:, 0], x0[:, -1] + 1)


def test_start_resumes_exactly(counting):
    with Corpus(counting) as corpus:
        full = list(corpus.batches("train", 3, 11))
        later = corpus.batches("train", 3, 11, start=5)
        assert len(later) == len(full) - 5 and later.num_batches == len(full)
        for (x, y), (fx, fy) in zip(later, full[5:], strict=True):
            np.testing.assert_array_equal(x, fx)
            np.testing.assert_array_equal(y, fy)
        assert list(corpus.batches("train", 3, 11, start=len(full))) == []
        x, y = corpus.batches("train", 3, 11).batch(7)
        np.testing.assert_array_equal(x, full[7][0])
        with pytest.raises(ValueError, match="start batch"):
            corpus.batches("train", 3, 11, start=len(full) + 1)


def test_ranks_get_contiguous_shares_of_the_streams(counting):
    with Corpus(counting) as corpus:
        full = list(corpus.batches("train", 6, 5))
        shares = [list(corpus.batches("train", 6, 5, rank=r, world=3)) for r in range(3)]
        for b, (x, y) in enumerate(full):
            np.testing.assert_array_equal(np.concatenate([s[b][0] for s in shares]), x)
            np.testing.assert_array_equal(np.concatenate([s[b][1] for s in shares]), y)
            assert shares[1][b][0].shape == (2, 5)
        with pytest.raises(ValueError, match="cannot be shared evenly by 4 ranks"):
            corpus.batches("train", 6, 5, world=4)
        with pytest.raises(ValueError, match="rank 3 is not in 0..2"):
            corpus.batches("train", 6, 5, rank=3, world=3)


@pytest.mark.parametrize("block,buffer", [(1, 1 << 20), (10, 1 << 20), (1 << 20, 30)])
def test_reading_in_blocks_gives_the_same_batches(counting, monkeypatch, block, buffer):
    with Corpus(counting) as corpus:
        expect = list(corpus.batches("train", 4, 6))
        monkeypatch.setattr(reader, "BLOCK_TOKENS", block)
        monkeypatch.setattr(reader, "BUFFER_TOKENS", buffer)
        batches = corpus.batches("train", 4, 6)
        reads = []
        real = batches._read
        monkeypatch.setattr(batches, "_read", lambda first, count: reads.append(count) or
                            real(first, count))
        got = list(batches)
    assert len(reads) > 1 and max(reads) == max(1, min(block, buffer // 4) // 6)  # batches/read
    for (x, y), (ex, ey) in zip(got, expect, strict=True):
        np.testing.assert_array_equal(x, ex)
        np.testing.assert_array_equal(y, ey)


def test_too_small_split_explains_what_fits(counting):
    with Corpus(counting) as corpus:
        with pytest.raises(ValueError) as err:
            corpus.check_fit("train", 50, 50)
        message = str(err.value)
        assert "has 1000 tokens, too few for one batch of N=50 streams x T=50 steps" in message
        assert "try N=19 with T=50 or T=19 with N=50" in message
        corpus.check_fit("train", 19, 50)
        corpus.check_fit("train", 50, 19)
        with pytest.raises(ValueError, match="N=18 with T=50"):
            corpus.check_fit("train", 50, 50, world=2)
        with pytest.raises(ValueError, match="too few"):
            corpus.batches("train", 50, 50)
        with pytest.raises(ValueError, match="try N=2 with T=499$"):
            corpus.check_fit("train", 1000, 1000, world=2)
        with pytest.raises(ValueError, match="no 'val' split \\(present: train\\)"):
            corpus.check_fit("val", 1, 1)


def test_corpus_attributes(tmp_path):
    path = make(tmp_path, "abcabc" * 100, val_frac=0.1)
    with Corpus(path) as corpus:
        assert corpus.level == "char" and corpus.vocab == ["a", "b", "c"] and corpus.vocab_size == 3
        assert corpus.splits == ["train", "val"]
        assert corpus.len_split("train") == 540 and corpus.len_split("val") == 60
        assert corpus.attrs["format"] == "rnnkit-corpus"
        assert corpus.attrs["splits"] == ["train", "val"]
        assert corpus.tokens("train", 0, 4).tolist() == [0, 1, 2, 0]
    assert not corpus.file.id.valid  # closed by the context manager


def test_char_encode_decode(tmp_path):
    with Corpus(make(tmp_path, "héllo wörld\n")) as corpus:
        ids = corpus.encode("hörlé\n")
        assert corpus.decode(ids) == "hörlé\n"
        assert ids.tolist() == [corpus.vocab.index(c) for c in "hörlé\n"]
        with pytest.raises(ValueError, match=r"'z' \(U\+007A\) is not in the vocabulary"):
            corpus.encode("zz")


def test_byte_encode_decode(tmp_path):
    with Corpus(make(tmp_path, "héllo", level="byte")) as corpus:
        assert corpus.vocab == sorted(chr(b) for b in set("héllo".encode()))
        ids = corpus.encode("hé")
        assert corpus.decode_bytes(ids) == "hé".encode() and corpus.decode(ids) == "hé"
        assert corpus.decode(ids[:2]) == "h\ufffd"  # half a character
        with pytest.raises(ValueError, match="byte 0x7a is not in the vocabulary"):
            corpus.encode(b"z")


def test_word_encode_decode(tmp_path):
    with Corpus(make(tmp_path, "the cat sat\non the mat\n", level="word")) as corpus:
        ids = corpus.encode("the dog sat\non")
        assert [corpus.vocab[i] for i in ids] == ["the", "<unk>", "sat", "<eos>", "on"]
        assert corpus.decode(ids) == "the <unk> sat\non"
        assert corpus.decode(corpus.tokens("train")) == "the cat sat\non the mat\n"


def test_not_a_corpus(tmp_path):
    (tmp_path / "a.txt").write_text("text")
    with pytest.raises(CorpusError, match="is not an HDF5 file"):
        Corpus(tmp_path / "a.txt")
    with h5py.File(tmp_path / "plain.h5", "w") as f:
        f["x"] = [1]
    with pytest.raises(CorpusError, match="is not an rnnkit corpus"):
        Corpus(tmp_path / "plain.h5")
    path = make(tmp_path, "abc")
    with h5py.File(path, "a") as f:
        f.attrs["format_version"] = 99
    with pytest.raises(CorpusError, match="format version 99"):
        Corpus(path)


def test_a_corpus_read_after_another_handle_on_its_file_closed(tmp_path):
    # before: a segfault in HDF5 (h5py#2920: a table of variable-length strings read through
    # one handle after another that read it closed), as a resumed run hit when the corpus of a
    # refused one was collected late; in a subprocess, so that a crash is a failure
    import subprocess
    import sys

    from tests.tiny_run import make_corpus

    corpus = make_corpus(tmp_path)
    code = ("import sys; from rnnkit.corpus.reader import Corpus; a = Corpus(sys.argv[1]); "
            "a.fingerprint(); b = Corpus(sys.argv[1]); a.close(); print(b.fingerprint()['sha256'])")
    done = subprocess.run([sys.executable, "-c", code, corpus], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and len(done.stdout.strip()) == 16, (done.returncode, done.stderr)
