"""`rnnkit score`: per-line log-probabilities, batched lines, per-token surprisal, stdin."""
import json
import math

import numpy as np
import pytest
from click.testing import CliRunner

from rnnkit.cli.main import main
from rnnkit.training.evaluate import evaluate_ids
from rnnkit.tools.load import load_model
from rnnkit.model.network import Model
from rnnkit.tools.score import score_text
from tests.tiny_run import make_corpus, make_run

LINES = "line 4: the quick brown fox naps over it.\nthe fox\n\nline 7: jumps over it.\nfox"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("score")
    return make_run(folder, make_corpus(folder))


@pytest.fixture(scope="module")
def word_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scoreword")
    return make_run(folder, make_corpus(folder, "word"), steps=5)


def invoke(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def table(stdout):
    rows = [line.split("\t") for line in stdout.splitlines()]
    return [(float(a), float(b), int(n), p) for a, b, n, p in rows]


def test_never_agrees_with_eval_on_one_stream(run, tmp_path):
    (tmp_path / "x.txt").write_text(LINES * 3)
    (tmp_path / "eval.txt").write_text("\n" + LINES * 3)     # score starts after a newline
    scored = invoke("score", run / "best.h5", tmp_path / "x.txt", "--reset-state", "never",
                    "--seq-len", "7")
    assert scored.exit_code == 0, scored.output
    ev = invoke("eval", run / "best.h5", "--text", tmp_path / "eval.txt", "--batch-size", "1",
                "--seq-len", "7")
    numbers = dict(line.split(" ", 1) for line in ev.stdout.splitlines())
    rows = table(scored.stdout)
    assert len(rows) == 13 and sum(n for *_, n, _ in rows) == int(numbers["tokens"])
    logprob = sum(lp for lp, *_ in rows)
    assert math.isclose(-logprob / int(numbers["tokens"]), float(numbers["loss"]), rel_tol=2e-6)
    assert f"13 lines, {numbers['tokens']} tokens" in scored.stderr
    for lp, l10, n, ppl in rows:
        assert math.isclose(l10, lp / math.log(10), abs_tol=2e-6)
        assert ppl == "nan" if n == 0 else math.isclose(float(ppl), math.exp(-lp / n),
                                                        rel_tol=1e-3)


def test_per_line_is_each_line_alone_whatever_the_batch(run, monkeypatch):
    model, codec, _ = load_model(run / "best.h5")
    calls = []
    real = Model.evaluate_tokens

    def spy(self, x, y, state):
        calls.append(x.shape)
        return real(self, x, y, state)

    monkeypatch.setattr(Model, "evaluate_tokens", spy)
    text = LINES * 4
    scores = score_text(model, codec, text, "per-line", batch=8, seq_len=16)
    lines = text.split("\n")
    assert len(scores.ends) == len(lines)
    # batched: 17 lines as 3 batches of up to 8 streams, in chunks of at most 16 steps
    assert max(n for n, _ in calls) == 8 and max(t for _, t in calls) == 16
    assert len(calls) <= 3 + 3 + 1
    lengths = [len(line) + 1 for line in lines[:-1]] + [len(lines[-1])]
    np.testing.assert_array_equal(scores.line_tokens(), lengths)
    start = codec.start_id()
    for i, line in enumerate(lines):
        ids = codec.encode(line + ("\n" if i < len(lines) - 1 else ""))
        alone = evaluate_ids(model, np.concatenate([[start], ids]), N=1, T=16)
        assert math.isclose(-scores.line_logprobs()[i], alone["loss"] * alone["tokens"],
                            rel_tol=1e-5)
    again = score_text(model, codec, text, "per-line", batch=3, seq_len=5)
    np.testing.assert_allclose(again.losses, scores.losses, rtol=1e-5, atol=1e-6)
    never = score_text(model, codec, text, "never", seq_len=16)
    assert not np.allclose(never.line_logprobs(), scores.line_logprobs())   # context counts


def test_per_token_jsonl_and_stdin(run):
    result = invoke("score", run / "best.h5", "--per-token", input=LINES)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3, 4, 5]
    assert "".join("".join(r["token_text"]) for r in records) == LINES
    plain = table(invoke("score", run / "best.h5", "-", input=LINES).stdout)
    for record, (lp, _, n, _) in zip(records, plain):
        assert record["tokens"] == n == len(record["surprisal"])
        assert math.isclose(sum(record["surprisal"]), -lp, abs_tol=1e-5)
        assert math.isclose(record["logprob"], lp, abs_tol=1e-6)
    assert records[2]["token_text"] == ["\n"] and records[4]["token_text"] == ["f", "o", "x"]


