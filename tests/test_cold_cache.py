"""generate, score and eval on a cold kernel cache say that they compile first (as train
does) instead of keeping silent for seconds; on a warm cache they say nothing."""
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from rnnkit.backends.cpu import CPUBackend
from rnnkit.cli.main import main
from rnnkit.training.runtime import Runtime
from tests.tiny_run import make_corpus, make_run

# "this machine", or with NUMBA_CPU_NAME=haswell (the AVX2 suite) "haswell (avx2)"
NOTE = f"compiling the lstm kernels for {CPUBackend().compiles_for()}"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cold")
    (folder / "lines.txt").write_text("the fox\nline 3: it naps\n")
    return make_run(folder, make_corpus(folder), steps=2)


def rnnkit(cache, *args):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    return subprocess.run([sys.executable, "-m", "rnnkit", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("command", [["generate", "--length", "3", "--seed", "1"],
                                     ["score", "{lines}"]])
def test_an_empty_cache_says_it_compiles_and_a_warm_one_does_not(run, tmp_path, command):
    ck, lines = run / "latest.h5", run.parent / "lines.txt"
    args = [command[0], ck, *[a.format(lines=lines) for a in command[1:]]]
    cold = rnnkit(tmp_path / "cache", *args)
    assert cold.returncode == 0, cold.stderr
    assert cold.stderr.count(NOTE) == 1 and cold.stderr.index(NOTE) == 0, cold.stderr
    warm = rnnkit(tmp_path / "cache", *args)
    assert warm.returncode == 0 and NOTE not in warm.stderr, warm.stderr
    assert warm.stdout == cold.stdout


@pytest.mark.parametrize("command", [["generate", "--length", "3", "--seed", "1"],
                                     ["score", "{lines}"], ["eval", "--text", "{lines}"]])
@pytest.mark.parametrize("cached", [False, True])
def test_the_note_comes_first_and_only_when_cold(run, monkeypatch, command, cached):
    """The three commands' wiring, with the cache's answer imposed: the note first on stderr,
    nothing on stdout; -q keeps score and eval quiet."""
    monkeypatch.setattr(Runtime, "compiling", lambda self, model, sampling=False: not cached)
    lines = run.parent / "lines.txt"
    args = [command[0], str(run / "latest.h5"), *[a.format(lines=lines) for a in command[1:]]]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (NOTE in result.stderr) is not cached and NOTE not in result.stdout
    if not cached:
        assert result.stderr.startswith(NOTE)
    if command[0] != "generate":
        assert NOTE not in CliRunner().invoke(main, args + ["-q"]).stderr
