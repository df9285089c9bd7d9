"""What every index kind shares, mirroring the compiled classes: ``_Index`` (ids, removal,
persistence, pickling: what FlatIndex, MIHIndex and MultiFieldIndex all have) and
``_SingleFieldIndex`` (one code per item: FlatIndex and MIHIndex).

Subclasses set ``_core_class`` (the compiled index) and implement their searches.
"""
from __future__ import annotations

import os
from typing import Any, TypeVar

import numpy as np

from . import _core
from ._validate import INT64_MAX, codes_arg, ids_arg, int_arg, mmap_arg

T = TypeVar("T", bound="_Index")


class _Index:
    _index: Any  # the compiled index
    _core_class: Any = None
    _max_codes: int | None = None  # a kind's capacity, checked before codes are copied

    # -- size -------------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        """Number of codes stored (same as ``len(index)``)."""
        return len(self._index)

    def __len__(self) -> int:
        return len(self._index)

    @property
    def memory_bytes(self) -> int:
        """Bytes held in memory: codes (not those a mapped file holds), ids (none while they are
        0..n-1: default ids, no removal), groups if any, and an MIH index's substring tables."""
        return int(self._index.memory_bytes)

    @property
    def next_id(self) -> int:
        """The id the next ``add`` without ids gives its first code: one past the largest id ever
        added (removals do not lower it)."""
        return int(self._index.next_id)

    def __contains__(self, id: object) -> bool:
        if isinstance(id, (bool, np.bool_)) or not isinstance(id, (int, np.integer)):
            return False
        return 0 <= int(id) <= INT64_MAX and int(id) in self._index

    # -- content ------------------------------------------------------------------------------
    def remove(self, ids: np.ndarray | int) -> None:
        """Removes the codes with these ids; raises KeyError (and removes nothing) if one is absent."""
        self._index.remove(ids_arg(ids, "ids"))

    def ids(self) -> np.ndarray:
        """Ids of all stored codes (int64, in storage order, which removals change)."""
        return self._index.ids()

    def reset(self) -> None:
        """Removes every code."""
        self._index.reset()

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the index to ``path`` atomically (temporary file, fsync, rename).

        The file holds magic bytes, a format version, the index kind, the parameters
        and a CRC-32; read it back with :func:`hashindex.load`. Raises OSError with its
        errno (FileNotFoundError, PermissionError, ...) if it cannot be written; the
        previous file, if any, is then untouched.
        """
        self._index.write(os.fspath(path))

    def to_bytes(self) -> bytes:
        """The index in file format, as bytes."""
        return self._index.to_bytes()

    @classmethod
    def from_bytes(cls: type[T], data: bytes, *, source: str = "<bytes>") -> T:
        """Rebuilds an index from :meth:`to_bytes` output; raises hashindex.FormatError if invalid."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data: expected bytes, got {type(data).__name__}")
        self = cls.__new__(cls)
        self._index = cls._core_class.from_bytes(bytes(data), source)
        self._init_state()
        return self

    @classmethod
    def load(cls: type[T], path: str | os.PathLike[str], *, mmap: bool = False, verify: bool | None = None) -> T:
        """Reads a file written by :meth:`save`; FormatError if it holds another kind or is damaged.
        ``mmap`` and ``verify`` as in :func:`hashindex.load`."""
        path = os.fspath(path)
        if mmap_arg(mmap):
            mapped = _core.map_file(path)
            kind, wanted = mapped.kind(path), cls._core_class.__name__
            if kind != wanted:
                raise _core.FormatError(f"{path}: holds a {kind}, not a {wanted}; use hashindex.load() to open any kind")
            return cls._from_mapping(mapped, path, verify)
        return cls.from_bytes(_core.read_file(path), source=path)

    @classmethod
    def _from_mapping(cls: type[T], mapped: Any, path: str, verify: bool | None) -> T:
        self = cls.__new__(cls)
        self._index = cls._core_class.from_mapping(mapped, path, bool(verify))
        self._init_state()
        return self

    def _init_state(self) -> None:
        """Per-object Python state beyond the compiled index (none by default)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self).from_bytes, (self.to_bytes(),))


class _ProbingIndex(_Index):
    """An index that reports what each search did (MIHIndex, IVFIndex, MultiFieldIndex)."""

    # The names of the values the core returns, in its order (bind_index.h's stats_tuple).
    _stats_fields: tuple[str, ...] = ("queries", "by_mih", "by_scan", "candidates", "hits", "buckets", "max_radius",
                                      "tail", "probe_scale", "scan_ns_per_word")

    def _init_state(self) -> None:
        super()._init_state()
        self._stats: tuple = ()

    @property
    def last_search_stats(self) -> dict[str, Any]:
        """What the most recent search (or range_search) call did, from any thread.

        queries; by_mih / by_scan: how many were answered by probing the tables or by a
        scan (cost model); candidates: codes whose full distance was computed; hits: those
        within the threshold at the time; buckets: table look-ups; max_radius: largest
        substring radius probed; tail: unindexed codes scanned per query; probe_scale and
        scan_ns_per_word: the cost model's learned state when the call began (measured /
        modelled probing time; scan cost per code word).
        """
        return dict(zip(self._stats_fields, self._stats))

    def _keep(self, stats: tuple) -> None:
        self._stats = stats  # one reference replaced: a reader sees the old tuple or the new one, whole


class _SingleFieldIndex(_Index):
    """An index of one code per item (FlatIndex, MIHIndex)."""

    @property
    def nbits(self) -> int:
        """Bits per code."""
        return self._index.nbits

    @property
    def code_size(self) -> int:
        """Bytes per code (nbits // 8)."""
        return self._index.code_size

    def __repr__(self) -> str:
        return f"{type(self).__name__}(nbits={self.nbits}, ntotal={self.ntotal})"

    def add(self, codes: np.ndarray, ids: np.ndarray | None = None) -> None:
        """Adds codes, uint8 of shape (n, code_size) or one code of shape (code_size,).

        ids: int64 (n,), non-negative and not already present; by default ids continue
        after the largest id added so far (0, 1, 2, ... for a new index). All or nothing:
        on error the index is unchanged.
        """
        if self._max_codes is not None and isinstance(codes, np.ndarray) and codes.ndim == 2:
            if len(self) + codes.shape[0] > self._max_codes:  # before codes_arg may copy a huge array
                raise ValueError(f"codes: a {type(self).__name__} holds at most {self._max_codes} codes; it has "
                                 f"{len(self)}, adding {codes.shape[0]}")
        codes = codes_arg(codes, self.code_size, "codes")
        if ids is not None:
            ids = ids_arg(ids, "ids", count=codes.shape[0])
        self._index.add(codes, ids)

    def get(self, ids: np.ndarray | int) -> np.ndarray:
        """Stored codes for these ids, uint8 (len(ids), code_size); KeyError if one is absent."""
        return self._index.get(ids_arg(ids, "ids"))

    def reconstruct(self, id: int) -> np.ndarray:
        """Stored code of one id, uint8 (code_size,)."""
        return self.get(int_arg(id, "id", minimum=0))[0]

    # -- shared argument handling ----------------------------------------------------------
    def _init_state(self) -> None:
        super()._init_state()
        self._code_size = self._index.code_size  # fixed for the index's life; read by every search

    def _queries(self, queries: np.ndarray) -> np.ndarray:
        return codes_arg(queries, self._code_size, "queries")

    def _radius(self, radius: object) -> int:
        return min(int_arg(radius, "radius", minimum=0), self.nbits)