def test_word_level_counts_eos(word_run, tmp_path):
    text = "the quick fox\nthe zebra naps\nover it."
    result = invoke("score", word_run / "best.h5", "--per-token", "-q", input=text)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["token_text"] for r in records] == [
        ["the", "quick", "fox", "<eos>"], ["the", "<unk>", "naps", "<eos>"],
        ["over", "it.", "<eos>"]]                    # the last line too, as preprocessing
    assert result.stderr == ""


def test_byte_level(tmp_path):
    corpus = make_corpus(tmp_path, "byte", "naïve café\nthe end\n" * 30)
    run = make_run(tmp_path, corpus, steps=2)
    result = invoke("score", run / "latest.h5", "--per-token", input="café\nnaïve")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["tokens"] for r in records] == [6, 6]          # é is two bytes; \n ends line 1


@pytest.mark.parametrize("args,input,message", [
    ([], "the Zebra\n", "character 'Z' (U+005A) at line 1, column 5 of standard input"),
    (["--device", "cuda"], "the\n", "cuda"),
    (["--reset-state", "sometimes"], "", "Invalid value for '--reset-state'"),
    (["{tmp}/missing.txt"], "", "does not exist"),
])
def test_errors_are_one_line(run, tmp_path, args, input, message):
    args = [a.format(tmp=tmp_path) for a in args]
    result = invoke("score", run / "best.h5", *args, input=input)
    assert result.exit_code in (1, 2) and message in result.output
    assert "Traceback" not in result.output and result.stdout == ""


def test_skip_and_empty_input(run):
    result = invoke("score", run / "best.h5", "--unknown", "skip", input="the Zebra\n")
    assert result.exit_code == 0 and table(result.stdout)[0][2] == len("the ebra\n")
    assert "1 symbols of standard input that the vocabulary lacks were left out" in \
        result.stderr
    empty = invoke("score", run / "best.h5", input="")
    assert empty.exit_code == 0 and empty.stdout == ""
    assert empty.stderr == "0 lines, 0 tokens: nothing to score\n"


def test_word_level_unknown_words_and_the_unk_count(word_run, tmp_path):
    """Unknown words are <unk> (error, replace) or left out (skip), and both commands say how
    many <unk> they scored."""
    text = "the quick fox\nthe zebra naps <unk>\n"
    (tmp_path / "w.txt").write_text(text)
    for unknown, tokens, unk in ((None, 9, 2), ("replace", 9, 2), ("skip", 8, 1)):
        given = ["--unknown", unknown] if unknown else []
        scored = invoke("score", word_run / "best.h5", *given, input=text)
        assert scored.exit_code == 0, scored.output
        assert sum(n for *_, n, _ in table(scored.stdout)) == tokens
        assert f"2 lines, {tokens} tokens ({unk} <unk>)" in scored.stderr
        what = "left out" if unknown == "skip" else "replaced by '<unk>'"
        assert f"note: 1 words of standard input that the vocabulary lacks were {what}" \
            in scored.stderr
        ev = invoke("eval", word_run / "best.h5", "--text", tmp_path / "w.txt", *given)
        assert ev.exit_code == 0, ev.output
        assert f"tokens {tokens - 1}\nunk_tokens {unk}\n" in ev.stdout     # the first: given



