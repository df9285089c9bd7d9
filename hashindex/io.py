"""Opening any saved index by the kind recorded in its header."""
from __future__ import annotations

import os

from . import _core
from ._base import _Index
from ._validate import mmap_arg
from .flat import FlatIndex
from .ivf import IVFIndex
from .mih import MIHIndex
from .multi_field import MultiFieldIndex

# Header kind name -> class with from_bytes; new index kinds register here.
INDEX_KINDS: dict[str, type[_Index]] = {
    "FlatIndex": FlatIndex, "MIHIndex": MIHIndex, "MultiFieldIndex": MultiFieldIndex, "IVFIndex": IVFIndex,
}


def load(path: str | os.PathLike[str], *, mmap: bool = False, verify: bool | None = None) -> _Index:
    """Reads an index saved by ``index.save(path)``, whatever its kind.

    Raises hashindex.FormatError (a ValueError) for a file that is not a hashindex
    index, is truncated or corrupted, or was written by a newer format version, and
    OSError with its errno (FileNotFoundError, IsADirectoryError, ...) if it cannot be read.

    mmap=True maps the file instead of reading it. FlatIndex and MultiFieldIndex files (format 2)
    are then searched in place: opening reads the header only, so a multi-GB file opens in
    milliseconds and the process's memory grows with the pages searches touch; the OS may drop
    and re-read them. The first change (add, remove, reset) copies the codes into memory (copy on
    write): the file is never written through the mapping, and replacing it with ``save`` is safe
    (the mapping keeps the old contents). IVFIndex scans its lists in place too, and reads their ids
    (its id map; 8 bytes an item, always checked). MIHIndex builds its tables from the mapping in memory,
    as load without mmap does (O(n log n); nothing stays mapped). Format-1 files are copied.
    Since nothing beyond the header is read, the checksum and the ids are not checked unless
    ``verify=True`` (which reads the whole file once); without mmap both are always checked.
    """
    path = os.fspath(path)
    if mmap_arg(mmap):
        mapped = _core.map_file(path)
        kind = mapped.kind(path)
        if kind not in INDEX_KINDS:
            raise _core.FormatError(f"{path}: index kind {kind!r} is not supported by this build")
        return INDEX_KINDS[kind]._from_mapping(mapped, path, verify)
    return loads(_core.read_file(path), source=path)


def loads(data: bytes, *, source: str = "<bytes>") -> _Index:
    """An index from the bytes ``index.to_bytes()`` returned, whatever its kind (checked as load checks
    a file; ``source`` names it in errors)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    kind = _core.peek_kind(data, source)
    if kind not in INDEX_KINDS:
        raise _core.FormatError(f"{source}: index kind {kind!r} is not supported by this build")
    return INDEX_KINDS[kind].from_bytes(data, source=source)
