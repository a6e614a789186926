"""Text <-> ids from a checkpoint's vocabulary, agreeing with the corpus reader's rules."""
import numpy as np
import pytest

from rnnkit.corpus.reader import Corpus
from rnnkit.corpus.textcodec import TextCodec, UnknownSymbol
from rnnkit.corpus.tokenize import Vocabulary
from tests.tiny_run import make_corpus

TEXT = "naïve café — 日本語 text\nsecond line ends here\n" * 20


@pytest.mark.parametrize("level", ["char", "byte", "word"])
def test_matches_the_corpus_and_streams(tmp_path, level):
    path = make_corpus(tmp_path, level, TEXT)
    with Corpus(path) as corpus:
        codec = TextCodec(corpus.vocabulary, corpus.encoding)
        sample = "café 日本語\nsecond text"
        ids = codec.encode(sample)
        np.testing.assert_array_equal(ids, corpus.encode(sample))
        assert codec.decode(ids) == corpus.decode(ids)
        step = codec.decoder()
        pieces = [step(int(i)) for i in ids] + [step(None)]
        assert "".join(pieces) == corpus.decode(ids)
        if level == "byte":          # a 3-byte character comes out whole, once complete
            assert "日" in pieces and "" in pieces


def test_unknown_symbols(tmp_path):
    with Corpus(make_corpus(tmp_path, "char", TEXT)) as corpus:
        codec = TextCodec(corpus.vocabulary)
        with pytest.raises(UnknownSymbol, match=r"character 'Z' \(U\+005A\) at line 2, "
                                                r"column 3 of x.txt .*\(1 more unknown"):
            codec.encode("na\nnaZ Q", where="x.txt")
        ids, dropped, symbol = codec.encode_text("naZ\nZ", "skip")
        assert codec.decode(ids) == "na\n" and dropped == 2 and symbol is None
        ids, dropped, symbol = codec.encode_text("naZ", "replace")
        assert codec.decode(ids) == "na " and dropped == 1 and symbol == " "
    with Corpus(make_corpus(tmp_path, "byte", "abc\n" * 20)) as corpus:
        codec = TextCodec(corpus.vocabulary)
        with pytest.raises(UnknownSymbol, match="byte 0xc3 at line 1, column 2"):
            codec.encode("aé")
        with pytest.raises(UnknownSymbol, match="use --unknown skip"):
            codec.encode("aé", "replace")     # no replacement symbol in this vocabulary
    with Corpus(make_corpus(tmp_path, "word", TEXT)) as corpus:
        codec = TextCodec(corpus.vocabulary)
        assert codec.decode(codec.encode("café zebra")) == "café <unk>"
        assert codec.encode_text("café zebra", "replace")[1:] == (1, "<unk>")
        ids, dropped, symbol = codec.encode_text("café zebra text", "skip")
        assert codec.decode(ids) == "café text" and (dropped, symbol) == (1, None)
        ids, ends, dropped, _ = codec.encode_lines("zebra\ncafé zebra text\n", "skip")
        assert codec.decode(ids) == "\ncafé text\n" and ends.tolist() == [1, 4]
    vocabulary = Vocabulary("word", ["<eos>", "café"])      # one without <unk>
    with pytest.raises(UnknownSymbol, match="word 'zebra' in x is not in the vocabulary .* "
                                            "--unknown skip"):
        TextCodec(vocabulary).encode("café zebra", where="x")
    assert TextCodec(vocabulary).encode("café zebra", "skip").tolist() == [1]


def test_encode_lines(tmp_path):
    with Corpus(make_corpus(tmp_path, "char", TEXT)) as corpus:
        codec = TextCodec(corpus.vocabulary)
        ids, ends, dropped, _ = codec.encode_lines("na\n\nZnaZ\nna", "skip")
        assert codec.decode(ids) == "na\n\nna\nna" and dropped == 2
        np.testing.assert_array_equal(ends, [3, 4, 7, 9])
        assert codec.encode_lines("na\n")[1].tolist() == [3]
        assert len(codec.encode_lines("")[1]) == 0
        with pytest.raises(UnknownSymbol, match="line 3, column 1 of x"):
            codec.encode_lines("na\n\nZ", where="x")
        assert codec.tokens[codec.start_id()] == "\n"
    with Corpus(make_corpus(tmp_path, "word", TEXT)) as corpus:
        codec = TextCodec(corpus.vocabulary)
        ids, ends, _, _ = codec.encode_lines("café text\n\nsecond zebra")
        assert codec.decode(ids) == "café text\n\nsecond <unk>\n" and ends.tolist() == [3, 4, 7]
        assert codec.tokens[codec.start_id()] == "<eos>"
