"""`rnnkit info`: describe an rnnkit HDF5 file, dispatching on its root attribute `format`.

A new kind of file adds one line to DESCRIBERS: its format name and a function that takes the
path and returns the text to print. The module is imported only when such a file is shown.
"""
import importlib

# format attribute -> "module:function(path) -> str"
DESCRIBERS = {
    "rnnkit-corpus": "rnnkit.corpus:describe",
    "rnnkit-checkpoint": "rnnkit.checkpoint:describe",
    "rnnkit-checkpoint": "rnnkit.checkpoint:describe",
}


class InfoError(ValueError):
    """The file cannot be described; the message is one line."""


def file_format(path):
    """The `format` attribute of the HDF5 file at `path` (None when it has none)."""
    import h5py

    try:
        with h5py.File(path, "r") as h5:
            value = h5.attrs.get("format")
    except FileNotFoundError:
        raise InfoError(f"no such file: {path}") from None
    except OSError:
        raise InfoError(f"{path} is not an HDF5 file") from None
    return value.decode() if isinstance(value, bytes) else value


def describe(path):
    """Text describing the rnnkit file at `path`."""
    kind = file_format(path)
    if kind is None:
        raise InfoError(f"{path} is an HDF5 file but not an rnnkit file (no 'format' attribute)")
    if kind not in DESCRIBERS:
        known = ", ".join(sorted(DESCRIBERS))
        raise InfoError(f"{path} has format {kind!r}, which this rnnkit cannot show ({known})")
    module, function = DESCRIBERS[kind].split(":")
    try:
        return getattr(importlib.import_module(module), function)(path)
    except ValueError as err:  # e.g. CorpusError for a newer format version
        raise InfoError(str(err)) from None
    except (KeyError, OSError) as err:  # a damaged or half-written file
        raise InfoError(f"{path}: cannot read this {kind} file: {err}") from None
