"""Writing files so that a crash, a kill or a full disk never leaves a half-written or lost one.

Every output is written under a temporary name in its own folder, `.NAME.PID-HOST.XXXXXXXX.tmp`
(PID: the writer's; HOST: a tag of its machine), flushed, fsynced and renamed over the final
name; then the folder is fsynced. A reader, or a crash at any moment, sees the old file or the
new one, never a part. A writer killed with -9 (or a machine that went down) leaves its
temporary behind; the next writer into the same folder removes the temporaries whose PID no
longer runs on this machine (`clean_stale`). Another machine's temporaries, in a folder shared
over the network, are left to it: its PIDs say nothing here.

A full disk is one line: the path, the space needed and the space free (WriteError). Outputs
follow the umask like any file a program creates.
"""
import contextlib
import errno
import hashlib
import os
import secrets
import signal
import socket
import stat
import threading
from pathlib import Path

from rnnkit.errors import RnnkitError

SUFFIX = ".tmp"
HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]   # this machine's tag
_cleaned = set()                 # folders this process has cleaned already


class WriteError(RnnkitError, OSError):
    """An output could not be written (one line: what, where, and the space it needs)."""


def human(n):
    """Bytes as a short number with a unit: 950 B, 12.3 kB, 4.5 MB, 1.2 GB."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0


def free_bytes(folder):
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def full_disk(path, needed=None):
    """The WriteError for a full disk at `path` (needed: bytes the whole output takes)."""
    folder = os.path.dirname(os.path.abspath(path))
    free = free_bytes(folder)
    parts = []
    if needed is not None:
        parts.append(f"it needs {human(needed)}")
    if free is not None:
        parts.append(f"{human(free)} free in {folder}")
    detail = f" ({', '.join(parts)})" if parts else ""
    return WriteError(f"cannot write {path}: the disk is full{detail}; free some space and "
                      f"run again")


def write_error(path, err, needed=None):
    """A one-line WriteError for an OSError raised while writing `path`."""
    code = getattr(err, "errno", None)
    text = str(err)
    if code in (errno.ENOSPC, errno.EDQUOT) or "No space left" in text or "quota" in text:
        return full_disk(path, needed)
    reason = getattr(err, "strerror", None) or text.splitlines()[0] if text else "error"
    return WriteError(f"cannot write {path}: {reason}")


def check_space(path, needed):
    """Raise the full-disk WriteError before writing `needed` bytes at `path` if they cannot
    fit (what a filesystem reserves for root aside)."""
    free = free_bytes(os.path.dirname(os.path.abspath(path)) or ".")
    if free is not None and needed > free:
        raise full_disk(path, needed)


def temporary_name(path):
    path = Path(path)
    return path.parent / f".{path.name}.{os.getpid()}-{HOST}.{secrets.token_hex(4)}{SUFFIX}"


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_folder(folder):
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems cannot fsync a folder; the rename is still atomic
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic(path, needed=None):
    """Yield a temporary path next to `path`; when the block ends without error the file
    there (written and closed by the block) replaces `path`, else it is removed. OSError
    becomes WriteError. `needed`: the bytes the output will take, for the message."""
    with atomic_all([path], needed) as (tmp,):
        yield tmp


# The signals a command stops on (rnnkit/training/stop_signals.py), held across atomic_all's
# renames.
HELD = {getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP", "SIGUSR1") if
        hasattr(signal, n)}


@contextlib.contextmanager
def held_signals():
    """The stop signals wait until the block ends, then act as they would have. Held at
    Python's level (a handler that notes them): a mask on this thread would not do, as
    another thread may take the signal and Python then runs its handler here at once."""
    if threading.current_thread() is not threading.main_thread():
        yield                       # only the main thread may set handlers (and runs them)
        return
    pending, before = [], {}
    for sig in HELD:
        old = signal.getsignal(sig)
        if old is not None:         # None: a handler set outside Python, left as it is
            before[sig] = signal.signal(sig, lambda n, frame: pending.append(n))
    try:
        yield
    finally:
        for sig, old in before.items():
            signal.signal(sig, old)
        for sig in pending:
            signal.raise_signal(sig)


@contextlib.contextmanager
def atomic_all(paths, needed=None):
    """atomic for files that belong together (a model's weights and its JSON): yields a
    temporary path for each; once the block has written them all, each is synced, and they
    replace `paths` back to back with the stop signals held, so that an interrupt leaves the
    old files or the new ones, never one of each (a rename of one file could otherwise land
    while the other was still syncing)."""
    paths = [Path(p) for p in paths]
    for folder in {os.path.abspath(p.parent) for p in paths} - _cleaned:
        _cleaned.add(folder)
        clean_stale(folder)
    tmps = [temporary_name(p) for p in paths]
    current = paths[0]
    try:
        yield tmps
        for tmp, current in zip(tmps, paths):
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(tmp, 0o666 & ~_umask())
        with held_signals():
            for tmp, current in zip(tmps, paths):
                os.replace(tmp, current)
    except BaseException as err:
        for tmp in tmps:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        if isinstance(err, OSError) and not isinstance(err, WriteError):
            raise write_error(current, err, needed) from None
        raise
    for folder in {p.parent for p in paths}:
        fsync_folder(folder)


def write_bytes(path, data):
    """Write `data` to `path` atomically, refusing at once when it cannot fit."""
    check_space(path, len(data))
    with atomic(path, needed=len(data)) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)


def write_text(path, text):
    write_bytes(path, text.encode("utf-8"))


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _writer(name):
    """The PID that wrote temporary `name` on this machine, else None (not a temporary of
    ours, or another machine's). A name without HOST (rnnkit before HOST) counts as ours."""
    if not (name.startswith(".") and name.endswith(SUFFIX)):
        return None
    parts = name[1:-len(SUFFIX)].rsplit(".", 2)
    if len(parts) != 3 or len(parts[2]) != 8:
        return None
    pid, _, host = parts[1].partition("-")
    if not pid.isdigit() or host not in ("", HOST):
        return None
    return int(pid)


def stale_temporaries(folder):
    """Temporaries in `folder` whose writer no longer runs: (path, pid) pairs."""
    out = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return out
    for entry in entries:
        pid = _writer(entry.name)
        if pid is not None and not _pid_alive(pid):
            out.append((Path(entry.path), pid))
    return out


def clean_stale(folder):
    """Remove the temporaries that killed writers left in `folder`; returns the ones removed
    as (path, size in bytes, pid)."""
    removed = []
    for path, pid in stale_temporaries(folder):
        try:
            size = path.stat().st_size
            path.unlink()
        except OSError:
            continue
        removed.append((path, size, pid))
    return removed


def check_output(path, force, inputs=()):
    """An output path we may write: not one of the inputs; with force, only a regular file is
    replaced (never a device, FIFO, symlink or folder). Raises RnnkitError."""
    if str(path).endswith(("/", os.sep)):   # Path() drops the slash: NAME/ would write NAME
        raise RnnkitError(f"output {path} names a folder; give a file name")
    path = Path(path)
    for source in inputs:
        with contextlib.suppress(OSError):
            if os.path.samefile(source, path):
                raise RnnkitError(f"output {path} is also an input ({source}); choose another "
                                  f"output name")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as err:
        raise RnnkitError(f"cannot use {path} as output: {err.strerror}") from None
    if stat.S_ISDIR(st.st_mode):
        raise RnnkitError(f"output {path} is a folder; give a file name")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a symbolic link" if stat.S_ISLNK(st.st_mode) else
                "a FIFO" if stat.S_ISFIFO(st.st_mode) else
                "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
                "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
        raise RnnkitError(f"output {path} is {kind}; rnnkit only replaces regular files")
    if not force:
        raise RnnkitError(f"{path} exists; use --force to overwrite it")
