"""Level bpe (rnnkit/corpus/bpe.py): byte-level BPE subwords trained with Hugging Face tokenizers,
stored in the corpus and the checkpoint, used by every command that reads or writes text."""
import json
import random
import sys

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("tokenizers")

from rnnkit.corpus.bpe import MIN_VOCAB, BpeVocabulary, train  # noqa: E402
from rnnkit.cli.main import main  # noqa: E402
from rnnkit.corpus.reader import Corpus  # noqa: E402
from rnnkit.corpus.preprocess import preprocess  # noqa: E402
from rnnkit.corpus.textcodec import TextCodec  # noqa: E402

WORDS = ("the cat sat on a mat and dog ate hat héllo wörld 日本語 café naïve 🙂 "
         "Ωμέγα").split()


def made_up_text(seed, lines=300):
    rng = random.Random(seed)
    return "".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 10))) + "\n"
                   for _ in range(lines))


def random_unicode(rng, n):
    """n code points from all planes, no surrogates (UTF-8 cannot hold them) and no U+FFFD
    (so that a U+FFFD in the output can only be a decoding error)."""
    out = []
    while len(out) < n:
        c = rng.choice([rng.randrange(0x80), rng.randrange(0x800), rng.randrange(0x10000),
                        rng.randrange(0x110000)])
        if not 0xD800 <= c < 0xE000 and c != 0xFFFD:
            out.append(chr(c))
    return "".join(out)


@pytest.fixture(scope="module")
def vocab():
    return train(iter([made_up_text(1)]), 320)


def texts():
    rng = random.Random(7)
    yield from ["", "\n", "\n\n\n", " ", "the cat\n", "日本語 🙂\r\n\x00tab\there",
                made_up_text(2, 20)]
    for n in (1, 2, 5, 40, 300):
        yield random_unicode(rng, n)
        yield bytes(rng.randrange(256) for _ in range(n)).decode("latin-1")
        yield random_unicode(rng, n).replace(random_unicode(rng, 1), "\n")


def test_vocabulary_has_every_byte(vocab):
    assert MIN_VOCAB < len(vocab) <= 320
    assert sorted(d for d in vocab.token_bytes if len(d) == 1) == [bytes([b]) for b in
                                                                   range(256)]
    assert len(set(vocab.tokens)) == len(vocab)


@pytest.mark.parametrize("text", list(texts()))
def test_round_trip(vocab, text):
    codec = TextCodec(vocab)
    ids = codec.encode(text)
    assert ids.dtype == np.int64 and (ids >= 0).all() and (ids < len(vocab)).all()
    assert codec.decode(ids) == text
    # token by token, as generate streams: no piece holds a broken character
    state, pieces = codec.start_state(), []
    for i in ids.tolist():
        piece, state = codec.piece(state, i)
        pieces.append(piece)
    pieces.append(codec.piece(state, None)[0])
    assert "".join(pieces) == text
    assert not any("\ufffd" in p for p in pieces)
    step = codec.decoder()
    assert "".join(step(i) for i in ids.tolist()) + step(None) == text


def test_streaming_holds_back_a_split_character(vocab):
    codec = TextCodec(vocab)
    one = {d[0]: i for i, d in enumerate(vocab.token_bytes) if len(d) == 1}
    data = "🙂".encode()
    state, out = codec.start_state(), []
    for b in data:
        piece, state = codec.piece(state, one[b])
        out.append(piece)
    assert out == ["", "", "", "🙂"]
    # a lone lead byte at the end becomes U+FFFD when flushed, never a broken str
    state = codec.piece(codec.start_state(), one[data[0]])[1]
    assert codec.piece(state, None)[0] == "\ufffd"


