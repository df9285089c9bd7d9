"""Opening any saved index by the kind recorded in its header."""
from __future__ import annotations

import os

from . import _core
from ._base import _Index
from .flat import FlatIndex
from .mih import MIHIndex
from .multi_field import MultiFieldIndex

# Header kind name -> class with from_bytes; new index kinds register here.
INDEX_KINDS: dict[str, type[_Index]] = {
    "FlatIndex": FlatIndex, "MIHIndex": MIHIndex, "MultiFieldIndex": MultiFieldIndex,
}


def load(path: str | os.PathLike[str]) -> _Index:
    """Reads an index saved by ``index.save(path)``, whatever its kind.

    Raises hashindex.FormatError (a ValueError) for a file that is not a hashindex
    index, is truncated or corrupted, or was written by a newer format version, and
    OSError with its errno (FileNotFoundError, IsADirectoryError, ...) if it cannot be read.
    """
    path = os.fspath(path)
    data = _core.read_file(path)
    kind = _core.peek_kind(data, path)
    if kind not in INDEX_KINDS:
        raise _core.FormatError(f"{path}: index kind {kind!r} is not supported by this build")
    return INDEX_KINDS[kind].from_bytes(data, source=path)
