"""The demo's built-in corpus and a shrunken run of the whole demo."""
import os

import pytest

from rnnkit.training import checkpoint
from rnnkit.demo import main, stdlib_files


def test_stdlib_corpus_is_deterministic_and_capped():
    files = stdlib_files(200_000)
    assert files == stdlib_files(200_000) and files
    assert all(f.endswith(".py") and "site-packages" not in f for f in files)
    sizes = [os.path.getsize(f) for f in files]
    assert sum(sizes[:-1]) < 200_000 <= sum(sizes) or len(files) == len(stdlib_files(10 ** 12))


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path, capsys):
    main(str(tmp_path / "demo"), train_time="3s", corpus_bytes=100_000, hidden=16, length=50)
    out, err = capsys.readouterr()
    assert out.startswith("def ") and len(out) > 40
    assert "1/3" in err and "2/3" in err and "3/3" in err
    assert checkpoint.load(tmp_path / "demo" / "best.h5").step > 0
    main(str(tmp_path / "demo"), train_time="1s", corpus_bytes=50_000, hidden=16, length=5)
    assert "replacing the previous demo run" in capsys.readouterr().err
