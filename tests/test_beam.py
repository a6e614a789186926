"""Beam search against all sequences of a few steps (with K >= V^steps the beam is exact), on
every backend; beam 1 is greedy decoding; `rnnkit generate --beam`."""
import itertools

import numpy as np
import pytest
from click.testing import CliRunner

from rnnkit.backends import BackendError, get_backend
from rnnkit.tools.beam import beam_search, length_penalty
from rnnkit.cli.main import main
from rnnkit.model.config import ModelConfig
from rnnkit.tools.generate import generate
from rnnkit.model.network import Model
from rnnkit.corpus.textcodec import TextCodec
from rnnkit.corpus.tokenize import Vocabulary
from tests.tiny_run import make_corpus, make_run

CHARS = ["\n", "a", "b"]
WORDS = ["<eos>", "a", "b"]


@pytest.fixture(params=["cpu", "cuda"], scope="module")
def backend(request):
    try:
        return get_backend(request.param)
    except BackendError as err:
        pytest.skip(str(err))


def tiny(backend, tokens, level, cell="lstm", seed=0):
    """A model over three tokens with weights large enough to make the choices matter."""
    model = Model(ModelConfig(cell=cell, vocab_size=3, embed=3, hidden=4, layers=2),
                  dtype=np.float64, backend=backend)
    rng = np.random.default_rng(seed)
    backend.copy(model.params, rng.uniform(-1.5, 1.5, model.params.shape))
    return model, TextCodec(Vocabulary(level, tokens))


def exhaustive(model, codec, prime_ids, steps, alpha, ends):
    """(score, logprob, ids) of every sequence of at most `steps` tokens that ends where
    `ends(ids)` says or at `steps`, best first: each scored by the batched forward
    (evaluate_tokens) on prime + sequence, a path the beam does not take."""
    found = []
    for n in range(1, steps + 1):
        for seq in itertools.product(range(len(codec)), repeat=n):
            if any(ends(seq[:k]) for k in range(1, n)) or (n < steps and not ends(seq)):
                continue
            ids = list(prime_ids) + list(seq)
            x = np.array([ids[:-1]], np.int32)
            y = np.array([ids[1:]], np.int32)
            losses, _ = model.evaluate_tokens(x, y, model.init_state(1))
            logprob = -float(losses[0, -n:].sum())
            found.append((logprob / length_penalty(n, alpha), logprob, list(seq)))
    return sorted(found, key=lambda f: -f[0])


@pytest.mark.parametrize("case", ["length", "stop", "eos"])
def test_a_wide_beam_is_exhaustive_search(backend, case):
    steps = 3 if getattr(backend, "simulator", False) else 4
    if case == "eos":
        model, codec = tiny(backend, WORDS, "word", "gru")
        options = dict(until_eos=True)
        ends = lambda seq: seq[-1] == 0             # noqa: E731
    else:
        model, codec = tiny(backend, CHARS, "char")
        options = dict(stop=["\nb"] if case == "stop" else [])
        ends = lambda seq: case == "stop" and seq[-2:] == (0, 2)    # noqa: E731
    alpha = 0.0 if case == "length" else 0.8
    prime = "a b" if case == "eos" else "ab"
    K = 3 ** steps
    want = exhaustive(model, codec, [codec.start_id(), *codec.encode(prime)], steps, alpha,
                      ends)        # after a line break, as score reads a prime
    got = beam_search(model, codec, prime, steps, K, alpha, num_samples=10, **options)
    assert [h.ids for h in got] == [ids for *_, ids in want[:10]]
    np.testing.assert_allclose([h.score for h in got], [s for s, *_ in want[:10]],
                               rtol=1e-12)
    np.testing.assert_allclose([h.logprob for h in got], [lp for _, lp, _ in want[:10]],
                               rtol=1e-12)
    assert [h.text for h in got] == [codec.decode(codec.encode(prime).tolist() + h.ids)[
        len(prime):] for h in got]
    if case == "stop":
        assert any(h.text.endswith("\nb") and len(h.ids) < steps for h in got)
    if case == "eos":
        assert any(h.text.endswith("\n") and len(h.ids) < steps for h in got)


