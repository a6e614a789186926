"""The on-disk cache of compiled kernels, shared by both backends' kernels (cpu/, cuda/).

Numba's cache keys a function on its own file only: it misses edits in the modules the
function calls. So the cache lives in a folder named by a key over the code the kernels are
built from: every module under rnnkit/kernels/ and every module of rnnkit that those import
(but the locks this module takes), read as Python syntax trees without docstrings, so that
comments, docstrings and blank lines change nothing (Numba still recompiles the functions of a file that changed at all, by its own
check of the file's time and size); plus the Numba versions. The compile flags are code in
those modules (cpu/compile.py, cuda/launch.py), so the key covers them too. The folder's name
ends in the CPU the kernels compile for (cpu/target.py, e.g. "avx2-1f0e9d8c"): Numba's own
index keys on it too, but a look for a kernel in the cache (in_cache) would not.

RNNKIT_NO_CACHE=1 turns the cache off (every process compiles what it runs).
"""
import ast
import contextlib
import hashlib
import importlib.metadata
import json
import os
from pathlib import Path

import numba

from rnnkit.kernels.cpu import target   # first: it sets the CPU before Numba's config is used
from rnnkit.lock import flock

CACHE = os.environ.get("RNNKIT_NO_CACHE", "") == ""
PACKAGE = Path(__file__).resolve().parents[1]           # rnnkit/


def code(tree):
    """The code of a module (its syntax tree, ast.parse): the tree without docstrings, as text
    (no line numbers, no comments)."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def _imports(tree):
    """Modules of rnnkit (dotted names) that a module's tree imports, anywhere in it."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.update(f"{node.module}.{a.name}" for a in node.names)
            out.add(node.module)
    return {name for name in out if name.startswith("rnnkit.")}


def _file(name, package):
    """The file of module `name` under `package` (rnnkit/), or None (not a module: a name)."""
    rel = Path(*name.split(".")[1:])
    for path in (package / rel.with_suffix(".py"), package / rel / "__init__.py"):
        if path.is_file():
            return path
    return None


def sources(package=PACKAGE):
    """Every file the kernels are built from, rnnkit/kernels/ and what it imports of rnnkit, with
    its syntax tree: {path: tree}. Each file parsed once: on an empty cache, key() is on the
    first step's path."""
    todo = sorted((package / "kernels").rglob("*.py"))
    trees = {}
    while todo:
        path = todo.pop()
        if path in trees:
            continue
        trees[path] = ast.parse(path.read_text(encoding="utf-8"))
        if path == package / "kernels" / "cache.py":
            continue                # its locks are no kernel's code
        for name in _imports(trees[path]):
            found = _file(name, package)
            if found is not None and found not in trees:
                todo.append(found)
    return dict(sorted(trees.items()))


def key(package=PACKAGE):
    """The cache folder's name: a hash of the kernels' code (sources()) and Numba's versions."""
    digest = hashlib.sha256(numba.__version__.encode())
    try:
        digest.update(importlib.metadata.version("numba-cuda").encode())
    except importlib.metadata.PackageNotFoundError:
        pass
    for path, tree in sources(package).items():
        digest.update(str(path.relative_to(package)).encode() + b"\0")
        digest.update(code(tree).encode() + b"\0")
    return digest.hexdigest()[:16]


def _known_key(base, package=PACKAGE):
    """key(), remembered in BASE/keys.json by the times and sizes of rnnkit's files: reading
    the syntax trees takes a few tenths of a second, looking at the files a millisecond."""
    stamps = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        st = path.stat()
        stamps.update(f"{path}\0{st.st_mtime_ns}\0{st.st_size}\0".encode())
    stamp = stamps.hexdigest()[:16]
    memo = os.path.join(base, "keys.json")
    try:
        with open(memo, encoding="utf-8") as f:
            known = json.load(f)
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if not isinstance(known.get(stamp), str):
        # a few trees (worktrees, branches) sharing the folder each keep theirs
        known = {**dict(list(known.items())[-7:]), stamp: key(package)}
        try:
            os.makedirs(base, exist_ok=True)
            tmp = f"{memo}.{os.getpid()}.tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(known, f)
            os.replace(tmp, memo)
        except OSError:
            pass                    # a read-only cache: compute it each time
    return known[stamp]


def _folder():
    base = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rnnkit", "numba")
    return os.path.join(base, f"{_known_key(base)}-{target.TAG}")


if CACHE:
    numba.config.CACHE_DIR = _folder()


@contextlib.contextmanager
def cache_lock(name, wait=True):
    """An exclusive lock on the file `name` in the cache folder, for compiling that processes
    sharing the cache take in turn. Yields True once held (with wait: after its holder lets
    go, its kernels then in the cache), False while another holds it (without wait). No cache,
    a read-only one or a filesystem without locks: True at once, each process on its own."""
    fd = None
    if CACHE:
        try:
            os.makedirs(numba.config.CACHE_DIR, exist_ok=True)
            fd = os.open(os.path.join(numba.config.CACHE_DIR, name), os.O_RDWR | os.O_CREAT,
                         0o644)
        except OSError:
            fd = None
    try:
        held = True
        if fd is not None:
            try:
                held = flock(fd, wait)
            except OSError:
                held = True
        yield held
    finally:
        if fd is not None:
            os.close(fd)            # closing releases the lock


def in_cache(qualname):
    """Whether the cache holds a compiled `module.function` of these kernels (a look for its
    index file), e.g. "lstm._forward_parallel"."""
    return CACHE and any(Path(numba.config.CACHE_DIR).glob(f"**/{qualname}-*.nbi"))
