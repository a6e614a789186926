"""The one exception type the command line turns into a single line on stderr.

Every error a user can cause or fix (bad input, a damaged file, a full disk, a busy run
folder) derives from RnnkitError and carries a message of one line that names the file and
says what to do. The command group (cli/main.py) prints it and exits with 1 (in an MPI job,
where every rank meets the same error, rank 0 alone prints it); anything else that escapes is
a bug, reported as one line too unless RNNKIT_DEBUG is set.
"""


class RnnkitError(Exception):
    """An error for the user; str(err) is one line."""

    quiet = False       # set on the ranks of an MPI job whose rank 0 prints the same error


class TrainError(RnnkitError):
    """Training cannot start or go on."""
