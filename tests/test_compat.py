"""Files of rnnkit 0.1 (tests/data: a char corpus without checksums, and a GRU checkpoint
trained on it with SGD and a step schedule, written before the configuration keys were
renamed) still load, generate, evaluate, describe and resume."""
import shutil
from pathlib import Path

from click.testing import CliRunner

from rnnkit.training import checkpoint
from rnnkit.cli.main import main
from rnnkit.tools.generate import generate
from rnnkit.tools.load import load_model
from rnnkit.training.train import resume

DATA = Path(__file__).parent / "data"


def test_an_old_checkpoint_generates_and_describes():
    model, codec, ck = load_model(DATA / "checkpoint-0.1.h5")
    assert model.cfg.cell == "gru" and model.cfg.hidden == 12 and ck.step == 6
    text = "".join(generate(model, codec, 20, prime="line", seed=1))
    assert text.startswith("line") and len(text) == 24
    result = CliRunner().invoke(main, ["info", str(DATA / "checkpoint-0.1.h5")])
    assert result.exit_code == 0, result.output
    assert "optimizer: sgd" in result.output and "schedule step" in result.output
    assert "checksums: none (made by rnnkit 0.1)" in result.output


def test_an_old_corpus_evaluates_and_verifies():
    result = CliRunner().invoke(main, ["eval", str(DATA / "checkpoint-0.1.h5"),
                                       str(DATA / "corpus-0.1.h5")])
    assert result.exit_code == 0, result.output
    assert "[test]" in result.output
    verified = CliRunner().invoke(main, ["info", "--verify", str(DATA / "corpus-0.1.h5")])
    assert verified.exit_code == 0 and "verified" in verified.output


def test_an_old_run_resumes(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(DATA / "checkpoint-0.1.h5", run / "latest.h5")
    shutil.copy(DATA / "corpus-0.1.h5", tmp_path / "corpus.h5")
    result = resume(run, {"data": {"corpus": str(tmp_path / "corpus.h5")},
                          "train": {"max_steps": 8}})
    assert result.step == 8
    ck = checkpoint.load(run / "latest.h5")
    assert ck.config["optim"]["optimizer"] == "sgd" and ck.config["schedule"]["lr_decay_every"] == 2
    assert ck.optimizer["name"] == "sgd" and "momentum_buffer" in ck.optimizer["buffers"]