def test_lines(vocab):
    codec = TextCodec(vocab)
    lines = ["the cat sat\n", "\n", "  héllo 日本語 🙂 \n", "no newline at the end"]
    ids, ends, dropped, symbol = codec.encode_lines("".join(lines))
    assert (dropped, symbol) == (0, None)
    assert len(ends) == len(lines) and ends[-1] == len(ids)
    starts = [0, *ends[:-1].tolist()]
    for line, a, b in zip(lines, starts, ends.tolist()):
        assert ids[a:b].tolist() == codec.encode(line).tolist()   # no token crosses a line
    assert vocab.tokens[codec.start_id()] == "Ċ"


def test_surrogate_is_one_line(vocab):
    with pytest.raises(Exception, match=r"U\+DC80 \(a lone surrogate\)"):
        vocab.encode("a\udc80")


def write(folder, name, text):
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_corpus_stores_the_tokenizer(tmp_path):
    text = made_up_text(3)
    out = tmp_path / "b.h5"
    summary = preprocess([write(tmp_path, "t.txt", text)], str(out), level="bpe",
                         vocab_size=300)
    assert summary["level"] == "bpe" and summary["unk"] == 0
    with Corpus(out) as c:
        v = c.vocabulary
        assert isinstance(v, BpeVocabulary) and summary["vocab_size"] == len(v) <= 300
        stored = c.file["tokenizer"][()]
        ids = np.concatenate([c.tokens(s) for s in ("train", "val", "test")])
        assert c.decode(ids) == text                # the splits are the text, cut by tokens
        assert c.encode(text).tolist() == ids.tolist()
        import tokenizers

        hf = tokenizers.Tokenizer.from_str(stored.decode() if isinstance(stored, bytes)
                                           else stored)
        assert hf.encode(text).ids == ids.tolist()
        assert hf.get_vocab_size() == len(v)
        assert c.counts.sum() == len(ids)


def test_trained_on_the_training_split_only(tmp_path):
    """A word that only the test part holds is no token: merges come from the train part."""
    text = made_up_text(4, 200) + "zyzzyva " * 200 + "\n"
    preprocess([write(tmp_path, "t.txt", text)], str(tmp_path / "b.h5"), level="bpe",
               vocab_size=400, val_frac=0.05, test_frac=0.2)
    with Corpus(tmp_path / "b.h5") as c:
        assert not any("zy" in t for t in c.vocab)
    preprocess([str(tmp_path / "t.txt")], str(tmp_path / "all.h5"), level="bpe",
               vocab_size=400, val_frac=0.0, test_frac=0.0)
    with Corpus(tmp_path / "all.h5") as c:
        assert "Ġzyzzyva" in c.vocab


@pytest.mark.parametrize("val_frac,test_frac", [(0.1, 0.1), (0.0, 0.3), (0.25, 0.0)])
def test_the_training_split_is_the_text_the_tokenizer_learnt_from(tmp_path, val_frac,
                                                                   test_frac):
    """Splits cut by token fractions put text the tokenizer had learnt from in val and test
    where bytes per token vary along the text: here 2,800 of the 9,760 bytes it learnt from
    (its merges of the long word came from text outside /train)."""
    text = "a b c d e f g h\n" * 500 + "internationalization\n" * 200
    out = tmp_path / "b.h5"
    preprocess([write(tmp_path, "t.txt", text)], str(out), level="bpe", vocab_size=300,
               val_frac=val_frac, test_frac=test_frac)
    learnt = int((1 - val_frac - test_frac) * len(text))          # bytes (ASCII)
    with Corpus(out) as c:
        ids = {s: c.tokens(s) if f else [] for s, f in (("train", 1), ("val", val_frac),
                                                         ("test", test_frac))}
        train, val, test = (c.decode(ids[s]) for s in ("train", "val", "test"))
        assert train + val + test == text
        assert learnt <= len(train) <= learnt + len("internationalization")
        assert abs(len(ids["val"]) * test_frac - len(ids["test"]) * val_frac) <= 1


