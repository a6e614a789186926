"""Input files for `rnnkit preprocess`: finding them, and reading them in blocks.

Files are read in fixed-size blocks so memory stays flat however large the input. Text is decoded
with an incremental decoder, which carries a multi-byte character split across two blocks over to
the next block, and we keep the byte offset so a decoding error can name the exact byte.
"""
import codecs
import glob
import os

from rnnkit.errors import RnnkitError

BLOCK = 8 << 20          # bytes read at a time
SNIFF = 8192             # a file is text if its first SNIFF bytes hold no NUL byte (as git does)


# byte order marks, and the encoding that reads a text after one (UTF-32 LE's starts as UTF-16's)
BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"))


class InputError(RnnkitError, ValueError):
    """Bad input that the user can fix; the message is one line."""


def bom_hint(head):
    """The end of an error message for a text whose first bytes `head` are a byte order mark
    (or for a text decoded as UTF-8 that starts with U+FEFF), else ""."""
    if isinstance(head, str):
        head = codecs.BOM_UTF8 if head.startswith("\ufeff") else b""
    for mark, encoding in BOMS:
        if head.startswith(mark):
            return f"; it starts with a byte order mark: read it with --encoding {encoding}"
    return ""


def stamp(path):
    """What changes when a file is written: its size, modification time and inode."""
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ino


def is_text(path, wide=False):
    """No NUL byte in the file's first SNIFF bytes (else binary, left out of folders and
    globs); `wide`: an encoding whose text holds NULs (UTF-16, UTF-32): every file is text."""
    try:
        with open(path, "rb") as f:
            return wide or b"\0" not in f.read(SNIFF)
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror}") from None


def _walk(folder, wide, skipped):
    """Text files under `folder`, recursively, in sorted path order (as a glob's '**' gives
    them); hidden entries are skipped, and so are linked folders (a link may loop)."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            path = os.path.join(root, name)
            if not name.startswith(".") and os.path.isfile(path):
                (found if is_text(path, wide) else skipped).append(path)
    return sorted(found)


def find_inputs(patterns, encoding="utf-8", skipped=None):
    """Expand files, folders (recursively, text files only) and globs into a list of paths;
    the binary files left out are added to `skipped`.

    Order: as given, each folder or glob in sorted path order. A file named twice is kept once.
    """
    wide = b"\0" in "\n".encode(check_encoding(encoding))   # UTF-16, UTF-32: NULs are text
    skipped = [] if skipped is None else skipped
    paths = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            found = _walk(pattern, wide, skipped)
            if not found:
                raise InputError(f"folder {pattern} has no text files")
        elif os.path.isfile(pattern):
            found = [pattern]
        elif glob.has_magic(pattern):
            found = []
            for match in sorted(glob.glob(pattern, recursive=True)):
                if os.path.isdir(match):
                    found += _walk(match, wide, skipped)
                elif os.path.isfile(match):
                    (found if is_text(match, wide) else skipped).append(match)
            if not found:
                raise InputError(f"no text file matches {pattern}")
        elif os.path.exists(pattern):
            raise InputError(f"{pattern} is not a file or folder")
        elif os.path.islink(pattern):
            raise InputError(f"{pattern} is a symbolic link to nothing (a loop, or its target "
                             f"is gone)")
        else:
            raise InputError(f"no such file or folder: {pattern}")
        paths += found
    seen, unique = set(), []
    for path in paths:
        key = os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique


def check_encoding(encoding):
    """The canonical codec name, or InputError for an unknown or non-text codec."""
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise InputError(f"unknown encoding {encoding!r}") from None
    if not getattr(info, "_is_text_encoding", True):
        raise InputError(f"{encoding!r} is not a text encoding")
    return info.name


def read_blocks(path, block=BLOCK):
    try:
        f = open(path, "rb")
    except OSError as err:
        raise InputError(f"cannot read {path}: {err.strerror}") from None
    with f:
        while True:
            try:
                data = f.read(block)
            except OSError as err:
                raise InputError(f"cannot read {path}: {err.strerror}") from None
            if not data:
                return
            yield data


# encodings in which a byte below 0x80 is that ASCII character whatever comes before it
ASCII_SAFE = ("utf-8", "ascii", "iso8859-1")


def read_text(path, encoding, errors, block=BLOCK, on_bytes=None, ascii_bytes=False):
    """Yield `path` decoded to str, block by block; `on_bytes(data)` sees each raw block first.
    With `ascii_bytes`, a block that is all ASCII in an encoding of ASCII_SAFE, with nothing
    carried over from the block before, comes as the bytes themselves: the same characters,
    without the cost of decoding.

    Under errors='strict' an invalid byte raises InputError naming the file and byte offset.
    """
    decoder = codecs.getincrementaldecoder(encoding)(errors)
    ascii_bytes = ascii_bytes and codecs.lookup(encoding).name in ASCII_SAFE
    offset = 0  # bytes of the file handed to the decoder so far
    blocks = read_blocks(path, block)
    while True:
        data = next(blocks, None)
        if on_bytes is not None and data is not None:
            on_bytes(data)
        pending = len(decoder.getstate()[0])  # undecoded bytes carried from the previous block
        if ascii_bytes and data and not pending and data.isascii():
            offset += len(data)
            yield data
            continue
        try:
            text = decoder.decode(data or b"", final=data is None)
        except UnicodeDecodeError as err:
            at = offset - pending + err.start
            bad = " ".join(f"0x{b:02x}" for b in err.object[err.start:err.end])
            hint = bom_hint(data or b"") if at == 0 else ""
            raise InputError(
                f"{path}: invalid {encoding} at byte {at} ({bad}): {err.reason}"
                + (hint or "; use --errors replace, another --encoding, or --level byte")) \
                from None
        except UnicodeError as err:     # a codec's own complaint (utf-16 without its mark, ...)
            raise InputError(f"{path}: not valid {encoding}: {err}") from None
        if data is None:
            if text:
                yield text
            return
        offset += len(data)
        if text:
            yield text
