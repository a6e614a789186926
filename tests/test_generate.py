"""Sampling: the probability transforms, seeding, primes, and `rnnkit generate`."""
import numpy as np
import pytest
from click.testing import CliRunner

from rnnkit.cli.main import main
from rnnkit.generate import generate
from rnnkit.sampling import probabilities
from rnnkit.load import load_model
from tests.tiny_run import make_corpus, make_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gen")
    return make_run(folder, make_corpus(folder))


@pytest.fixture(scope="module")
def word_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("genword")
    return make_run(folder, make_corpus(folder, "word"), steps=5)


def test_probabilities():
    logits = np.log(np.array([[0.1, 0.2, 0.3, 0.4]]))
    np.testing.assert_allclose(probabilities(logits), [[0.1, 0.2, 0.3, 0.4]])
    np.testing.assert_allclose(probabilities(logits, top_k=2), [[0, 0, 3 / 7, 4 / 7]])
    np.testing.assert_allclose(probabilities(logits, top_p=0.65), [[0, 0, 3 / 7, 4 / 7]])
    np.testing.assert_allclose(probabilities(logits, top_p=0.75), [[0, 2 / 9, 3 / 9, 4 / 9]])
    np.testing.assert_allclose(probabilities(logits, top_p=0.01), [[0, 0, 0, 1]])
    hot = probabilities(logits, temperature=0.01)
    assert hot[0, 3] > 0.999
    flat = probabilities(logits, temperature=100.0)
    assert np.ptp(flat) < 0.01


def test_same_seed_same_text(run):
    model, codec, _ = load_model(run / "latest.h5")
    a = "".join(generate(model, codec, 60, prime="line", seed=5))
    b = "".join(generate(model, codec, 60, prime="line", seed=5))
    c = "".join(generate(model, codec, 60, prime="line", seed=6))
    assert a == b != c and a.startswith("line") and len(a) == 64
    greedy = "".join(generate(model, codec, 30, greedy=True))
    assert greedy == "".join(generate(model, codec, 30, greedy=True, seed=9))


def test_cli_streams_text(run):
    runner = CliRunner()
    args = ["generate", str(run / "latest.h5"), "--length", "40", "--prime", "the ",
            "--seed", "3", "--temperature", "0.7", "--top-k", "5", "--top-p", "0.9"]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert first.stdout.startswith("the ") and len(first.stdout) == 4 + 40 + 1
    assert runner.invoke(main, args).stdout == first.stdout
    two = runner.invoke(main, args[:-8] + ["--num-samples", "2"])
    assert two.exit_code == 0 and "sample 2 of 2" in two.stderr
    fresh = runner.invoke(main, ["generate", str(run / "latest.h5"), "--length", "5"])
    assert fresh.exit_code == 0 and fresh.stderr.startswith("seed ")


@pytest.mark.parametrize("args,message", [
    (["--prime", "Zebra"], "character 'Z' (U+005A) at line 1, column 1 of the prime is not in the model's vocab"),
    (["--temperature", "0"], "Invalid value for '--temperature'"),
    (["--top-p", "1.5"], "Invalid value for '--top-p'"),
])
def test_cli_errors(run, args, message):
    result = CliRunner().invoke(main, ["generate", str(run / "latest.h5")] + args)
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output and result.stdout == ""


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "x.h5").write_text("no")
    result = CliRunner().invoke(main, ["generate", str(tmp_path / "x.h5")])
    assert result.exit_code == 1 and "not an HDF5 file" in result.output


def test_word_model_maps_unknown_words_to_unk(word_run):
    result = CliRunner().invoke(main, ["generate", str(word_run / "latest.h5"), "--prime",
                                       "the zebra", "--length", "5", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("the <unk>")
