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

RNNKIT_NO_CACHE=1 turns the cache off (every process compiles what it runs). So does a folder
that cannot be written, with a note (Numba would otherwise fall back on __pycache__ beside
the sources, keyed by each file alone: the stale kernels this key exists to avoid). A damaged
entry is compiled again and a cache that cannot take more (a full disk) is left as it is, each
with a note, instead of failing the run. Each entry carries a checksum of its bytes: Numba's
have none, and a flipped byte in an entry's machine code ran (and crashed the process).
"""
import ast
import contextlib
import hashlib
import importlib.metadata
import json
import os
import sys
import tempfile
import zlib
from pathlib import Path

import numba

from rnnkit.kernels.cpu import target   # first: it sets the CPU before Numba's config is used
from rnnkit.lock import flock

# RNNKIT_NO_CACHE=1 (any value but empty, 0, false, no, off) turns the cache off
CACHE = os.environ.get("RNNKIT_NO_CACHE", "").strip().lower() in ("", "0", "false", "no", "off")
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
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(xdg):      # the XDG spec: a relative value is to be ignored
        xdg = os.path.expanduser("~/.cache")
    base = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(xdg, "rnnkit", "numba")
    return os.path.join(base, f"{_known_key(base)}-{target.TAG}")


def _unwritable(folder):
    """Why the cache cannot be written in `folder` (None: it can)."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        return err.strerror or str(err)
    return None


_noted = set()


def note(text):
    """A note on stderr about the cache, once per process."""
    if text not in _noted:
        _noted.add(text)
        print(f"note: {text}", file=sys.stderr, flush=True)


def _tolerant(cls):
    """Numba's cache class, made to treat a damaged entry as a miss (the kernel is compiled
    again and the entry rewritten) and a failed write as a kernel not cached: Numba raised
    both (a truncated file: UnpicklingError on every run; a full disk: OSError)."""
    load, save = cls.load_overload, cls.save_overload

    def load_overload(self, sig, target_context):
        try:
            return load(self, sig, target_context)
        except Exception as err:       # noqa: BLE001  any damage: compile again
            note(f"a damaged entry in the kernel cache ({type(err).__name__}) is compiled "
                 f"again: {numba.config.CACHE_DIR}")
            return None

    def save_overload(self, sig, data):
        for attempt in range(2):
            try:
                save(self, sig, data)
                return
            except OSError as err:     # a full disk, a quota: the kernel runs, uncached
                why = err.strerror or str(err)
                break
            except Exception as err:   # noqa: BLE001  a damaged index: once more without it
                why = type(err).__name__
                with contextlib.suppress(OSError, AttributeError):
                    os.unlink(self._cache_file._index_path)
        note(f"the kernel cache cannot be written ({why}); kernels compiled now are not kept: "
             f"{numba.config.CACHE_DIR}")

    cls.load_overload, cls.save_overload = load_overload, save_overload


MARK = b"rnnkit-crc32"


class DamagedEntry(Exception):
    """An entry whose bytes do not match its checksum."""


def _checked(cls):
    """Numba's cache file class, made to write each entry with a CRC-32 of its bytes after
    them (Numba's reader stops where its data ends) and to refuse an entry without one or
    whose bytes differ (load_overload then compiles it again)."""
    load = cls._load_data

    def _save_data(self, name, data):
        blob = self._dump(data)
        with self._open_for_write(self._data_path(name)) as f:
            f.write(blob + MARK + zlib.crc32(blob).to_bytes(4, "little"))

    def _load_data(self, name):
        with open(self._data_path(name), "rb") as f:
            raw = f.read()
        body, tail = raw[:-len(MARK) - 4], raw[-len(MARK) - 4:]
        if tail != MARK + zlib.crc32(body).to_bytes(4, "little"):
            raise DamagedEntry(name)
        return load(self, name)

    cls._save_data, cls._load_data = _save_data, _load_data


_private = []                       # this process's own folder for kernels, once made


def _private_folder():
    """A folder for kernels that only this process uses (removed at its exit)."""
    if not _private:
        import atexit
        import shutil

        _private.append(tempfile.mkdtemp(prefix="rnnkit-kernels-"))
        atexit.register(shutil.rmtree, _private[0], True)
    return _private[0]


def _one_locator(caching):
    """Numba's locators cut to the cache folder's: where it cannot write a source folder's
    subfolder there, Numba tried the next locator, which caches in __pycache__ beside the
    sources, keyed by each file alone (stale kernels after an edit in another module, as
    tests/test_cache_faults.py shows). Such kernels go to a folder of this process's own."""
    base = caching.CacheImpl._locator_classes[0]
    assert "UserProvided" in base.__name__, base       # the folder of NUMBA_CACHE_DIR

    class Locator(base):
        @classmethod
        def from_function(cls, py_func, py_file):
            found = super().from_function(py_func, py_file)
            if found is not None or not numba.config.CACHE_DIR:
                return found
            note(f"part of the kernel cache cannot be written; kernels compiled now are not "
                 f"kept: {numba.config.CACHE_DIR}")
            own = cls(py_func, py_file)
            own._cache_path = os.path.join(_private_folder(),
                                           os.path.basename(own.get_cache_path()))
            own.ensure_cache_path()
            return own

    caching.CacheImpl._locator_classes = [Locator]


def protect(caching):
    """The above on a caching module's classes, once: Numba's (here) and numba-cuda's own
    copy of them (kernels/cuda/launch.py)."""
    if not getattr(caching.Cache, "_rnnkit", False):
        _tolerant(caching.Cache)
        _checked(caching.IndexDataCacheFile)
        _one_locator(caching)
        caching.Cache._rnnkit = True


UNUSABLE = None                     # why the cache is off although asked for, or None
if CACHE:
    numba.config.CACHE_DIR = _folder()
    UNUSABLE = _unwritable(numba.config.CACHE_DIR)
    if UNUSABLE:
        CACHE = False
        note(f"the kernel cache {numba.config.CACHE_DIR} cannot be written ({UNUSABLE}); "
             f"kernels are compiled for this process only (NUMBA_CACHE_DIR chooses the folder)")
    else:
        from numba.core import caching
        protect(caching)


def kept():
    """What becomes of kernels compiled now, for the notes that say they are being compiled."""
    return "they are cached for later runs" if CACHE else \
        "the kernel cache is off, so later runs compile them again"


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


def in_cache(qualname, dtype=None):
    """Whether the cache holds a compiled `module.function` of these kernels (a look for its
    index file), e.g. "lstm._forward_parallel"; with `dtype`, a build for arrays of that type
    (a float64 run after float32 ones compiles)."""
    if not CACHE:
        return False
    for index in Path(numba.config.CACHE_DIR).glob(f"**/{qualname}-*.nbi"):
        if dtype is None or _holds_arrays_of(index, dtype):
            return True
    return False


def _holds_arrays_of(index, dtype):
    """Whether Numba's index file `index` lists a build taking arrays of `dtype`: their type
    names ("array(float64, 2d, C)") are in its bytes, read as bytes (never loaded). The
    kernels looked for take arrays of the model's dtype alone; an unreadable file: True, the
    name alone says it, as before."""
    try:
        return f"array({dtype}, ".encode() in index.read_bytes()
    except OSError:
        return True
