"""The archive's codes as one MultiFieldIndex per band of axial levels.

A patient-level query compares a query slice with slices at about its level only, and a scan reads
every code of the index it searches whatever the filter lets through (the codes sit in blocks; a
filter only drops results). Kept apart by level, a query reads the bands near its level: 3 of 10 by
default, a third of the codes (benchmarks/RESULTS.md, "Archive"). Each band is an ordinary index
file; searches merge the bands' one-hit-per-patient lists exactly, ties by id as one index would.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import hashindex

BANDS = 10


class BandedIndex:
    def __init__(self, indexes: list[hashindex.MultiFieldIndex]) -> None:
        self.indexes = indexes

    @classmethod
    def empty(cls, identity: dict[str, Any], bands: int = BANDS) -> BandedIndex:
        fields = {"normal": identity["normal_nbits"], "abnormal": identity["abnormal_nbits"]}
        return cls([hashindex.MultiFieldIndex(fields) for _ in range(bands)])

    @staticmethod
    def files(stem: str, bands: int) -> list[str]:
        return [f"{stem}.b{b}.hx" for b in range(bands)]

    @classmethod
    def load(cls, folder: Path, stem: str, bands: int) -> BandedIndex:
        """The bands' files, mapped (copied into memory at a band's first change)."""
        indexes = [hashindex.load(folder / name, mmap=True) for name in cls.files(stem, bands)]
        for name, index in zip(cls.files(stem, bands), indexes):
            if not isinstance(index, hashindex.MultiFieldIndex):
                raise hashindex.FormatError(f"{folder / name}: holds a {type(index).__name__}, not an archive band")
        return cls(indexes)  # type: ignore[arg-type]

    def save(self, folder: Path, stem: str) -> None:
        for name, index in zip(self.files(stem, len(self.indexes)), self.indexes):
            index.save(folder / name)

    @property
    def fields(self) -> dict[str, int]:
        return self.indexes[0].fields

    def __len__(self) -> int:
        return sum(len(index) for index in self.indexes)

    def add(self, codes: dict[str, np.ndarray], ids: np.ndarray, groups: np.ndarray, bands: np.ndarray) -> None:
        for b in np.unique(bands):
            rows = np.flatnonzero(bands == b)
            self.indexes[b].add({f: c[rows] for f, c in codes.items()}, ids=ids[rows], groups=groups[rows])

    def remove(self, ids: np.ndarray, bands: np.ndarray) -> None:
        for b in np.unique(bands):
            self.indexes[b].remove(ids[bands == b])

    def get(self, ids: np.ndarray, bands: np.ndarray, field: str | None = None) -> Any:
        """Codes of these ids (each in band ``bands[i]``), in the order given."""
        names = [field] if field is not None else list(self.fields)
        out = {f: np.empty((len(ids), self.fields[f] // 8), np.uint8) for f in names}
        for b in np.unique(bands):
            rows = np.flatnonzero(bands == b)
            for f in names:
                out[f][rows] = self.indexes[b].get(ids[rows], f)
        return out[field] if field is not None else out

    def search(self, queries: dict[str, np.ndarray], k: int, weights: dict[str, float],
               allowed: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
        """The k best (distance, id) per query, one per group (patient), over the bands whose
        ``allowed`` ids are not None (an empty array: nothing of that band). The merge is exact: a
        group outside every band's k best is no better than the k-th merged."""
        nq = len(next(iter(queries.values())))
        parts_d, parts_i = [], []
        for index, ids in zip(self.indexes, allowed):
            if ids is None or not len(ids):
                continue
            res = index.search(queries, k, weights=weights, one_per_group=True, allow=ids)
            parts_d.append(res.distances)
            parts_i.append(res.ids)
        if not parts_d:
            return np.full((nq, k), np.inf), np.full((nq, k), -1, np.int64)
        if len(parts_d) == 1:
            return parts_d[0], parts_i[0]
        return np.concatenate(parts_d, axis=1), np.concatenate(parts_i, axis=1)
