"""Installs with the tools people have: an offline-style `pip install --no-build-isolation`
into a fresh venv, and the project's metadata as the setuptools that a venv brings reads it
(Python 3.10 and 3.11: setuptools 65, which rejected `license = "MIT"`)."""
import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLASSIFIER = "Classifier: License :: OSI Approved :: MIT License"


def fresh_venv(path, *options):
    """The python of a new venv at `path`; the test is skipped where none can be made."""
    try:
        subprocess.run([sys.executable, "-m", "venv", *options, str(path)], check=True,
                       capture_output=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as err:
        pytest.skip(f"cannot create a venv here: {err}")
    return path / "bin" / "python"


def source(dest):
    """What a build reads, copied (a build writes build/ and *.egg-info beside it)."""
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    for folder in ("rnnkit", "cli", "data"):
        shutil.copytree(ROOT / folder, dest / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def run(*args, **kw):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600,
                          **kw)


def test_installs_offline_without_build_isolation(tmp_path):
    """A fresh venv without pip, given this environment's pip, setuptools and wheel (when
    there is one) as a cluster image provides them, and nothing else: no index, no build
    isolation. rnnkit installs into the venv with its CLI package, its data and its
    metadata."""
    py = fresh_venv(tmp_path / "venv", "--without-pip")
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in ("pip", "setuptools", "wheel", "packaging"):    # wheel: before setuptools 70.1
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        base = Path(dist.locate_file(""))
        for top in {Path(f).parts[0] for f in dist.files or ()} - {".."}:
            if (base / top).exists() and not (tools / top).exists():
                os.symlink(base / top, tools / top)     # its packages and its dist-info
    purelib = run(py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    (Path(purelib.stdout.strip()) / "build-tools.pth").write_text(f"{tools}\n")
    (tmp_path / "src").mkdir()
    src = source(tmp_path / "src")
    result = run(py, "-m", "pip", "install", "--no-index", "--no-deps", "--no-build-isolation",
                 src)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    check = run(py, "-c", "import importlib.metadata as m, importlib.util as u, rnnkit\n"
                "assert u.find_spec('rnnkit.cli.main') and u.find_spec('rnnkit.data')\n"
                "print(rnnkit.__file__)\n"
                "print(m.distribution('rnnkit').read_text('METADATA'))", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    where, metadata = check.stdout.split("\n", 1)
    assert Path(where).is_relative_to(tmp_path / "venv")      # installed, not this checkout
    assert CLASSIFIER in metadata and "Name: rnnkit" in metadata
    assert (tmp_path / "venv" / "bin" / "rnnkit").exists()
    data = run(py, "-c", "import importlib.resources as r\n"
               "print(r.files('rnnkit.data').joinpath('demo.toml').is_file())", cwd=tmp_path)
    assert data.stdout.strip() == "True", data.stderr


def test_the_setuptools_a_venv_brings_reads_the_metadata(tmp_path):
    """The project's metadata as the setuptools of a fresh venv writes it (egg_info: the step
    that needs no `wheel`, which such a venv lacks; none from Python 3.12 on, nothing to check
    there)."""
    py = fresh_venv(tmp_path / "venv")
    version = run(py, "-c", "import setuptools; print(setuptools.__version__)")
    if version.returncode:
        pytest.skip("this Python's venv brings no setuptools")
    (tmp_path / "src").mkdir()
    src = source(tmp_path / "src")
    (tmp_path / "meta").mkdir()
    result = run(py, "-c", "from setuptools import setup; setup()", "egg_info", "--egg-base",
                 tmp_path / "meta", cwd=src)
    assert result.returncode == 0, f"setuptools {version.stdout.strip()}: " + \
        result.stderr[-3000:]
    info = (tmp_path / "meta" / "rnnkit.egg-info" / "PKG-INFO").read_text()
    assert CLASSIFIER in info and "Name: rnnkit" in info
