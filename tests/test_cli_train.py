"""`rnnkit train`, `eval`, `info` and `plot` through click's CliRunner."""
import json
import math
import os
import re
import signal
import sys

import pytest
from click.testing import CliRunner

from rnnkit.training import checkpoint
from rnnkit.cli.main import main
from rnnkit.model.network import Model
from rnnkit.training.train import EXIT_INTERRUPTED
from tests.tiny_run import make_corpus, make_run

SMALL = ["--batch-size", "4", "--seq-len", "8", "--hidden", "16", "--embed", "8", "--layers",
         "1", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("cli"))


@pytest.fixture(scope="module")
def run(tmp_path_factory, corpus):
    return make_run(tmp_path_factory.mktemp("clirun"), corpus)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_train_flags_and_config_file(corpus, tmp_path):
    (tmp_path / "c.toml").write_text('[model]\ncell = "gru"\nhidden = 12\n[train]\n'
                                     'max_steps = 7\neval_every = 3\n')
    result = invoke("train", corpus, "-o", tmp_path / "run", "--config", tmp_path / "c.toml",
                    *SMALL, "--optimizer", "sgd", "--lr", "0.5", "--momentum", "0.9")
    assert result.exit_code == 0, result.output
    assert "7 steps done" in result.stderr and result.stdout == ""
    ck = checkpoint.load(tmp_path / "run" / "latest.h5")
    # the file's cell and limits, the flags' hidden size and optimizer
    assert ck.config["model"]["cell"] == "gru" and ck.config["model"]["hidden"] == 16
    assert ck.optimizer["name"] == "sgd" and ck.optimizer["hyper"]["momentum"] == 0.9
    assert ck.step == 7
    saved = (tmp_path / "run" / "config.toml").read_text()
    assert 'cell = "gru"' in saved and "momentum = 0.9" in saved
    again = invoke("train", "-o", tmp_path / "again", "--config", tmp_path / "run" / "config.toml")
    assert again.exit_code == 0, again.output


def test_a_corpus_without_validation_trains_to_a_time_limit(tmp_path):
    from rnnkit.corpus.preprocess import preprocess
    from tests.tiny_run import TEXT
    (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8")
    preprocess([str(tmp_path / "t.txt")], str(tmp_path / "c.h5"), val_frac=0, test_frac=0)
    result = invoke("train", tmp_path / "c.h5", "-o", tmp_path / "run", *SMALL,
                    "--max-time", "10m", "--max-steps", "5")
    assert result.exit_code == 0, result.output
    assert "no 'val' split; no validation" in result.stderr
    assert checkpoint.load(tmp_path / "run" / "latest.h5").step == 5


def test_every_validation_line_shows_ppl_and_bits(corpus, tmp_path):
    result = invoke("train", corpus, "-o", tmp_path / "run", *SMALL, "--max-steps", "7",
                    "--eval-every", "5")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if ": val loss " in line]
    assert [line.split(":")[0] for line in lines] == ["step 5", "step 7"]   # 7: the final one
    assert all(re.search(r"val loss \d\.\d{4}, ppl \d+\.\d\d, \d\.\d{3} bits/token", line)
               for line in lines), lines


