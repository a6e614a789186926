"""The examples of docs/api.md and README.md's rescoring example run as written."""
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import rnnkit
from tests.tiny_run import make_corpus, make_run

ROOT = Path(__file__).resolve().parent.parent


def blocks(text, lang):
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def sentences(n=500, seed=0):
    """Short lines over the characters the examples use."""
    rng = np.random.default_rng(seed)
    who = ["The cat", "The dog", "Mat", "The hat", "A cat"]
    did = ["sat on", "sat by", "ran to", "saw"]
    what = ["the mat", "the hat", "the log", "the dog", "a cat"]
    return "".join(f"{rng.choice(who)} {rng.choice(did)} {rng.choice(what)}.\n"
                   for _ in range(n))


def test_api_examples_run_as_written(tmp_path, monkeypatch, capsys):
    (tmp_path / "input.txt").write_text(sentences())
    monkeypatch.chdir(tmp_path)
    namespace = {}
    code = blocks((ROOT / "docs" / "api.md").read_text(), "python")
    assert len(code) >= 6
    for block in code:
        exec(compile(block, "docs/api.md", "exec"), namespace)
    assert namespace["result"].step == 80
    assert len(namespace["texts"]) == 3 and set(namespace["best"]) == {"utt1", "utt2"}
    assert "bits" in capsys.readouterr().out
    assert namespace["report"]["tokens"] > 0 and math.isfinite(namespace["report"]["loss"])
    assert (tmp_path / "x-back.h5").exists()          # the test extra has safetensors


def test_readme_rescoring_example(tmp_path):
    readme = (ROOT / "README.md").read_text()
    (block,) = blocks(readme[readme.index("<!-- rescoring example -->"):], "sh")[:1]
    run = make_run(tmp_path, make_corpus(tmp_path, "word"), steps=5)
    (tmp_path / "runs" / "ptb").mkdir(parents=True)
    shutil.copy(run / "latest.h5", tmp_path / "runs" / "ptb" / "best.h5")
    nbest = [("utt1", -10.5, "the quick brown fox"), ("utt1", -10.1, "the brown quick fox"),
             ("utt1", -10.3, "fox the quick brown"), ("utt2", -7.2, "jumps over it."),
             ("utt2", -7.4, "naps over it.")]
    (tmp_path / "nbest.tsv").write_text("".join(f"{u}\t{s}\t{t}\n" for u, s, t in nbest))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                                 f"{os.environ.get('PATH', '')}"}
    subprocess.run(["bash", "-ec", block], cwd=tmp_path, env=env, check=True)
    lm = rnnkit.load(tmp_path / "runs" / "ptb" / "best.h5")
    lm_log10 = lm.score([t for *_, t in nbest]) / math.log(10)
    want = {}
    for (utt, external, text), score in zip(nbest, lm_log10):
        combined = external + 0.8 * score
        if utt not in want or combined > want[utt][0]:
            want[utt] = (combined, text)
    rows = [line.split("\t") for line in (tmp_path / "best.tsv").read_text().splitlines()]
    assert [(u, t) for u, _, t in rows] == [(u, t) for u, (_, t) in sorted(want.items())]
    for u, combined, _ in rows:
        assert float(combined) == pytest.approx(want[u][0], abs=1e-4)   # awk's %.6g
