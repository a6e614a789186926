"""The kernel cache's key (rnnkit/kernels/cache.py) is the kernels' code: an edit to a
docstring or a comment keeps it, so a run after one loads every kernel it compiled before but
those of the edited file (Numba's own check); an edit to the code of a helper the kernels call,
or of a module of rnnkit they import, gives a new key (a fresh cache folder); an edit to code
the kernels do not use keeps it."""
import os
import shutil

import pytest

from rnnkit.kernels import cache


@pytest.fixture
def package(tmp_path):
    pkg = tmp_path / "rnnkit"
    shutil.copytree(cache.PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    return pkg


def edit(path, old, new):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_docstrings_and_comments_keep_the_key_code_does_not(package):
    base = cache.key(package)
    assert base == cache.key(cache.PACKAGE)
    blocks = package / "kernels" / "cpu" / "blocks.py"
    edit(blocks, '"""Bounds of block i', '"""The bounds of block i')          # a docstring
    edit(blocks, "# Element loops written out", "# Element loops, written out")    # comment
    edit(blocks, "\n\n\ndef parts_for", "\n\n\n\ndef parts_for")                # blank line
    edit(package / "kernels" / "cpu" / "lstm.py", '"""LSTM layer', '"""The LSTM layer')
    assert cache.key(package) == base
    edit(blocks, "MIN_STREAMS, MIN_ROWS = 8, 256", "MIN_STREAMS, MIN_ROWS = 8, 255")
    changed = cache.key(package)
    assert changed != base
    edit(package / "cells.py", '"lstm", 4,', '"lstm", 4 ,')                   # spacing
    assert cache.key(package) == changed
    edit(package / "cells.py", "gate_bias=((1, 1.0),)", "gate_bias=((1, 2.0),)")
    assert cache.key(package) != changed                # the kernels import cells.py


def test_code_the_kernels_do_not_use_keeps_the_key(package):
    assert package / "training" / "loop.py" not in cache.sources(package)
    assert package / "cells.py" in cache.sources(package)
    base = cache.key(package)
    edit(package / "training" / "loop.py", "MAX_ROLLBACKS = 3", "MAX_ROLLBACKS = 4")
    assert cache.key(package) == base


def test_the_key_is_remembered_until_a_file_changes(package, tmp_path, monkeypatch):
    base = tmp_path / "cache"
    first = cache._known_key(str(base), package)
    assert first == cache.key(package) and (base / "keys.json").exists()
    monkeypatch.setattr(cache, "key", lambda package: pytest.fail("computed again"))
    assert cache._known_key(str(base), package) == first
    monkeypatch.undo()
    loop = package / "training" / "loop.py"
    os.utime(loop, ns=(loop.stat().st_atime_ns, loop.stat().st_mtime_ns + 10**9))
    calls = []
    monkeypatch.setattr(cache, "key", lambda package: calls.append(1) or "fresh")
    assert cache._known_key(str(base), package) == "fresh" and calls == [1]