def test_vocab_from_reuses_it(tmp_path):
    first = tmp_path / "a.h5"
    preprocess([write(tmp_path, "a.txt", made_up_text(5))], str(first), level="bpe",
               vocab_size=300, min_count=2)
    other = made_up_text(6) + "new words: ξ, ∑, 𝄞\n"
    preprocess([write(tmp_path, "b.txt", other)], str(tmp_path / "b.h5"), vocab_from=str(first))
    with Corpus(first) as a, Corpus(tmp_path / "b.h5") as b:
        assert b.level == "bpe" and b.vocab == a.vocab
        assert b.vocabulary.tokenizer_json == a.vocabulary.tokenizer_json
        ids = np.concatenate([b.tokens(s) for s in b.splits])
        assert ids.tolist() == a.encode(other).tolist()
        assert b.decode(ids) == other


def invoke(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


@pytest.mark.parametrize("args, message", [
    (["--level", "bpe", "--vocab-size", "100"], "--vocab-size must be in [256"),
    (["--level", "bpe"], "--level bpe needs --vocab-size"),
    (["--level", "bpe", "--vocab-size", "300", "--max-vocab", "10"], "takes --vocab-size"),
    (["--level", "char", "--vocab-size", "300"], "applies to --level bpe only"),
    (["--level", "word", "--vocab-size", "300"], "applies to --level bpe only"),
])
def test_bad_options(tmp_path, args, message):
    result = invoke("preprocess", write(tmp_path, "t.txt", "some text\n" * 20), "-o",
                    tmp_path / "x.h5", *args)
    assert result.exit_code == 1, result.output
    assert message in result.output and result.output.count("\n") == 1
    assert not (tmp_path / "x.h5").exists()


def test_vocab_size_not_a_number(tmp_path):
    result = invoke("preprocess", write(tmp_path, "t.txt", "x\n"), "-o", tmp_path / "x.h5",
                    "--level", "bpe", "--vocab-size", "many")
    assert result.exit_code == 2      # click's usage error, as for every malformed number
    assert "'many' is not a valid integer" in result.output
    assert "Traceback" not in result.output


def test_tokenizers_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tokenizers", None)        # import fails
    result = invoke("preprocess", write(tmp_path, "t.txt", "some text\n" * 20), "-o",
                    tmp_path / "x.h5", "--level", "bpe", "--vocab-size", "300")
    assert result.exit_code == 1
    assert result.output == ("Error: level bpe needs Hugging Face tokenizers: pip install "
                             "'rnnkit[bpe]' (or pip install tokenizers)\n")
    assert not (tmp_path / "x.h5").exists()


def test_end_to_end(tmp_path, monkeypatch):
    """preprocess, train, info, generate (sampled, beam, interactive), eval, score, export
    and import, all at level bpe."""
    text = made_up_text(8, 400)
    corpus = tmp_path / "b.h5"
    r = invoke("preprocess", write(tmp_path, "t.txt", text), "-o", corpus, "--level", "bpe",
               "--vocab-size", "300")
    assert r.exit_code == 0, r.output
    assert "bpe level, vocabulary 300" in r.output
    r = invoke("train", corpus, "-o", tmp_path / "run", "--max-steps", "20", "--hidden", "16",
               "--embed", "8", "--batch-size", "4", "--seq-len", "8", "--threads", "1",
               "--eval-every", "10", "--lr", "0.02")
    assert r.exit_code == 0, r.output
    ck = tmp_path / "run" / "latest.h5"
    r = invoke("info", ck)
    assert r.exit_code == 0 and "300 tokens, level bpe" in r.output
    r = invoke("info", corpus)
    assert r.exit_code == 0 and "level bpe" in r.output and "300 tokens" in r.output

    import rnnkit

    lm = rnnkit.load(ck)
    assert lm.level == "bpe" and len(lm.vocab) == 300
    prime = "héllo 日本"
    assert lm.decode(lm.encode(prime)) == prime
    r = invoke("generate", ck, "--prime", prime, "--length", "30", "--seed", "3")
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith(prime)
    assert r.stdout == lm.generate(prime, 30, seed=3, echo=True) + "\n"
    pieces = list(lm.pieces(prime, 30, seed=[3, 0]))
    assert "".join(pieces) + "\n" == r.stdout
    r = invoke("generate", ck, "--length", "12", "--beam", "3", "--num-samples", "2")
    assert r.exit_code == 0, r.output
    r = invoke("generate", ck, "--interactive", "--length", "5", "--seed", "1",
               input="the cat\n日本\n")
    assert r.exit_code == 0, r.output
    assert r.stdout.count("\n") >= 2

    s = lm.stream("the")
    assert s.probs.shape == (300,) and abs(s.probs.sum() - 1) < 1e-6
    s.feed("Ġcat" if "Ġcat" in lm.vocab else "Ġ")

    lines = "the cat sat\nwörld 🙂 Ωμέγα\n"
    r = invoke("score", ck, write(tmp_path, "s.txt", lines))
    assert r.exit_code == 0, r.output
    rows = [row.split("\t") for row in r.stdout.splitlines()]
    assert len(rows) == 2
    assert np.allclose([float(row[0]) for row in rows], lm.score(lines.splitlines()),
                       atol=1e-4)
    assert [int(row[2]) for row in rows] == [len(lm.encode(x + "\n")) for x in
                                             lines.splitlines()]
    r = invoke("score", ck, "--per-token", "-q", input=lines)
    assert r.exit_code == 0, r.output
    first = json.loads(r.stdout.splitlines()[0])
    assert first["token_text"][-1] == "Ċ"
    r = invoke("eval", ck, "--text", tmp_path / "s.txt", "--batch-size", "1")
    assert r.exit_code == 0, r.output
    r = invoke("eval", ck, corpus)
    assert r.exit_code == 0, r.output

    with monkeypatch.context() as m:        # decoding needs no tokenizers; encoding does
        m.setitem(sys.modules, "tokenizers", None)
        r = invoke("generate", ck, "--length", "10", "--seed", "1")
        assert r.exit_code == 0, r.output
        r = invoke("score", ck, tmp_path / "s.txt")
        assert r.exit_code == 1
        assert r.output == ("Error: level bpe needs Hugging Face tokenizers: pip install "
                            "'rnnkit[bpe]' (or pip install tokenizers)\n")

    pytest.importorskip("safetensors")
    out = tmp_path / "m.safetensors"
    r = invoke("export", ck, "-o", out)
    assert r.exit_code == 0, r.output
    info = json.loads((tmp_path / "m.json").read_text(encoding="utf-8"))
    assert info["level"] == "bpe" and len(info["tokens"]) == 300
    import tokenizers

    hf = tokenizers.Tokenizer.from_str(json.dumps(info["tokenizer"]))
    assert hf.encode(prime).ids == lm.encode(prime).tolist()
    r = invoke("import", out, "-o", tmp_path / "back.h5")
    assert r.exit_code == 0, r.output
    back = rnnkit.load(tmp_path / "back.h5")
    assert back.level == "bpe" and back.vocab == lm.vocab
    assert back.generate(prime, 20, seed=5) == lm.generate(prime, 20, seed=5)

    pytest.importorskip("onnx")
    (tmp_path / "onnx").mkdir()
    r = invoke("export", ck, "-o", tmp_path / "onnx" / "m.onnx")
    assert r.exit_code == 0, r.output
    info = json.loads((tmp_path / "onnx" / "m.json").read_text(encoding="utf-8"))
    assert info["tokenizer"]["model"]["type"] == "BPE"
    assert info["start_id"] == lm.vocab.index("Ċ")


def test_block_size_changes_nothing(tmp_path):
    """Blocks cut lines and characters; preprocess joins them again: the same tokenizer and
    ids whether it reads 64 bytes at a time or the whole file."""
    path = write(tmp_path, "t.txt", made_up_text(9, 200))
    ids = []
    for block in (64, 1 << 20):
        out = tmp_path / f"{block}.h5"
        preprocess([path], str(out), level="bpe", vocab_size=300, block=block)
        with Corpus(out) as c:
            ids.append((c.vocabulary.tokenizer_json,
                        np.concatenate([c.tokens(s) for s in c.splits]).tolist()))
    assert ids[0] == ids[1]


def test_foreign_tokenizer_is_one_line(tmp_path, vocab):
    spec = json.loads(vocab.tokenizer_json)
    spec["model"]["vocab"]["ĊĊĊĊ"] = spec["model"]["vocab"].pop("Ċ")     # no newline byte
    with pytest.raises(Exception, match="lacks some of the 256 byte tokens"):
        BpeVocabulary(json.dumps(spec))
    with pytest.raises(Exception, match="not a byte-level BPE tokenizer"):
        BpeVocabulary('{"model": {"vocab": {"€": 0}}}')     # not a byte stand-in


@pytest.mark.parametrize("level", ["bpe", "char"])
def test_vocab_from_a_checkpoint(tmp_path, level):
    """--vocab-from takes a checkpoint too: the vocabulary of the corpus it was trained on."""
    import h5py

    from rnnkit.training.checkpoint import Checkpoint, save

    corpus = tmp_path / "a.h5"
    preprocess([write(tmp_path, "a.txt", made_up_text(10))], str(corpus), level=level,
               **({"vocab_size": 290} if level == "bpe" else {}))
    with Corpus(corpus) as c:
        save(tmp_path / "ck.h5", Checkpoint(config={}, weights={}, vocab=c.vocabulary))
        tokens = c.vocab
    other = made_up_text(11)
    preprocess([write(tmp_path, "b.txt", other)], str(tmp_path / "b.h5"),
               vocab_from=str(tmp_path / "ck.h5"))
    with Corpus(corpus) as a, Corpus(tmp_path / "b.h5") as b:
        assert (b.level, b.vocab) == (level, tokens)
        assert np.concatenate([b.tokens(s) for s in b.splits]).tolist() == \
            a.encode(other).tolist()
    with h5py.File(tmp_path / "ck.h5", "a") as f:
        del f["vocab"]
    result = invoke("preprocess", tmp_path / "b.txt", "-o", tmp_path / "c.h5", "--vocab-from",
                    tmp_path / "ck.h5")
    assert result.exit_code == 1
    assert result.output.endswith("ck.h5 holds no vocabulary\n")


def test_long_text_in_pieces(vocab):
    """A text longer than a piece is encoded in pieces of whole lines, on several threads:
    the same ids as the tokenizer gives for it whole."""
    from rnnkit.corpus import bpe

    text = made_up_text(12, 6000) + "x" * 70000 + "\n" + made_up_text(13, 20) + "no end"
    assert len(text) > 3 * bpe.CHUNK
    assert vocab.encode(text).tolist() == vocab.hf().encode(text).ids
    pieces = list(bpe._line_pieces(text, bpe.CHUNK))
    assert "".join(pieces) == text and all(p.endswith("\n") for p in pieces[:-1])


def test_a_line_too_long_to_carry_is_cut_before_a_word(tmp_path, monkeypatch):
    # before: cut where a block ended, inside a word: ids that the whole line's are not
    from rnnkit.corpus import bpe as module
    from rnnkit.corpus.preprocess import preprocess

    rng = np.random.default_rng(0)
    words = ["".join(rng.choice(list("abcdefghij"), rng.integers(1, 8))) for _ in range(300)]
    line = " ".join(rng.choice(words, 3000))            # one line, no newline
    (tmp_path / "t.txt").write_text(line)
    monkeypatch.setattr(module, "CARRY_LIMIT", 1000)
    preprocess([str(tmp_path / "t.txt")], str(tmp_path / "c.h5"), level="bpe", vocab_size=400,
               val_frac=0, test_frac=0, block=997)
    with h5py.File(tmp_path / "c.h5") as f:
        ids = f["train"][()].tolist()
        vocab = BpeVocabulary.load(f)
    assert ids == vocab.encode(line).tolist()
