"""One process at a time in a run folder.

`rnnkit train` holds an exclusive lock (flock) on RUN_DIR/.lock while it runs, with its PID and
host written inside. A second run into the same folder is refused with a line naming the
holder; a lock left by a killed process is free (the kernel releases a dead process's locks),
so the next run simply takes it over.
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


class RunLock:
    def __init__(self, run_dir):
        self.path = Path(run_dir) / NAME
        self.fd = None

    def acquire(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
            os.close(fd)
            who = f"PID {holder[0]}" + (f" on {holder[1]}" if len(holder) > 1 else "") \
                if holder else "another process"
            raise Busy(f"{self.path.parent} is in use by {who}; wait for it to finish, or stop "
                       f"it (it checkpoints and exits on Ctrl-C or SIGTERM)") from None
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP):  # no locks on this filesystem
                return self
            raise
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
