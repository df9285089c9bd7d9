"""One shard's append-only log of the changes since its snapshot (see the package docs)."""
from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import _core

LOG_MAGIC = b"HXSHLOG"
LOG_VERSION = 1
LOG_HEADER = struct.Struct("<7sB")  # magic, version
RECORD = struct.Struct("<4sBQQI")  # b"HXLR", op, rows, payload bytes, CRC-32 of the payload
ADD, ADD_GROUPED, REMOVE = 1, 2, 3



class ShardLog:
    """Append-only log of one shard's changes since its snapshot: length-prefixed records with a
    CRC-32 each. A torn last record (a crash mid-write, never acknowledged) is dropped on replay; a
    damaged record with data after it is corruption and raises FormatError."""

    def __init__(self, path: str, sizes: list[int]) -> None:
        self.path = path
        self.sizes = sizes
        self._file: Any = None

    def _encode(self, op: int, ids: np.ndarray, codes: Sequence[np.ndarray], groups: np.ndarray | None) -> bytes:
        parts = [np.ascontiguousarray(ids, dtype=np.int64).tobytes()]
        parts += [np.ascontiguousarray(c, dtype=np.uint8).tobytes() for c in codes]
        if groups is not None:
            parts.append(np.ascontiguousarray(groups, dtype=np.int64).tobytes())
        payload = b"".join(parts)
        return RECORD.pack(b"HXLR", op, len(ids), len(payload), zlib.crc32(payload)) + payload

    def append(self, op: int, ids: np.ndarray, codes: Sequence[np.ndarray] = (),
               groups: np.ndarray | None = None) -> None:
        if self._file is None:
            self._file = open(self.path, "ab")
            if self._file.tell() == 0:
                self._file.write(LOG_HEADER.pack(LOG_MAGIC, LOG_VERSION))
        self._file.write(self._encode(op, ids, codes, groups))
        self._file.flush()
        os.fsync(self._file.fileno())

    def records(self):
        """Yields (op, ids, codes, groups) in order; truncates a torn tail."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        if not data:
            return
        if len(data) < LOG_HEADER.size or data[:7] != LOG_MAGIC:
            raise _core.FormatError(f"{self.path}: not a hashindex shard log")
        version = data[7]
        if version > LOG_VERSION:
            raise _core.FormatError(f"{self.path}: log version {version} is newer than this hashindex reads")
        pos = LOG_HEADER.size
        while pos < len(data):
            torn = pos + RECORD.size > len(data)
            if not torn:
                magic, op, rows, size, crc = RECORD.unpack_from(data, pos)
                end = pos + RECORD.size + size
                torn = end > len(data)
            if torn or zlib.crc32(data[pos + RECORD.size:end]) != crc:
                if torn or end == len(data):  # the last record, cut short by a crash before its fsync
                    self._truncate(pos)
                    return
                raise _core.FormatError(f"{self.path}: damaged record at byte {pos} with records after it")
            if magic != b"HXLR" or op not in (ADD, ADD_GROUPED, REMOVE):
                raise _core.FormatError(f"{self.path}: unknown record {magic!r}/{op} at byte {pos}")
            payload = memoryview(data)[pos + RECORD.size:end]
            yield (op, *self._decode(op, rows, payload))
            pos = end

    def _decode(self, op: int, rows: int, payload: memoryview) -> tuple[np.ndarray, list[np.ndarray], Any]:
        expected = rows * 8 if op == REMOVE else rows * (8 + sum(self.sizes) + (8 if op == ADD_GROUPED else 0))
        if len(payload) != expected:
            raise _core.FormatError(f"{self.path}: record of {rows} rows has {len(payload)} bytes, expected {expected}")
        ids = np.frombuffer(payload, np.int64, rows, 0).copy()
        if op == REMOVE:
            return ids, [], None
        offset, codes = rows * 8, []
        for size in self.sizes:
            codes.append(np.frombuffer(payload, np.uint8, rows * size, offset).reshape(rows, size).copy())
            offset += rows * size
        groups = np.frombuffer(payload, np.int64, rows, offset).copy() if op == ADD_GROUPED else None
        return ids, codes, groups

    def _truncate(self, size: int) -> None:
        with open(self.path, "r+b") as f:
            f.truncate(size)
            f.flush()
            os.fsync(f.fileno())

    def close(self) -> None:
        """Closes the file appends go to (the next append opens it again)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def reset(self) -> None:
        """Empties the log (after a snapshot that holds everything in it has been committed)."""
        self.close()
        with open(self.path, "wb") as f:
            f.write(LOG_HEADER.pack(LOG_MAGIC, LOG_VERSION))
            f.flush()
            os.fsync(f.fileno())