def test_a_narrow_beam_keeps_the_best_it_saw(backend):
    """K = 2 of V^4 = 81: every hypothesis returned is a real sequence with its true score,
    best first, and the best is at least as likely as greedy decoding's."""
    model, codec = tiny(backend, CHARS, "char", seed=4)
    want = {tuple(ids): lp for _, lp, ids in exhaustive(
        model, codec, [codec.start_id(), 1, 2], 4, 0.0, lambda seq: False)}
    got = beam_search(model, codec, "ab", 4, beam=2)
    assert len(got) == 2 and got[0].score >= got[1].score
    for h in got:
        assert h.logprob == pytest.approx(want[tuple(h.ids)], rel=1e-12)
    greedy = codec.encode("".join(generate(model, codec, 4, "ab", greedy=True))[2:])
    assert got[0].logprob >= want[tuple(greedy.tolist())] - 1e-12


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("beam")
    return make_run(folder, make_corpus(folder))


def test_beam_one_is_greedy_decoding(run):
    from rnnkit.tools.load import load_model

    model, codec, _ = load_model(run / "latest.h5")
    greedy = "".join(generate(model, codec, 40, "line 3", greedy=True, echo=False))
    (best,) = beam_search(model, codec, "line 3", 40, beam=1)
    assert best.text == greedy and len(best.ids) == 40


def invoke(*args, input=None):
    return CliRunner().invoke(main, [str(a) for a in args], input=input)


def test_cli_beam_writes_the_best_with_their_scores(run, tmp_path):
    ck = run / "latest.h5"
    args = [ck, "--length", "20", "--beam", "4", "--num-samples", "3", "--stop", "\n"]
    result = invoke("generate", *args, "--prime", "line")
    assert result.exit_code == 0, result.output
    # the separators on stdout, as for samples; each hypothesis's scores on stderr
    rows = result.stdout.split("\n")[:-1]
    assert rows[0::2] == [f"--- sample {n} of 3 ---" for n in (1, 2, 3)]
    texts = rows[1::2]
    assert len(texts) == 3 and all(t.startswith("line") for t in texts)
    heads = [line for line in result.stderr.splitlines() if line.startswith("--- hypothesis")]
    assert len(heads) == 3 and "logprob" in heads[0] and "seed" not in result.stderr
    scores = [float(h.split("score ")[1].split(",")[0]) for h in heads]
    assert scores == sorted(scores, reverse=True)
    plain = invoke("generate", *args, "--prime", "line", "--separator", "")
    assert plain.stdout == "".join(t + "\n" for t in texts)
    written = invoke("generate", *args, "--prime", "line", "-o", tmp_path / "beam.txt")
    assert written.exit_code == 0 and (tmp_path / "beam.txt").read_text() == result.stdout
    # interactive: every input line answered, a bad prime by empty lines after its separators
    answered = invoke("generate", *args, "--separator", "#{n}", "--interactive",
                      input="Zebra\nline\n")
    assert answered.exit_code == 1 and "input line 1: character 'Z'" in answered.stderr
    assert answered.stdout == "#1\n\n#2\n\n#3\n\n" + "".join(
        f"#{n + 1}\n{t[len('line'):]}\n" for n, t in enumerate(texts))
    # fewer distinct texts than asked for (no token to add): still one slot per sample
    short = invoke("generate", ck, "--prime", "line", "--length", "0", "--beam", "2",
                   "--num-samples", "2")
    assert short.exit_code == 0 and short.stdout == \
        "--- sample 1 of 2 ---\nline\n--- sample 2 of 2 ---\n"
    assert "hypothesis 2 of 2: none (the search found 1)" in short.stderr
    for args, message in [(["--num-samples", "5"], "cannot exceed the beam"),
                          (["--temperature", "0.5"], "--temperature"),
                          (["--seed", "1"], "--seed")]:
        bad = invoke("generate", ck, "--beam", "4", *args)
        assert bad.exit_code == 2 and message in bad.output
    # before: an internal error (OverflowError) on the penalty at --length
    huge = invoke("generate", ck, "--beam", "2", "--length-penalty", "150")
    assert huge.exit_code == 2 and "length-penalty must be in 0..10" in huge.output, huge.output
    alone = invoke("generate", ck, "--length-penalty", "0.6")
    assert alone.exit_code == 2 and "--beam" in alone.output

