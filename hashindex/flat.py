"""FlatIndex: exact exhaustive Hamming search."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from . import _core
from ._results import RangeSearchResult, SearchResult
from ._validate import codes_arg, ids_arg, int_arg, nbits_arg, threads_arg


class FlatIndex:
    """Exact k-NN and range search over packed binary codes by Hamming distance.

    Codes are rows of ``nbits // 8`` uint8 bytes (see :func:`hashindex.pack_bits`).
    Every code is compared with every query by SIMD XOR + popcount (AVX-512
    VPOPCNTDQ, AVX2 or scalar, chosen at run time). Results are exact and
    deterministic: sorted by distance, ties by id.

    Methods that scan release the GIL and use all available threads unless
    ``threads=`` says otherwise; a single query is split across threads too.
    """

    def __init__(self, nbits: int) -> None:
        self._index = _core.FlatIndex(nbits_arg(nbits))

    # -- size -------------------------------------------------------------------------------
    @property
    def nbits(self) -> int:
        """Bits per code."""
        return self._index.nbits

    @property
    def code_size(self) -> int:
        """Bytes per code (nbits // 8)."""
        return self._index.code_size

    @property
    def ntotal(self) -> int:
        """Number of codes stored (same as ``len(index)``)."""
        return len(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, id: object) -> bool:
        return isinstance(id, (int, np.integer)) and not isinstance(id, bool) and int(id) in self._index

    def __repr__(self) -> str:
        return f"FlatIndex(nbits={self.nbits}, ntotal={self.ntotal})"

    # -- content ------------------------------------------------------------------------------
    def add(self, codes: np.ndarray, ids: np.ndarray | None = None) -> None:
        """Adds codes, uint8 of shape (n, code_size) or one code of shape (code_size,).

        ids: int64 (n,), non-negative and not already present; by default ids continue
        after the largest id added so far (0, 1, 2, ... for a new index). All or nothing:
        on error the index is unchanged.
        """
        codes = codes_arg(codes, self.code_size, "codes")
        if ids is not None:
            ids = ids_arg(ids, "ids", count=codes.shape[0])
        self._index.add(codes, ids)

    def remove(self, ids: np.ndarray | int) -> None:
        """Removes the codes with these ids; raises KeyError (and removes nothing) if one is absent."""
        self._index.remove(ids_arg(ids, "ids"))

    def get(self, ids: np.ndarray | int) -> np.ndarray:
        """Stored codes for these ids, uint8 (len(ids), code_size); KeyError if one is absent."""
        return self._index.get(ids_arg(ids, "ids"))

    def reconstruct(self, id: int) -> np.ndarray:
        """Stored code of one id, uint8 (code_size,)."""
        return self.get(int_arg(id, "id", minimum=0))[0]

    def ids(self) -> np.ndarray:
        """Ids of all stored codes (int64, in storage order, which removals change)."""
        return self._index.ids()

    def reset(self) -> None:
        """Removes every code."""
        self._index.reset()

    # -- search ------------------------------------------------------------------------------
    def search(self, queries: np.ndarray, k: int, *, threads: int | None = None) -> SearchResult:
        """The k nearest codes of each query: int32 distances and int64 ids, both (nq, k).

        Sorted by (distance, id). When fewer than k codes exist, rows are padded with
        distance ``hashindex.PAD_DISTANCE`` and id -1. A 1-D query gives one row.
        """
        queries = codes_arg(queries, self.code_size, "queries")
        k = int_arg(k, "k", minimum=1)
        return SearchResult(*self._index.search(queries, k, threads_arg(threads)))

    def range_search(self, queries: np.ndarray, radius: int, *, threads: int | None = None) -> RangeSearchResult:
        """Every code within Hamming distance ``radius`` (inclusive: d <= radius) of each query."""
        queries = codes_arg(queries, self.code_size, "queries")
        radius = int_arg(radius, "radius", minimum=0)
        return RangeSearchResult(*self._index.range_search(queries, min(radius, self.nbits), threads_arg(threads)))

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Writes the index to ``path`` atomically (temporary file, fsync, rename).

        The file holds magic bytes, a format version, the parameters and a CRC-32;
        read it back with :func:`hashindex.load`.
        """
        self._index.write(os.fspath(path))

    def to_bytes(self) -> bytes:
        """The index in file format, as bytes."""
        return self._index.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "<bytes>") -> FlatIndex:
        """Rebuilds an index from :meth:`to_bytes` output; raises hashindex.FormatError if invalid."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data: expected bytes, got {type(data).__name__}")
        self = cls.__new__(cls)
        self._index = _core.FlatIndex.from_bytes(bytes(data), source)
        return self

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> FlatIndex:
        """Reads a file written by :meth:`save`; FormatError if it holds another kind or is damaged."""
        path = os.fspath(path)
        return cls.from_bytes(_core.read_file(path), source=path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (FlatIndex.from_bytes, (self.to_bytes(),))
