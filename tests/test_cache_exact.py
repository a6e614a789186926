"""Exact runs whatever the kernel cache holds: a run that compiles everything on an empty cache
(starting on the serial builds while a worker compiles the threaded ones), the same run on a
warm cache (threaded builds from the first step), and a run stopped on the cold cache and
resumed on the warm one give the same losses, bit for bit (float32, two threads)."""
import json
import os
import subprocess
import sys

import pytest

from rnnkit.training import compile_workers
from rnnkit.tools.load import load_model
from tests.tiny_run import make_corpus

ARGS = ["--hidden", "32", "--embed", "16", "--layers", "2", "--batch-size", "16",
        "--seq-len", "16", "--threads", "2", "--log-every", "1", "--eval-every", "6",
        "--dropout", "0.1", "-q"]


def train(cache, *args):
    env = {k: v for k, v in os.environ.items() if k != "RNNKIT_NO_CACHE"}
    env["NUMBA_CACHE_DIR"] = str(cache)
    result = subprocess.run([sys.executable, "-m", "rnnkit", "train", *map(str, args)],
                            env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    return result.stderr


def losses(run):
    records = [json.loads(line) for line in open(run / "metrics.jsonl")]
    return [float(r[k]).hex() for r in records for k in ("train_loss", "val_loss") if k in r]


@pytest.mark.slow               # cold compiles, in fresh processes
@pytest.mark.skipif(os.cpu_count() < 2, reason="needs two cores for the threaded builds")
def test_cold_warm_and_across(tmp_path):
    corpus = make_corpus(tmp_path)
    cold, other = tmp_path / "cold-cache", tmp_path / "other-cache"
    log = train(cold, corpus, "-o", tmp_path / "a", *ARGS, "--max-steps", 12)
    assert "compiling" in log
    # the threaded builds, as the background worker makes them, so the next run uses them
    model, _, _ = load_model(tmp_path / "a" / "latest.h5")
    spec = compile_workers.spec(model, 16, 16, "adam", "parallel", partition=2)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cold))
    subprocess.run([sys.executable, "-m", "rnnkit.training.compile_workers", json.dumps(spec)],
                   env=env, check=True, timeout=900)
    log = train(cold, corpus, "-o", tmp_path / "b", *ARGS, "--max-steps", 12)
    assert "compiling" not in log
    train(other, corpus, "-o", tmp_path / "c", *ARGS, "--max-steps", 6)
    train(cold, "--resume", tmp_path / "c", "--max-steps", 12, "-q")
    assert losses(tmp_path / "a") == losses(tmp_path / "b") == losses(tmp_path / "c")
    # after the sampling worker, generating from the run compiles nothing: no new cache file
    subprocess.run([sys.executable, "-m", "rnnkit.training.compile_workers",
                    json.dumps(dict(spec, group="sampling"))], env=env, check=True, timeout=900)
    files = sorted(p.name for p in cold.rglob("*.nb*"))
    subprocess.run([sys.executable, "-m", "rnnkit", "generate", tmp_path / "a" / "latest.h5",
                    "--prime", "line 1", "--length", "20", "--threads", "2"], env=env,
                   check=True, capture_output=True, timeout=900)
    assert sorted(p.name for p in cold.rglob("*.nb*")) == files
