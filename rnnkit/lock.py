"""Exclusive locks on files (flock), for whatever processes take in turn: one process at a time
in a run folder (RunLock), one process compiling a kernel that others will load (the kernel
cache's locks, rnnkit/kernels/cache.py). The kernel releases a dead process's locks, so a lock
left by a killed process is simply free. This module imports nothing of rnnkit but its errors,
so every layer may use it.

`rnnkit train` holds RUN_DIR/.lock while it runs, with its PID and host written inside. A
second run into the same folder is refused with a line naming the holder.
"""
import errno
import fcntl
import os
import socket
from pathlib import Path

from rnnkit.errors import TrainError

NAME = ".lock"


class Busy(TrainError):
    """Another process holds the run folder (one line, naming it)."""


def flock(fd, wait=True):
    """Lock the open file `fd` exclusively: True once held (with wait: after its holder lets
    go); False while another process holds it (without wait). On a filesystem without locks:
    True at once, each process on its own. Closing the file releases the lock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as err:
        if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP):
            return True
        raise
    return True


class RunLock:
    def __init__(self, run_dir):
        self.path = Path(run_dir) / NAME
        self.fd = None

    def acquire(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            held = flock(fd, wait=False)
        except OSError:
            os.close(fd)
            raise
        if not held:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
            os.close(fd)
            who = f"PID {holder[0]}" + (f" on {holder[1]}" if len(holder) > 1 else "") \
                if holder else "another process"
            raise Busy(f"{self.path.parent} is in use by {who}; wait for it to finish, or stop "
                       f"it (it checkpoints and exits on Ctrl-C or SIGTERM)")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        self.fd = fd
        return self

    def release(self):
        if self.fd is not None:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass
            os.close(self.fd)  # closing drops the lock
            self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
