"""Opening and reading rnnkit's HDF5 files with one-line errors that name the file and the
dataset: missing, not HDF5, truncated, or damaged (a checksum that fails).
"""
import hashlib
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


# Strings of variable length take no HDF5 filter, so no fletcher32: such a dataset carries the
# sha256 of its strings in this attribute instead (a word vocabulary, a BPE tokenizer).
DIGEST = "sha256"


def _digest(value):
    """sha256 of one string or a 1-D array of them (str or bytes), as UTF-8, NUL between; of
    a table (a structured array), of its fields' values row by row, numbers in decimal."""
    if getattr(getattr(value, "dtype", None), "names", None):
        value = [v if isinstance(v, (str, bytes)) else str(v.item() if hasattr(v, "item")
                                                           else v)
                 for row in value.tolist() for v in row]
    items = [value] if isinstance(value, (str, bytes)) else list(value)
    return hashlib.sha256(b"\0".join(v if isinstance(v, bytes) else v.encode("utf-8")
                                      for v in items)).hexdigest()


def write_text(group, name, value):
    """A dataset of UTF-8 text (one string or a 1-D array of them) with its sha256."""
    ds = group.create_dataset(name, data=value, dtype=h5py.string_dtype("utf-8"))
    ds.attrs[DIGEST] = _digest(value)
    return ds


def write_table(group, name, rows):
    """A dataset of a structured array with text fields (no filters take them) and its
    sha256."""
    ds = group.create_dataset(name, data=rows)
    ds.attrs[DIGEST] = _digest(rows)
    return ds


def read_table(dataset):
    """A table's rows, checked as read_text checks text."""
    value = read(dataset)
    _check(dataset, value)
    return value


def _check(dataset, value):
    stored = dataset.attrs.get(DIGEST)
    if stored is not None and _digest(value) != (stored.decode() if isinstance(stored, bytes)
                                                 else stored):
        raise DamagedFile(f"{dataset.file.filename}, dataset {dataset.name} is damaged: its "
                          f"checksum does not match (a flipped or lost byte)")


def read_text(dataset):
    """A text dataset's value as str (or an array of str), checked against its sha256 where
    it has one (files from before it have none); DamagedFile naming it otherwise."""
    value = read(dataset)
    _check(dataset, value)
    if isinstance(value, bytes):
        return value.decode("utf-8")
    return dataset.asstr()[()] if dataset.shape else value


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
        checked += bool(ds.fletcher32) or DIGEST in ds.attrs
        if DIGEST in ds.attrs:
            (read_table if ds.dtype.names else read_text)(ds)
            continue
        if ds.chunks is None or not ds.shape:
            read(ds)
            continue
        for chunk in ds.iter_chunks():
            read(ds, chunk)
    return len(found), checked