def test_resume_continues(corpus, tmp_path):
    first = invoke("train", corpus, "-o", tmp_path / "run", *SMALL, "--max-steps", "4",
                   "--log-every", "1")
    assert first.exit_code == 0, first.output
    result = invoke("train", "--resume", tmp_path / "run", "--max-steps", "9", "--quiet")
    assert result.exit_code == 0, result.output
    assert "resuming at step 4" in result.stderr
    assert checkpoint.load(tmp_path / "run" / "latest.h5").step == 9
    steps = [json.loads(line).get("step") for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert all(s in steps for s in range(1, 10))


def test_signal_exits_with_the_documented_code(corpus, tmp_path, monkeypatch):
    real = Model.forward_backward

    def forward_backward(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGUSR1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Model, "forward_backward", forward_backward)
    result = invoke("train", corpus, "-o", tmp_path / "run", *SMALL, "--max-steps", "50")
    assert result.exit_code == EXIT_INTERRUPTED == 75, result.output
    assert "stopped by SIGUSR1" in result.stderr and "--resume" in result.stderr
    assert checkpoint.load(tmp_path / "run" / "latest.h5").step == 1


@pytest.mark.parametrize("args,message", [
    (["-o", "{tmp}/r", "--batch-size", "500"], "too few for one batch of N=500"),
    (["-o", "{tmp}/r", "--tie-weights"], "tie_weights needs embed == hidden"),
    (["-o", "{tmp}/r", "--optimizer", "adam", "--momentum", "0.9"],
     "[optim] momentum does not apply to adam (--momentum: sgd, rmsprop only)"),
    (["-o", "{tmp}/r", "--schedule", "cosine", "--epochs", "0", "--max-time", "1m"],
     "cosine schedule needs a length"),
    (["-o", "{tmp}/r", "--max-time", "soon"], "'soon' is not a duration"),
    (["-o", "{tmp}/r", "--config", "{tmp}/bad.toml"], "unknown key 'hiden' in [model]"),
    ([], "give the run folder with -o/--output"),
    (["--resume", "{tmp}"], "has no latest.h5 to resume from"),
])
def test_train_errors_are_one_line(corpus, tmp_path, args, message):
    (tmp_path / "bad.toml").write_text("[model]\nhiden = 3\n")
    args = [a.format(tmp=tmp_path) for a in args]
    corpus_arg = [] if "--resume" in args else [corpus]
    result = invoke("train", *corpus_arg, *SMALL, *args)
    assert result.exit_code in (1, 2), result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r" / "latest.h5").exists()


def test_resume_refuses_model_changes(run):
    result = invoke("train", "--resume", run, "--hidden", "64")
    assert result.exit_code == 1 and "[model] hidden comes from the checkpoint" in result.output


def test_eval_split_and_text(run, corpus, tmp_path):
    result = invoke("eval", run / "best.h5", corpus, "--split", "val")
    assert result.exit_code == 0, result.output
    numbers = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    loss = float(numbers["loss"])
    assert math.isclose(float(numbers["perplexity"]), math.exp(loss), rel_tol=1e-4)
    assert math.isclose(float(numbers["bits_per_token"]), loss / math.log(2), rel_tol=1e-5)
    assert 0 < loss < math.log(40)
    best = checkpoint.load(run / "best.h5").best_val_loss
    assert abs(loss - best) < 0.2     # training validated in another layout (N, T)
    (tmp_path / "x.txt").write_text("the quick brown fox naps\n" * 4)
    text = invoke("eval", run / "best.h5", "--text", tmp_path / "x.txt", "--batch-size", "1")
    assert text.exit_code == 0 and "tokens 99" in text.stdout        # every token but the first
    text = invoke("eval", run / "best.h5", "--text", tmp_path / "x.txt")
    assert text.exit_code == 0 and "tokens 90" in text.stdout        # 10 streams of 9
    (tmp_path / "bad.txt").write_text("Zebra")
    bad = invoke("eval", run / "best.h5", "--text", tmp_path / "bad.txt")
    assert bad.exit_code == 1 and "'Z' (U+005A)" in bad.output
    both = invoke("eval", run / "best.h5", corpus, "--text", tmp_path / "x.txt")
    assert both.exit_code == 2 and "either CORPUS" in both.output


def test_eval_refuses_another_vocabulary(run, tmp_path):
    other = make_corpus(tmp_path, text="abc abc abc\n" * 50)
    result = invoke("eval", run / "best.h5", other)
    assert result.exit_code == 1 and "another vocabulary" in result.output


def test_info_shows_checkpoints(run):
    result = invoke("info", run / "latest.h5")
    assert result.exit_code == 0, result.output
    assert "rnnkit checkpoint" in result.stdout and "lstm 1x16" in result.stdout
    assert "step 20" in result.stdout and "level char" in result.stdout


def test_plot(run, tmp_path, monkeypatch):
    from rnnkit.tools.plot import read_metrics

    curves = read_metrics(run)
    assert [s for s, _, _ in curves["train_loss"]] == list(range(1, 21))
    assert [s for s, _, _ in curves["val_loss"]] == [10, 20]
    assert [s for s, _, _ in curves["lr"]] == list(range(1, 21))
    monkeypatch.setitem(sys.modules, "matplotlib", None)      # as if not installed
    result = invoke("plot", run, "-o", tmp_path / "c.png")
    assert result.exit_code == 1 and "pip install 'rnnkit[plot]'" in result.output
    result = invoke("plot", tmp_path, "-o", tmp_path / "c.png")
    assert result.exit_code == 1 and "has no metrics.jsonl" in result.output


def test_help_has_examples():
    for name in ("train", "generate", "eval", "plot", "score", "export", "import"):
        result = invoke(name, "-h")
        assert result.exit_code == 0 and f"rnnkit {name} " in result.output


def test_plot_writes_an_image(run, tmp_path):
    pytest.importorskip("matplotlib")
    result = invoke("plot", run, "-o", tmp_path / "c.png")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "c.png").write_bytes(b"mine")
    again = invoke("plot", run, "-o", tmp_path / "c.png")     # asks for -f, as every command
    assert again.exit_code == 1 and "c.png exists; use --force to overwrite it" in again.output
    assert (tmp_path / "c.png").read_bytes() == b"mine"
    assert invoke("plot", run, "-o", tmp_path / "c.png", "-f").exit_code == 0
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"


def test_a_corpus_whose_name_is_not_utf8_is_one_line_and_no_folder(tmp_path):
    # before: an internal error at the first checkpoint (config.toml is UTF-8)
    import shutil

    corpus = make_corpus(tmp_path)
    odd = os.fsdecode(os.fsencode(str(tmp_path)) + b"/bad\xe9.h5")
    shutil.copy(corpus, odd)
    result = CliRunner().invoke(main, ["train", odd, "-o", str(tmp_path / "run"),
                                       "--max-steps", "1", "--threads", "1"])
    assert result.exit_code == 1 and "its name is not UTF-8 text" in result.output, \
        result.output
    assert "internal error" not in result.output and not (tmp_path / "run").exists()
