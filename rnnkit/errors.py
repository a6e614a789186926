"""The one exception type the command line turns into a single line on stderr.

Every error a user can cause or fix (bad input, a damaged file, a full disk, a busy run
folder) derives from RnnkitError and carries a message of one line that names the file and
says what to do. The command group (cli/main.py) prints it and exits with 1 (in an MPI job,
where every rank meets the same error, rank 0 alone prints it); anything else that escapes is
a bug, reported as one line too unless RNNKIT_DEBUG is set.
"""
import numbers


class RnnkitError(Exception):
    """An error for the user; str(err) is one line."""

    quiet = False       # set on the ranks of an MPI job whose rank 0 prints the same error
    shared = False      # every rank of an MPI job stops with it (none waits for another)


class TrainError(RnnkitError):
    """Training cannot start or go on."""


class ArgumentError(RnnkitError, ValueError):
    """A value given to a function of the Python API (or a command's option) that it cannot
    use."""


class ArgumentTypeError(RnnkitError, TypeError):
    """A value of the wrong type given to a function of the Python API."""


def check_flag(name, value):
    """ArgumentTypeError unless `value` is a bool (numpy's too): force="no" is not False."""
    if type(value).__name__ not in ("bool", "bool_"):
        raise ArgumentTypeError(f"{name} must be True or False, not {type(value).__name__} "
                                f"({value!r})")


def check_count(name, value, least):
    """An int >= `least` (ArgumentTypeError, ArgumentError)."""
    check_number(name, value, numbers.Integral)
    if value < least:
        raise ArgumentError(f"{name} must be >= {least}, not {value}")


def check_text(name, value):
    """A str or None (an encoding's or a mode's name)."""
    if value is not None and not isinstance(value, str):
        raise ArgumentTypeError(f"{name} must be a str, not {type(value).__name__} ({value!r})")


def check_number(name, value, kind=numbers.Real):
    """ArgumentTypeError unless `value` is a number of `kind` (numbers.Real or
    numbers.Integral; numpy's count, bool does not)."""
    if isinstance(value, bool) or not isinstance(value, kind):
        what = "an int" if kind is numbers.Integral else "a number"
        raise ArgumentTypeError(f"{name} must be {what}, not {type(value).__name__} "
                                f"({value!r})")
