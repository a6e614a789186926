"""Run folders that move, and resumes that question what changed: paths stored relative to the
run folder (from any working directory, a moved folder, an old folder), a corpus checked by its
fingerprint, one-line refusals, and `info RUN_DIR` telling what the checkpoints hold."""
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from rnnkit.training import checkpoint
from rnnkit.cli.main import main
from rnnkit.training.train import resume
from tests.tiny_run import TEXT, make_corpus

SMALL = ["--batch-size", "4", "--seq-len", "8", "--hidden", "16", "--embed", "8", "--layers",
         "1", "--threads", "1", "--quiet"]
DATA = Path(__file__).parent / "data"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def one_line_error(result, *words):
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(lines) == 1 and all(w in lines[0] for w in words), result.output
    return lines[0]


def step(path):
    return checkpoint.read_meta(path)["step"]


@pytest.fixture
def project(tmp_path, monkeypatch):
    """proj/data/char.h5 and a 6-step run in proj/runs/x, started in proj with relative
    paths."""
    proj = tmp_path / "proj"
    (proj / "data").mkdir(parents=True)
    make_corpus(proj / "data")
    monkeypatch.chdir(proj)
    ok(invoke("train", "data/char.h5", "-o", "runs/x", *SMALL, "--max-steps", 6,
              "--eval-every", 3))
    return proj


# -- paths -----------------------------------------------------------------------------------

def test_resume_eval_and_info_work_from_another_working_directory(project, monkeypatch):
    assert 'corpus = "../../data/char.h5"' in (project / "runs/x/config.toml").read_text()
    (project / "sub").mkdir()
    monkeypatch.chdir(project / "sub")
    ok(invoke("train", "--resume", "../runs/x", "--max-steps", 8))
    assert step(project / "runs/x/latest.h5") == 8
    result = ok(invoke("eval", "../runs/x/latest.h5"))        # the run's own corpus
    assert "source ../data/char.h5 [test]" in result.stdout
    assert "rnnkit train ../data/char.h5 " in ok(invoke("info", "../runs/x")).output


def test_a_moved_run_folder_finds_the_corpus_beside_it(project, tmp_path, monkeypatch):
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    project.rename(moved)
    monkeypatch.chdir(tmp_path)
    ok(invoke("train", "--resume", "elsewhere/moved/runs/x", "--max-steps", 8))
    assert step(moved / "runs/x/latest.h5") == 8
    # a run's config.toml as --config: its paths from its folder too
    ok(invoke("train", "-o", "again", "--config", "elsewhere/moved/runs/x/config.toml",
              "--max-steps", 2))
    shutil.rmtree(moved / "data")
    one_line_error(invoke("train", "--resume", "elsewhere/moved/runs/x", "--max-steps", 9),
                   "cannot find the run's corpus '../../data/char.h5'", "CORPUS --resume")
    one_line_error(invoke("eval", "elsewhere/moved/runs/x/latest.h5"),
                   "cannot find the corpus", "give a CORPUS or --text")


def test_an_old_run_folder_resumes_from_where_it_did(tmp_path, monkeypatch):
    """rnnkit 0.1 stored the corpus as typed ('corpus.h5', from where it was started)."""
    (tmp_path / "run").mkdir()
    shutil.copy(DATA / "checkpoint-0.1.h5", tmp_path / "run" / "latest.h5")
    shutil.copy(DATA / "corpus-0.1.h5", tmp_path / "corpus.h5")
    assert checkpoint.read_meta(tmp_path / "run/latest.h5")["config"]["data"]["corpus"] \
        == "corpus.h5"
    monkeypatch.chdir(tmp_path)
    assert resume("run", {"train": {"max_steps": 8}}).step == 8
    assert checkpoint.read_meta("run/latest.h5")["config"]["data"]["corpus"] == "../corpus.h5"
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert resume("../run", {"train": {"max_steps": 9}}).step == 9


# -- what changed ----------------------------------------------------------------------------

