"""The archive's codes as one MultiFieldIndex per band of axial levels.

A patient-level query compares a query slice with slices at about its level only, and a scan reads
every code of the index it searches whatever the filter lets through (the codes sit in blocks; a
filter only drops results). Kept apart by level, a query reads the bands near its level: 3 of 10 by
default, a third of the codes (benchmarks/RESULTS.md, "Archive"). Each band is an ordinary index
file; searches merge the bands' one-hit-per-patient lists exactly, ties by id as one index would.

A sharded archive (``Archive.create(..., shards=N)``) keeps each band as a
``hashindex.distributed.ShardedMultiFieldIndex``: a folder of shard snapshots and a manifest per
band and generation, searched by Ray actors. Committed folders are never changed: a writer works on
a copy whose snapshots are hard links (a shard maps its snapshot and copies it at its first change).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

import hashindex

BANDS = 10
WORK = "work"  # the stem of a sharded archive's writer's copy (removed when the write ends)


def _link_snapshot(source: str, target: str) -> None:
    if source.endswith(".hx"):  # written once, never changed in place
        os.link(source, target)
    else:
        shutil.copy2(source, target)


class BandedIndex:
    def __init__(self, indexes: list[Any], shards: int = 0) -> None:
        self.indexes, self.shards = indexes, shards

    @classmethod
    def empty(cls, identity: dict[str, Any], bands: int = BANDS, shards: int = 0,
              folder: Path | None = None) -> BandedIndex:
        """A new index; sharded, it keeps its shards' files in ``folder``'s writer's copy."""
        fields = {"normal": identity["normal_nbits"], "abnormal": identity["abnormal_nbits"]}
        if not shards:
            return cls([hashindex.MultiFieldIndex(fields) for _ in range(bands)])
        from hashindex.distributed import ShardedMultiFieldIndex

        assert folder is not None
        cls.remove_work(folder)
        return cls([ShardedMultiFieldIndex(fields, shards, directory=folder / name)
                    for name in cls.files(WORK, bands, shards)], shards)

    @staticmethod
    def files(stem: str, bands: int, shards: int = 0) -> list[str]:
        return [f"{stem}.b{b}.{'shards' if shards else 'hx'}" for b in range(bands)]

    @classmethod
    def load(cls, folder: Path, stem: str, bands: int, shards: int = 0, *, writable: bool = False) -> BandedIndex:
        """The bands' files, mapped (copied into memory at a band's first change). Sharded: the
        committed folders' shards, or with ``writable`` a writer's copy of them."""
        names = cls.files(stem, bands, shards)
        if shards:
            return cls(cls._load_sharded(folder, names, writable), shards)
        indexes = [hashindex.load(folder / name, mmap=True) for name in names]
        for name, index in zip(names, indexes):
            if not isinstance(index, hashindex.MultiFieldIndex):
                raise hashindex.FormatError(f"{folder / name}: holds a {type(index).__name__}, not an archive band")
        return cls(indexes)

    @classmethod
    def _load_sharded(cls, folder: Path, names: list[str], writable: bool) -> list[Any]:
        from hashindex import distributed

        for name in names:
            if not (folder / name).is_dir():
                raise FileNotFoundError(f"{folder / name}: a band of the sharded index is missing")
        if writable:
            cls.remove_work(folder)
            work = cls.files(WORK, len(names), 1)
            # Snapshots linked, logs left out: a reader's log is empty, and a shared one would carry
            # the writer's changes back into the committed folder.
            for name, copy in zip(names, work):
                shutil.copytree(folder / name, folder / copy, ignore=shutil.ignore_patterns("*.log"),
                                copy_function=_link_snapshot)
            names = work
        indexes: list[Any] = []
        try:
            for name in names:
                indexes.append(distributed.load(folder / name))
                if not isinstance(indexes[-1], distributed.ShardedMultiFieldIndex):
                    raise hashindex.FormatError(f"{folder / name}: holds a {type(indexes[-1]).__name__}, "
                                                "not an archive band")
        except BaseException:
            for index in indexes:
                index.close()
            raise
        return indexes

    @staticmethod
    def remove_work(folder: Path) -> None:
        """A writer's copy (one that was killed left it; one that ends removes it)."""
        for p in folder.glob(f"{WORK}.b*.shards"):
            shutil.rmtree(p, ignore_errors=True)

    def save(self, folder: Path, stem: str) -> None:
        for name, index in zip(self.files(stem, len(self.indexes), self.shards), self.indexes):
            index.save(folder / name)

    def close(self) -> None:
        """Stops a sharded index's actors (their files stay); nothing to do for files mapped."""
        if self.shards:
            for index in self.indexes:
                index.close()

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
