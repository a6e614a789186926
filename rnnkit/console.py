"""Printing to a reader that may leave: a closed pipe (`rnnkit train ... | head -3`) or a lost
terminal (ssh dropped, the window closed) stops the printing, never the work.

A write to such a stream fails with EPIPE (the pipe's reader exited) or EIO (the terminal hung
up). `silence(stream)` then points the stream's file descriptor at /dev/null, so that every
later write succeeds unseen: ours, a library's, and Python's own flush at exit (which would
otherwise fail again and end the process with status 120).
"""
import errno
import os
import shutil

GONE = (errno.EPIPE, errno.EIO)


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