def test_another_corpus_is_refused_unless_asked_for(project, tmp_path):
    (tmp_path / "other").mkdir()
    other = make_corpus(tmp_path / "other", text=TEXT[:len(TEXT) * 3 // 4])
    line = one_line_error(invoke("train", other, "--resume", "runs/x", "--max-steps", 9),
                          "is not the corpus this run trained on", "train split 2,088 -> 1,567",
                          "--new-corpus")
    assert "content hash" not in line
    assert step("runs/x/latest.h5") == 6
    result = ok(invoke("train", other, "--resume", "runs/x", "--max-steps", 9, "--new-corpus"))
    assert "a new corpus (train split 2,088 -> 1,567 tokens; val split" in result.output
    assert step("runs/x/latest.h5") == 9
    assert step("runs/x/best.h5") == 9             # the first validation on the new split
    stored = checkpoint.load("runs/x/latest.h5")
    assert stored.batch == 3                       # its streams from their beginning
    assert json.loads(stored.meta["corpus"])["splits"]["train"] == 1567
    # the same text made again elsewhere is the same corpus: no question asked
    (tmp_path / "copy").mkdir()
    again = make_corpus(tmp_path / "copy", text=TEXT[:len(TEXT) * 3 // 4])
    ok(invoke("train", again, "--resume", "runs/x", "--max-steps", 10))
    # the same sizes, other text: the content hash tells them apart
    (tmp_path / "same").mkdir()
    swapped = TEXT[:len(TEXT) * 3 // 4].replace("quick", "kciuq")     # the same symbols
    swapped = make_corpus(tmp_path / "same", text=swapped)
    one_line_error(invoke("train", swapped, "--resume", "runs/x", "--max-steps", 11),
                   "other text (content hash")


def test_a_new_corpus_without_validation_keeps_a_run_that_decides_on_it(project, tmp_path):
    # before: accepted with a note; the plateau schedule and early stopping then did nothing
    ok(invoke("train", "data/char.h5", "-o", "runs/p", *SMALL, "--max-steps", 4,
              "--schedule", "plateau", "--patience", 3, "--eval-every", 2))
    from rnnkit.corpus.preprocess import preprocess
    (tmp_path / "t.txt").write_text(TEXT, encoding="utf-8")
    preprocess([str(tmp_path / "t.txt")], str(tmp_path / "noval.h5"), val_frac=0.0,
               test_frac=0.0, vocab_from="data/char.h5")
    one_line_error(invoke("train", tmp_path / "noval.h5", "--resume", "runs/p", "--new-corpus",
                          "--max-steps", 8),
                   "has no 'val' split", "early stopping (--patience) and the plateau schedule",
                   "give a corpus with one")
    assert step("runs/p/latest.h5") == 4


def test_resume_with_init_from_and_an_unknown_split_are_one_line_errors(project):
    one_line_error(invoke("train", "--resume", "runs/x", "--init-from", "runs/x/best.h5",
                          "--max-steps", 9), "--init-from", "--resume", "give one of them")
    assert step("runs/x/latest.h5") == 6
    one_line_error(invoke("train", "data/char.h5", "-o", "runs/y", *SMALL, "--val-split", "nope"),
                   "--val-split 'nope'", "has no such split (it has train, val, test)")
    one_line_error(invoke("train", "data/char.h5", "-o", "runs/y", *SMALL, "--train-split",
                          "tset"), "--train-split 'tset'")
    assert not Path("runs/y").exists()
    assert invoke("train", "data/char.h5", "-o", "runs/y", *SMALL, "--new-corpus").exit_code == 2


def test_info_tells_what_the_checkpoints_hold(project):
    with open("runs/x/metrics.jsonl", "a") as f:    # a kill after step 9's lines, before its save
        f.write(json.dumps({"step": 9, "epoch": 0.1, "train_loss": 0.5, "lr": 0.002}) + "\n")
        f.write(json.dumps({"step": 9, "epoch": 0.1, "val_loss": 0.01, "val_ppl": 1.01,
                            "val_bpc": 0.0144}) + "\n")
    best = checkpoint.read_meta("runs/x/best.h5")
    text = ok(invoke("info", "runs/x")).output
    assert "checkpoints: latest.h5 (step 6); best.h5 (step 6)" in text
    assert "metrics.jsonl runs to step 9, past latest.h5 (step 6)" in text
    assert f"best validation: {best['best_val_loss']:.4f} nats/token at step 6" in text
    assert "0.0100 nats" not in text and "training: step 6\n" in text
    shutil.copytree("runs/x", "runs/nolatest", ignore=shutil.ignore_patterns("latest.h5"))
    text = ok(invoke("info", "runs/nolatest")).output
    assert "no usable latest.h5" in text and "there is no usable latest.h5: this folder " \
        "cannot be resumed" in text and "past latest.h5" not in text
    one_line_error(invoke("train", "data/char.h5", "-o", "runs/nolatest", *SMALL),
                   "holds files of an earlier run", "no latest.h5 to resume from")
