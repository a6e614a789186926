"""Printing to a reader that may leave: a closed pipe (`rnnkit train ... | head -3`) or a lost
terminal (ssh dropped, the window closed) stops the printing, never the work.

A write to such a stream fails with EPIPE (the pipe's reader exited) or EIO (the terminal hung
up). `silence(stream)` then points the stream's file descriptor at /dev/null, so that every
later write succeeds unseen: ours, a library's, and Python's own flush at exit (which would
otherwise fail again and end the process with status 120).
"""
import errno
import io
import os
import shutil

GONE = (errno.EPIPE, errno.EIO)
# what makes standard error unwritable for good: no reader, no room, no file
LOST = GONE + (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EBADF, errno.ESTALE)


def reader_gone(err):
    """Whether OSError `err` says that nobody reads the stream any more."""
    return isinstance(err, OSError) and err.errno in GONE


def silence(stream):
    """Send the rest of `stream`'s output to /dev/null (when it has a file descriptor)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def width(stream, default=80):
    """Columns of the terminal behind `stream` (`default` when it is not one)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns or default
    except (AttributeError, OSError, ValueError):
        return shutil.get_terminal_size((default, 24)).columns


class _Wrapped(io.TextIOBase):
    """A text stream that writes through to `stream`."""

    def __init__(self, stream):
        super().__init__()
        self.stream = stream

    def writable(self):
        return True

    def fileno(self):
        return self.stream.fileno()

    def isatty(self):
        return self.stream.isatty()

    @property
    def encoding(self):
        return self.stream.encoding

    @property
    def buffer(self):
        return self.stream.buffer


class Diagnostics(_Wrapped):
    """Standard error, whose failure (a full disk or quota, a lost terminal, a reader gone)
    stops the printing, never the work: the stream goes to /dev/null and the command goes on,
    its exit status saying what it produced (a training run killed by its log's full disk
    lost the steps since its last checkpoint)."""

    gone = False

    def write(self, text):
        if not self.gone:
            try:
                return self.stream.write(text)
            except OSError as err:
                self._lost(err)
        return len(text)

    def flush(self):
        if not self.gone:
            try:
                self.stream.flush()
            except OSError as err:
                self._lost(err)

    def isatty(self):
        return not self.gone and self.stream.isatty()

    def _lost(self, err):
        if err.errno not in LOST:
            raise err
        self.gone = True
        silence(self.stream)


class Product(_Wrapped):
    """Standard output of a command whose product it is: a failed write names it ("standard
    output: No space left on device")."""

    def write(self, text):
        try:
            return self.stream.write(text)
        except OSError as err:
            raise _named(err) from None

    def flush(self):
        try:
            self.stream.flush()
        except OSError as err:
            raise _named(err) from None


def _named(err):
    return type(err)(err.errno, err.strerror, "standard output") if err.errno else err


class ClosedOutput(io.TextIOBase):
    """Standard output closed at launch (`>&-`, some cron set-ups). A command whose product is
    what it prints (eval, score, generate without -o, info, --version) fails at its first write
    with one line; one that only reports progress (train, preprocess, export) goes on unseen."""

    strict = True
    hint = ""           # how to write the product elsewhere, where the command can

    def writable(self):
        return True

    def write(self, text):
        if self.strict and text:
            raise OSError(errno.EBADF, "standard output is closed: nothing printed" + self.hint)
        return len(text)


def fill_closed(streams):
    """Give each standard stream that Python found closed at launch (None) a stand-in, and its
    file descriptor /dev/null: a file opened later must not take descriptor 1, where a library's
    printf would write into it."""
    import sys

    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        if name not in streams or getattr(sys, name) is not None:
            continue
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        setattr(sys, name, ClosedOutput() if name == "stdout" else
                open(fd, "r" if fd == 0 else "w", encoding="utf-8", closefd=False))