@pytest.mark.parametrize("reset", ["per-line", "never"])
def test_standard_input_streams_a_line_out_per_line_in(run, tmp_path, reset):
    """A writer that keeps the pipe open gets each line's score before it writes the next,
    the same scores as of the whole text at once; an error on a later line comes after the
    lines before it, with its line number in the whole input."""
    import select
    import subprocess
    import sys

    lines = LINES.split("\n")
    (tmp_path / "x.txt").write_text(LINES)
    whole = table(invoke("score", run / "best.h5", tmp_path / "x.txt", "--reset-state",
                         reset).stdout)
    proc = subprocess.Popen([sys.executable, "-m", "rnnkit", "score", str(run / "best.h5"), "-",
                             "--reset-state", reset], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rows = []
    try:
        for i, line in enumerate(lines):
            last = i == len(lines) - 1
            proc.stdin.write(line.encode() + (b"" if last else b"\n"))
            proc.stdin.flush()
            if last:
                proc.stdin.close()              # the last line has no newline: EOF ends it
            assert select.select([proc.stdout], [], [], 120)[0], f"no score for line {i + 1}"
            rows += table(proc.stdout.readline().decode())
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
    assert [n for *_, n, _ in rows] == [n for *_, n, _ in whole]
    np.testing.assert_allclose([lp for lp, *_ in rows], [lp for lp, *_ in whole], rtol=1e-5)
    assert f"{len(lines)} lines," in err

    late = subprocess.run([sys.executable, "-m", "rnnkit", "score", str(run / "best.h5"),
                           "--reset-state", reset], input=b"the fox\nthe fox\nthe Zebra\n",
                          capture_output=True)
    assert late.returncode == 1 and len(late.stdout.splitlines()) <= 2
    assert b"character 'Z' (U+005A) at line 3, column 5 of standard input" in late.stderr
    assert b"Traceback" not in late.stderr


@pytest.mark.parametrize("level", ["char", "byte"])
def test_read_lines_gives_whole_lines_as_they_come(level):
    """Pieces end after a newline, a character cut between two writes is whole in its line,
    and the rest comes at the end; an invalid byte is named by its offset in the stream."""
    import os

    from rnnkit.errors import RnnkitError
    from rnnkit.corpus.textcodec import read_lines

    def pieces(writes, most=1 << 20):
        r, w = os.pipe()
        got = []
        reader = read_lines(r, level, "utf-8", "standard input", most)
        try:
            for data in writes:
                os.write(w, data)
                if data.endswith(b"\n"):        # a whole line: its piece comes at once
                    got.append(next(reader))
            os.close(w)
            got += list(reader)
        finally:
            os.close(r)
        return got

    text = "café\nnaïve\n"
    parts = pieces([b"caf\xc3", b"\xa9\n", b"na\xc3\xafve\n", b"end"])
    want = [text[:5], text[5:], "end"]
    assert parts == ([p.encode() for p in want] if level == "byte" else want)
    assert b"".join(p if level == "byte" else p.encode() for p in pieces(
        [b"a\nb\nc", b"c\n"], most=3)) == b"a\nb\ncc\n"
    if level == "char":
        with pytest.raises(RnnkitError, match="standard input is not valid utf-8 at byte 7 "):
            pieces([b"ab\ncd\n", b"x\xff\n"])


def numbers_of(result):
    assert result.exit_code == 0, result.output
    return dict(line.split(" ", 1) for line in result.stdout.splitlines())


def test_eval_bits_per_char(run, word_run, tmp_path):
    """eval --text reports bits per character: bits per token times the text's tokens per
    character (at char level the two agree); none when part of the text was left out."""
    text = "the quick fox\nthe brown fox naps over it.\nthe fox\n"
    (tmp_path / "t.txt").write_text(text)
    char = numbers_of(invoke("eval", run / "best.h5", "--text", tmp_path / "t.txt",
                             "--batch-size", "1", "-q"))
    assert int(char["chars"]) == len(text) == int(char["tokens"]) + 1
    assert math.isclose(float(char["bits_per_char"]), float(char["bits_per_token"]),
                        rel_tol=1e-6)
    word = numbers_of(invoke("eval", word_run / "best.h5", "--text", tmp_path / "t.txt",
                             "--batch-size", "1", "-q"))
    tokens = len(text.split()) + text.count("\n")           # the words and an <eos> a line
    assert int(word["tokens"]) == tokens - 1 and int(word["chars"]) == len(text)
    assert math.isclose(float(word["bits_per_char"]),
                        float(word["bits_per_token"]) * tokens / len(text), rel_tol=1e-6)
    (tmp_path / "z.txt").write_text("the fox naps\u00a7 over it.\n" * 3)
    skipped = numbers_of(invoke("eval", run / "best.h5", "--text", tmp_path / "z.txt",
                                "--unknown", "skip", "-q"))
    assert "bits_per_char" not in skipped and "chars" not in skipped
    # before: at word level, spacing the model never sees counted as characters (5 spaces
    # for 1 lowered the figure 40%)
    (tmp_path / "s.txt").write_text(text.replace(" ", "     "))
    spaced = invoke("eval", word_run / "best.h5", "--text", tmp_path / "s.txt", "--batch-size",
                    "1")
    assert "bits_per_char" not in numbers_of(spaced)
    assert "no bits per character: " in spaced.stderr and "spacing" in spaced.stderr
    (tmp_path / "p.txt").write_text("".join(f" {line} \n" for line in text.splitlines()))
    ptb = numbers_of(invoke("eval", word_run / "best.h5", "--text", tmp_path / "p.txt",
                            "--batch-size", "1", "-q"))      # Mikolov's files: kept
    assert ptb["tokens"] == word["tokens"] and int(ptb["chars"]) == len(text) + 6


def test_eval_text_reads_a_file_as_preprocess_does(word_run, tmp_path):
    """A last line without its newline ends in <eos> at word level (before: eval --text left
    it out, scoring one token fewer than eval on the same file preprocessed)."""
    (tmp_path / "t.txt").write_text("the quick fox\nthe fox naps")
    assert invoke("preprocess", tmp_path / "t.txt", "--vocab-from", word_run / "best.h5",
                  "--val-frac", "0", "--test-frac", "0", "-o", tmp_path / "t.h5",
                  "-q").exit_code == 0
    by_text = numbers_of(invoke("eval", word_run / "best.h5", "--text", tmp_path / "t.txt",
                                "--batch-size", "1", "-q"))
    by_corpus = numbers_of(invoke("eval", word_run / "best.h5", tmp_path / "t.h5", "--split",
                                  "train", "--batch-size", "1", "-q"))
    assert int(by_text["tokens"]) == int(by_corpus["tokens"]) == 7      # 8 ids, 7 scored
    assert by_text["loss"] == by_corpus["loss"]


def test_unknown_given_at_word_level_is_refused(word_run):
    """--unknown error at word level was ignored (unknown words became <unk>, exit 0)."""
    result = invoke("score", word_run / "best.h5", "--unknown", "error", input="the king\n")
    assert result.exit_code == 2 and "--unknown error does not apply at word level" in \
        result.output
    assert invoke("score", word_run / "best.h5", "-q", input="the king\n").exit_code == 0
    # before: eval took it, replacing the unknown words all the same (score and generate
    # refused it)
    (tmp := word_run.parent / "k.txt").write_text("the king\n")
    result = invoke("eval", word_run / "best.h5", "--text", tmp, "--unknown", "error")
    assert result.exit_code == 2 and "--unknown error does not apply at word level" in \
        result.output
