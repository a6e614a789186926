"""Opening and reading rnnkit's HDF5 files with one-line errors that name the file and the
dataset: missing, not HDF5, truncated, or damaged (a checksum that fails).
"""
import os

import h5py

from rnnkit.errors import RnnkitError


class DamagedFile(RnnkitError, ValueError):
    """A file that cannot be read as it should (one line)."""


def describe_error(path, err, dataset=None):
    """A one-line reason for an OSError that h5py raised reading `path`."""
    text = str(err)
    where = f"{path}" + (f", dataset {dataset}" if dataset else "")
    if "signature not found" in text:
        return f"{path} is not an HDF5 file"
    if "truncated" in text or "end of file" in text.lower() or "eoa" in text.lower():
        return f"{path} is truncated (shorter than HDF5 expects: cut off while written or copied)"
    if "checksum" in text.lower() or "filter returned failure" in text or "Fletcher" in text:
        return f"{where} is damaged: its checksum does not match (a flipped or lost byte)"
    if isinstance(err, PermissionError):
        return f"cannot read {path}: permission denied"
    first = text.splitlines()[0] if text else type(err).__name__
    return f"{where} cannot be read ({first}); the file may be damaged"


def open_file(path, what="file", **kwargs):
    """h5py.File(path, "r") or DamagedFile with a reason for the user."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DamagedFile(f"no such {what}: {path}")
    if os.path.isdir(path):
        raise DamagedFile(f"{path} is a folder, not a {what}")
    try:
        f = h5py.File(path, "r", **kwargs)
    except OSError as err:
        raise DamagedFile(describe_error(path, err)) from None
    try:
        f.attrs.keys()          # the root's header: HDF5 checks its checksum when it opens it
    except (KeyError, RuntimeError, OSError) as err:
        f.close()
        raise DamagedFile(describe_error(path, err)) from None
    return f


def members(group):
    """[(name, object)] of an HDF5 group, or DamagedFile naming the member whose header cannot
    be read (h5py's items() gives None for it)."""
    out, name = [], None
    try:
        for name in group:
            out.append((name, group[name]))
    except (KeyError, RuntimeError, OSError) as err:
        where = f"{group.name.rstrip('/')}/{name}" if name is not None else group.name
        raise DamagedFile(describe_error(group.file.filename, err, where)) from None
    return out


def read(dataset, selection=()):
    """dataset[selection], or DamagedFile naming the file and the dataset."""
    try:
        return dataset[selection]
    except OSError as err:
        raise DamagedFile(describe_error(dataset.file.filename, err, dataset.name)) from None


def datasets(f):
    """Every dataset of an open file, or DamagedFile when its metadata cannot be walked (HDF5
    checks the metadata's own checksums on the way)."""
    found = []
    try:
        f.visititems(lambda name, obj: found.append(obj) if isinstance(obj, h5py.Dataset)
                     else None)
    except (RuntimeError, OSError) as err:
        raise DamagedFile(describe_error(f.filename, err)) from None
    return found


def verify(f):
    """Read every dataset of an open file, chunk by chunk, so each checksum is checked.
    Returns (datasets read, datasets with a checksum); raises DamagedFile at the first bad
    one."""
    checked = 0
    found = datasets(f)
    for ds in found:
        checked += bool(ds.fletcher32)
        if ds.chunks is None or not ds.shape:
            read(ds)
            continue
        for chunk in ds.iter_chunks():
            read(ds, chunk)
    return len(found), checked
