"""What makes a file an rnnkit checkpoint: its format name and version, and opening one with
that check. Here, at the foundation, so that the corpus layer (`preprocess --vocab-from
CHECKPOINT`) reads a checkpoint's vocabulary without the training layer; the layout and the
rest of reading and writing are rnnkit/training/checkpoint.py's."""
from rnnkit import h5
from rnnkit.errors import RnnkitError
from rnnkit.version import __version__

FORMAT = "rnnkit-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(RnnkitError, ValueError):
    """A file that is not a readable rnnkit checkpoint (the message is one line)."""


def open_checkpoint(path):
    """Open `path` read-only and check it is an rnnkit checkpoint; raises CheckpointError."""
    path = str(path)
    try:
        f = h5.open_file(path, "checkpoint")
    except h5.DamagedFile as err:
        raise CheckpointError(str(err)) from None
    fmt = f.attrs.get("format", "")
    fmt = fmt.decode() if isinstance(fmt, bytes) else fmt
    if fmt != FORMAT:
        f.close()
        hint = " (a corpus: give it as CORPUS, and a checkpoint here)" \
            if fmt == "rnnkit-corpus" else ""
        raise CheckpointError(f"{path} is not an rnnkit checkpoint (format attribute is "
                              f"{fmt!r}, expected {FORMAT!r}){hint}")
    version = int(f.attrs.get("format_version", 0))
    if version > FORMAT_VERSION:
        f.close()
        raise CheckpointError(f"{path}: checkpoint format version {version} is newer than "
                              f"this rnnkit ({__version__}) reads ({FORMAT_VERSION}); upgrade")
    return f
