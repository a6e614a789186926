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
        return h5py.File(path, "r", **kwargs)
    except OSError as err:
        raise DamagedFile(describe_error(path, err)) from None


def read(dataset, selection=()):
    """dataset[selection], or DamagedFile naming the file and the dataset."""
    try:
        return dataset[selection]
    except OSError as err:
        raise DamagedFile(describe_error(dataset.file.filename, err, dataset.name)) from None


def verify(f):
    """Read every dataset of an open file, chunk by chunk, so each checksum is checked.
    Returns (datasets read, datasets with a checksum); raises DamagedFile at the first bad
    one."""
    datasets = []
    f.visititems(lambda name, obj: datasets.append(obj) if isinstance(obj, h5py.Dataset)
                 else None)
    checked = 0
    for ds in datasets:
        checked += bool(ds.fletcher32)
        if ds.chunks is None or not ds.shape:
            read(ds)
            continue
        for chunk in ds.iter_chunks():
            read(ds, chunk)
    return len(datasets), checked
