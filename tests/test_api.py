"""The Python API (rnnkit/api/) against the commands, which run
the same code: generate, beam search, score, surprisal and streams, preprocess and train."""
import inspect
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import rnnkit
from rnnkit.api import PREPROCESS_SETTINGS, SettingError
from rnnkit.cli.main import main
from rnnkit.corpus.reader import Corpus
from tests.tiny_run import TEXT, make_corpus, make_run


def invoke(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api")
    return make_run(folder, make_corpus(folder))


@pytest.fixture(scope="module")
def lm(run):
    return rnnkit.load(run / "latest.h5", threads=1)


def printed(texts, separator="--- sample {n} of {N} ---"):
    """What rnnkit generate writes for these texts: each ends its line, and with more than
    one, each after its separator line."""
    N = len(texts)
    head = (lambda n: separator.format(n=n + 1, N=N) + "\n") if N > 1 and separator else \
        (lambda n: "")
    return "".join(head(n) + (t if t.endswith("\n") else t + "\n") for n, t in enumerate(texts))


def test_import_is_cheap_and_the_functions_keep_their_names():
    code = ("import sys, rnnkit; heavy = [m for m in ('numpy', 'numba', 'h5py') if m in "
            "sys.modules]; import rnnkit.training.train, rnnkit.tools.load, "
            "rnnkit.corpus.preprocess; "
            "print(heavy, callable(rnnkit.train), callable(rnnkit.load), "
            "callable(rnnkit.preprocess))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["[]", "True", "True", "True"]


def test_generate_is_what_the_command_prints(lm, run):
    text = lm.generate("line", 30, temperature=0.8, top_k=5, seed=3, echo=True)
    cli = invoke("generate", run / "latest.h5", "--prime", "line", "--length", "30",
                 "--temperature", "0.8", "--top-k", "5", "--seed", "3")
    assert cli.exit_code == 0 and cli.stdout == printed([text])
    assert lm.generate("line", 30, temperature=0.8, top_k=5, seed=3) == text[4:]
    assert "".join(lm.pieces("line", 30, temperature=0.8, top_k=5, seed=[3, 0])) == text
    two = lm.generate("line", 10, seed=3, num_samples=2, echo=True)
    cli = invoke("generate", run / "latest.h5", "--prime", "line", "--length", "10",
                 "--seed", "3", "--num-samples", "2")
    assert isinstance(two, list) and cli.stdout == printed(two)


def test_beam_search_is_what_the_command_prints(lm, run):
    found = lm.beam_search("line", 20, beam=3, stop="\n")
    cli = invoke("generate", run / "latest.h5", "--prime", "line", "--length", "20",
                 "--beam", "3", "--num-samples", "3", "--stop", "\n")
    assert cli.exit_code == 0 and cli.stdout == printed(["line" + h.text for h in found])
    assert [h.score for h in found] == sorted((h.score for h in found), reverse=True)
    assert lm.generate("line", 20, beam=3, stop="\n") == found[0].text
    assert lm.generate("line", 20, beam=3, stop="\n", num_samples=2, echo=True) == \
        ["line" + h.text for h in found[:2]]
    with pytest.raises(ValueError, match="do not apply"):
        lm.generate("line", 20, beam=3, temperature=0.5)


def test_score_is_the_commands_first_column(lm, run):
    lines = ["line 4: the quick brown fox naps over it.", "the fox", "", "fox"]
    logprobs = lm.score(lines)
    cli = invoke("score", run / "latest.h5", "-q", input="\n".join(lines) + "\n")
    column = [float(row.split("\t")[0]) for row in cli.stdout.splitlines()]
    assert len(logprobs) == 4
    np.testing.assert_allclose(logprobs, column, rtol=0, atol=2e-6)
    np.testing.assert_array_equal(lm.score("\n".join(lines) + "\n"), logprobs)
    with pytest.raises(ValueError, match="newline"):
        lm.score(["two\nlines"])


def test_surprisal_and_a_stream_agree(lm):
    text = "the fox\nnaps over"
    tokens, nats = lm.surprisal(text)
    assert "".join(tokens) == text and len(nats) == len(tokens)
    s = lm.stream()
    for token, n in zip(tokens, nats):
        assert -np.log(s.probs[lm.vocab.index(token)]) == pytest.approx(n, abs=2e-5)
        s.feed(token)
    batch = lm.stream()
    np.testing.assert_allclose(batch.feed_text(text), s.probs, rtol=0, atol=1e-6)
    by_id = lm.stream()
    for i in lm.encode(text):
        by_id.feed(int(i))
    np.testing.assert_allclose(by_id.probs, s.probs, rtol=0, atol=1e-6)
    other = s.copy()
    other.feed("t")
    np.testing.assert_allclose(by_id.probs, s.probs, rtol=0, atol=1e-6)   # s unchanged
    assert not np.allclose(other.probs, s.probs)
    with pytest.raises(ValueError, match="not a token"):
        s.feed("Z")
    with pytest.raises(ValueError, match="not in"):
        s.feed(len(lm.vocab))
    assert lm.decode(lm.encode(text)) == text


def test_preprocess_flags_have_the_functions_defaults():
    from rnnkit.cli.preprocess import command
    from rnnkit.corpus.preprocess import preprocess

    params = inspect.signature(preprocess).parameters
    assert set(PREPROCESS_SETTINGS) == {name for name, p in params.items()
                                        if p.kind is p.KEYWORD_ONLY} - {"progress", "block"}
    flags = {option.name: None if getattr(option, "multiple", False) else option.default
             for option in command.params}      # --val A --val B: a list, or None
    for name in PREPROCESS_SETTINGS:
        assert flags[name] == params[name].default, name


def test_train_from_python_is_the_command(tmp_path):
    (tmp_path / "t.txt").write_text(TEXT)
    summary = rnnkit.preprocess(tmp_path / "t.txt", tmp_path / "c.h5", val_frac=0.1,
                                test_frac=0.1)
    assert summary["level"] == "char" and summary["splits"]["val"] > 0
    cli = invoke("preprocess", tmp_path / "t.txt", "-o", tmp_path / "d.h5", "--val-frac",
                 "0.1", "--test-frac", "0.1", "-q")
    assert cli.exit_code == 0
    with Corpus(str(tmp_path / "c.h5")) as a, Corpus(str(tmp_path / "d.h5")) as b:
        assert a.vocab == b.vocab
        for split in ("train", "val", "test"):
            np.testing.assert_array_equal(a.tokens(split), b.tokens(split))
    settings = dict(embed=8, hidden=16, layers=1, batch_size=4, seq_len=8, lr=0.02,
                    threads=1, max_steps=6, eval_every=3)
    result = rnnkit.train(tmp_path / "c.h5", tmp_path / "py", progress=False, **settings)
    assert result.step == 6 and not result.interrupted
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in settings.items()]
    cli = invoke("train", tmp_path / "c.h5", "-o", tmp_path / "cli", "-q", *flags)
    assert cli.exit_code == 0, cli.output
    assert (tmp_path / "py" / "config.toml").read_text() == \
        (tmp_path / "cli" / "config.toml").read_text()
    py, command = (rnnkit.load(tmp_path / d / "latest.h5") for d in ("py", "cli"))
    np.testing.assert_array_equal(py.model.params, command.model.params)
    assert rnnkit.resume(tmp_path / "py", max_steps=8, progress=False).step == 8


def test_a_setting_of_the_wrong_type_is_a_type_error(tmp_path):
    """As docs/api.md says of arguments of the wrong type (it was a ValueError)."""
    from rnnkit.errors import ArgumentTypeError
    for settings in ({"max_steps": "x"}, {"hidden": 3.5}, {"nesterov": 1}):
        with pytest.raises(ArgumentTypeError, match="expected"):
            rnnkit.train(tmp_path / "c.h5", tmp_path / "x", **settings)


def test_unknown_settings_name_the_nearest(tmp_path):
    with pytest.raises(SettingError, match="did you mean hidden"):
        rnnkit.train(tmp_path / "c.h5", tmp_path / "x", hiden=3)
    with pytest.raises(SettingError, match="'levle'"):
        rnnkit.preprocess(tmp_path / "t.txt", tmp_path / "c.h5", levle="word")


@pytest.mark.parametrize("call, kind, says", [
    (lambda lm: lm.generate(["the "], 5), "type", "the prime must be a str, not list"),
    (lambda lm: lm.encode(None), "type", "the text must be a str, not NoneType"),
    (lambda lm: lm.scores(["the cat"]), "type", "must be a str, not list"),
    (lambda lm: lm.score(5), "type", "lines must be a str or a list of str"),
    (lambda lm: lm.decode([-1]), "value", "token id -1 is not in [0, "),
    (lambda lm: lm.decode([10 ** 6]), "value", "token id 1000000 is not in"),
    (lambda lm: lm.decode([1.5]), "type", "token ids must be integers"),
    (lambda lm: lm.generate("the ", "10"), "type", "length must be an int, not str"),
    (lambda lm: lm.generate("the ", 5, temperature="0.5"), "type", "temperature must be a"),
    (lambda lm: lm.generate("the ", 5, temperature=0), "value", "temperature must be at least"),
    (lambda lm: lm.generate("the ", 5, temperature=1e-310), "value", "must be at least 0.001"),
    (lambda lm: lm.generate("the ", 5, seed=2 ** 32 + 5), "value", "seed must be an int in"),
    (lambda lm: lm.generate("the ", 10 ** 12, beam=2), "value", "length must be at most"),
    (lambda lm: lm.generate("the ", 5, greedy=True, top_k=3), "value", "greedy takes the most"),
    (lambda lm: lm.generate("the ", 5, stop=5), "type", "stop must be a str or a list"),
    (lambda lm: lm.generate("the ", 5, seed=-1), "value", "seed must be an int in [0, 2^32)"),
    (lambda lm: lm.generate("the ", 5, length_penalty=0.5), "value", "give beam"),
    (lambda lm: lm.generate("the ", 5, beam=2.0), "type", "beam must be an int"),
    (lambda lm: lm.beam_search("the ", 5, beam=0), "value", "beam must be at least 1"),
    (lambda lm: lm.score(["a\nb"]), "value", "line 1 holds a newline"),
    (lambda lm: lm.stream().feed(np.array(3)), "value", "is not a token of the vocabulary"),
    (lambda lm: lm.generate("the ", 5, unknown="bogus"), "value", "unknown must be one of"),
    (lambda lm: lm.generate("the ", 5, greedy="no"), "type", "greedy must be True or False"),
    (lambda lm: lm.generate("the ", 5, echo="yes"), "type", "echo must be True or False"),
    (lambda lm: lm.pieces("the ", 5, seed=-1), "value", "seed must be an int in [0, 2^32)"),
    (lambda lm: lm.pieces("the ", 5, seed="x"), "value", "seed must be an int in [0, 2^32)"),
    (lambda lm: lm.generate("the ", 5, seed=[1, 2]), "value", "seed must be an int in"),
    (lambda lm: lm.score(["abc"], batch_size="3"), "type", "batch_size must be an int"),
    (lambda lm: lm.score(["abc"], batch_size=0), "value", "batch_size must be >= 1"),
    (lambda lm: lm.scores("abc\n", seq_len=2.5), "type", "seq_len must be an int"),
    (lambda lm: rnnkit.evaluate(lm.path, seq_len=-1), "value", "seq_len must be >= 0"),
    (lambda lm: rnnkit.evaluate(lm.path, batch_size=0), "value", "batch_size must be >= 1"),
    (lambda lm: rnnkit.evaluate(lm.path, threads=-1), "value", "threads must be >= 0"),
    (lambda lm: rnnkit.evaluate(lm.path, encoding=5), "type", "encoding must be a str"),
    (lambda lm: rnnkit.preprocess(None, "o.h5"), "type", "inputs must be a path or a list"),
    (lambda lm: rnnkit.preprocess("t.txt", "o.h5", encoding=5), "type", "encoding must be"),
])
def test_bad_arguments_are_rnnkit_errors(lm, call, kind, says):
    """A bad argument is an ArgumentError (a ValueError) or an ArgumentTypeError (a
    TypeError), both RnnkitErrors, with a message that names it; not an error from inside."""
    from rnnkit.errors import ArgumentError, ArgumentTypeError

    expected = ArgumentTypeError if kind == "type" else ArgumentError
    with pytest.raises(expected) as caught:
        call(lm)
    assert says in str(caught.value)


def test_paths_numbers_and_pieces(lm, run, tmp_path):
    from rnnkit.errors import ArgumentError, ArgumentTypeError, RnnkitError
    from rnnkit.tools.score import ScoreError

    with pytest.raises(ArgumentTypeError, match="output must be a path"):
        rnnkit.preprocess(tmp_path / "t.txt", None)
    with pytest.raises(ArgumentTypeError, match="val_frac must be a number"):
        rnnkit.preprocess(tmp_path / "t.txt", tmp_path / "c.h5", val_frac="0.1")
    with pytest.raises(ArgumentError, match="threads must be >= 0"):
        rnnkit.load(run / "latest.h5", threads=-1)
    assert rnnkit.load(bytes(run / "latest.h5"), threads=1).vocab == lm.vocab
    with pytest.raises(RnnkitError, match="is a file, not a run folder"):
        rnnkit.resume(run / "latest.h5", max_steps=99)
    # bytes at char level are decoded with the corpus's encoding, not read as Latin-1
    assert lm.encode(b"the ").tolist() == lm.encode("the ").tolist()
    # a scorer's pieces are whole lines; only the last may lack its newline
    scorer = lm.scorer()
    scorer.score("the c")
    with pytest.raises(ScoreError, match="ended inside a line"):
        scorer.score("at\n")
    # numpy's numbers are settings like Python's
    result = rnnkit.train(make_corpus(tmp_path), tmp_path / "np", hidden=np.int64(8),
                          embed=np.int64(8), layers=1, lr=np.float32(0.01), max_steps=1,
                          batch_size=np.int64(4), seq_len=8,
                          threads=1, progress=False)
    assert result.step == 1


def test_a_prime_is_read_after_a_line_break_as_score_and_stream_read_it(lm):
    """Sampling and beam search continue a prime from where score and a Stream read it (after
    a line break); before, from a zero state: a beam's log-probability was not score's."""
    for h in lm.beam_search("the q", 4, beam=3):
        tokens, nats = lm.surprisal("the q" + h.text)
        assert -float(np.sum(nats[-len(h.ids):])) == pytest.approx(h.logprob, abs=1e-4)
    first = lm.generate("the q", 1, greedy=True)
    assert lm.vocab[int(np.argmax(lm.stream("the q").probs))] == first


def test_a_long_prime_is_read_in_pieces(lm, monkeypatch):
    """The buffers a prime needs do not grow with its length, and the state is the one a
    single pass gives (to rounding: the pieces may run on other kernels)."""
    from rnnkit.model import network
    model = lm.model
    ids = np.array([[i % len(lm.vocab) for i in range(1300)]], np.int32)
    monkeypatch.setattr(network, "ADVANCE", 10 ** 6)
    once = model.state_to_host(model.advance(ids, model.init_state(1)))
    for key in [k for k in model._bases if k[0] == 1]:     # (N, with a table or not)
        model._drop(key)
    monkeypatch.setattr(network, "ADVANCE", 512)
    pieces = model.state_to_host(model.advance(ids, model.init_state(1)))
    assert max(T for key, (T, _) in model._bases.items() if key[0] == 1) <= 512
    for key in once:
        np.testing.assert_allclose(pieces[key], once[key], rtol=1e-5, atol=1e-6)


def test_a_fresh_seed_is_kept_to_replay_the_samples(lm):
    text = lm.generate("line", 20)
    assert isinstance(lm.last_seed, int) and lm.generate("line", 20, seed=lm.last_seed) == text


@pytest.mark.parametrize("call", [
    lambda src, out: rnnkit.preprocess(src, out, force="no"),
    lambda src, out: rnnkit.export(src, out, force="no"),
    lambda src, out: rnnkit.import_weights(src, out, force="false"),
])
def test_force_is_a_bool_not_anything_true(run, tmp_path, call):
    # before: force="no" overwrote the existing file
    from rnnkit.errors import ArgumentTypeError

    out = tmp_path / "kept.h5"
    out.write_text("mine")
    with pytest.raises(ArgumentTypeError, match="force must be True or False"):
        call(run / "latest.h5", out)
    assert out.read_text() == "mine"


def test_pieces_without_a_seed_can_be_replayed(lm):
    text = "".join(lm.pieces("line", 20))
    assert "".join(lm.pieces("line", 20, seed=lm.last_seed)) == text


@pytest.mark.parametrize("shared", [True, False])
def test_threads_sharing_a_model_or_the_process_get_what_one_thread_gets(run, shared):
    # before: one model's buffers (and the sampling step's scratch, one per process) served
    # every thread at once: other text for a seed, other scores, no error
    import threading

    models = [rnnkit.load(run / "latest.h5") for _ in range(3)]
    if shared:
        models = [models[0]] * 3
    lm, text = models[0], TEXT[:1500]
    want = (lm.generate("line", 150, seed=3), lm.score(text), lm.generate("line", 15, beam=3),
            "".join(lm.pieces("line", 100, seed=4)))
    got = []

    def work(m):
        for _ in range(3):
            got.append((m.generate("line", 150, seed=3), m.score(text),
                        m.generate("line", 15, beam=3), "".join(m.pieces("line", 100, seed=4))))

    threads = [threading.Thread(target=work, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 9
    for g in got:
        assert g[0] == want[0] and g[2] == want[2] and g[3] == want[3]
        np.testing.assert_array_equal(g[1], want[1])


def test_resuming_a_folder_that_is_not_there_makes_none(tmp_path):
    from rnnkit.training.folder import RunFolderError

    with pytest.raises(RunFolderError, match="no run folder .*typo to resume"):
        rnnkit.resume(tmp_path / "typo")
    assert not (tmp_path / "typo").exists()


def test_threads_are_the_process_s_and_every_model_says_so(run):
    # before: a model loaded with threads=1 said "threads: 2 (--threads 1)" after another
    # was loaded with threads=2
    one = rnnkit.load(run / "latest.h5", threads=1)
    two = rnnkit.load(run / "latest.h5", threads=2)
    for lm in (one, two):
        assert "threads: 2 (--threads 2)" in lm.model.backend.describe()
    rnnkit.load(run / "latest.h5", threads=1)
