"""IndexBinaryShards and IndexBinaryReplicas of hashindex.compat.faiss (see there): several of its
indexes searched as one."""
from __future__ import annotations

import numpy as np

from .. import _core
from .._validate import codes_arg, ids_arg, int_arg
from ._faiss_classes import IDSelector, IndexBinary, SearchParameters


class _Composite(IndexBinary):
    """Sub-indexes searched one after another, results merged by (distance, id)."""

    def __init__(self, d: int | None = None, threaded: bool = False) -> None:
        super().__init__(8 if d is None else d)
        if d is None:  # as faiss: the first sub-index gives d
            self.d = self.code_size = 0
        self.threaded = threaded  # kept for faiss's signature; sub-indexes run one after another
        self._subs: list[IndexBinary] = []

    def _attach(self, index: IndexBinary) -> None:
        if not isinstance(index, IndexBinary):
            raise TypeError(f"index: expected a hashindex.compat.faiss index, got {type(index).__name__}")
        if self.d == 0:
            self.d, self.code_size = index.d, index.code_size
        if index.d != self.d:
            raise ValueError(f"index: expected d={self.d}, got d={index.d}")
        if any(sub is index for sub in self._subs):
            raise ValueError("index: already in the collection")
        self._subs.append(index)

    def count(self) -> int:
        return len(self._subs)

    def addIndex(self, index: IndexBinary) -> None:  # noqa: N802 - faiss's name (ThreadedIndex)
        self._attach(index)

    def removeIndex(self, index: IndexBinary) -> None:  # noqa: N802
        self._subs = [sub for sub in self._subs if sub is not index]

    def at(self, i: int) -> IndexBinary:
        return self._subs[int_arg(i, "i", minimum=0, maximum=max(0, len(self._subs) - 1))]

    def reset(self) -> None:
        for sub in self._subs:
            sub.reset()

    def _merge(self, parts: list[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
        distances = np.concatenate([p[0] for p in parts], axis=1)
        ids = np.concatenate([p[1] for p in parts], axis=1)
        # padding (-1 at 2^31 - 1) sorts after every result: by distance, then id
        order = np.lexsort((np.where(ids < 0, np.iinfo(np.int64).max, ids), distances))[:, :k]
        return np.take_along_axis(distances, order, 1), np.take_along_axis(ids, order, 1)


class IndexBinaryShards(_Composite):
    """faiss.IndexBinaryShards(d, threaded=False, successive_ids=True): items split across sub-indexes.
    With successive_ids, one add() cuts the batch into consecutive parts, and a sub-index's ids are
    offset by the items of the ones before it."""

    def __init__(self, d: int | None = None, threaded: bool = False, successive_ids: bool = True) -> None:
        super().__init__(d, threaded)
        self.successive_ids = bool(successive_ids)

    @property
    def ntotal(self) -> int:
        return sum(sub.ntotal for sub in self._subs)

    def add_shard(self, index: IndexBinary) -> None:
        self._attach(index)

    def remove_shard(self, index: IndexBinary) -> None:
        self.removeIndex(index)

    def _split(self, n: int) -> list[slice]:
        if not self._subs:
            raise RuntimeError("no shards: add_shard first")
        bounds = [i * n // len(self._subs) for i in range(len(self._subs) + 1)]
        return [slice(a, b) for a, b in zip(bounds, bounds[1:])]

    def add(self, x: np.ndarray) -> None:
        x = codes_arg(x, self.code_size, "x")
        if self.successive_ids and self.ntotal:
            raise RuntimeError("when adding to IndexBinaryShards with successive_ids, only add() in a single pass "
                               "is supported")
        for sub, part in zip(self._subs, self._split(len(x))):
            sub.add(x[part])

    def add_with_ids(self, x: np.ndarray, ids: np.ndarray) -> None:
        x = codes_arg(x, self.code_size, "x")
        ids = ids_arg(ids, "ids", count=len(x))
        for sub, part in zip(self._subs, self._split(len(x))):
            sub.add_with_ids(x[part], ids[part])

    def _offsets(self) -> list[int]:
        sizes = [sub.ntotal if self.successive_ids else 0 for sub in self._subs]
        return [int(v) for v in np.cumsum([0] + sizes[:-1])]

    def _knn(self, x: np.ndarray, k: int, params: SearchParameters | None) -> tuple[np.ndarray, np.ndarray]:
        parts = []
        for sub, offset in zip(self._subs, self._offsets()):
            distances, ids = sub.search(x, k, params=self._shifted(params, offset))
            parts.append((distances, np.where(ids >= 0, ids + offset, ids)))
        return self._merge(parts, k) if parts else (np.full((len(x), k), _core.PAD_DISTANCE, np.int32),
                                                     np.full((len(x), k), -1, np.int64))

    def _range(self, x: np.ndarray, thresh: int,
               params: SearchParameters | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows: list[list[tuple[float, int]]] = [[] for _ in range(len(x))]
        for sub, offset in zip(self._subs, self._offsets()):
            lims, distances, ids = sub.range_search(x, thresh, params=self._shifted(params, offset))
            for q in range(len(x)):
                s = slice(int(lims[q]), int(lims[q + 1]))
                rows[q] += zip(distances[s].tolist(), (ids[s] + offset).tolist())
        lims = np.cumsum([0] + [len(r) for r in rows]).astype(np.uint64)
        hits = [h for r in rows for h in sorted(r)]
        return (lims, np.array([h[0] for h in hits], np.float32), np.array([h[1] for h in hits], np.int64))

    @staticmethod
    def _shifted(params: SearchParameters | None, offset: int) -> SearchParameters | None:
        """A selector over global ids, asked about a shard's own (offset) ids."""
        if params is None or params.sel is None or not offset:
            return params
        return SearchParameters(sel=_Offset(params.sel, offset))


class _Offset(IDSelector):
    def __init__(self, sel: IDSelector, offset: int) -> None:
        self.sel, self.offset = sel, offset

    def mask(self, ids: np.ndarray) -> np.ndarray:
        return self.sel.mask(ids + self.offset)


class IndexBinaryReplicas(_Composite):
    """faiss.IndexBinaryReplicas(d, threaded=False): every sub-index holds every item; a search's
    queries are split across them."""

    @property
    def ntotal(self) -> int:
        return self._subs[0].ntotal if self._subs else 0

    def add_replica(self, index: IndexBinary) -> None:
        self._attach(index)

    def remove_replica(self, index: IndexBinary) -> None:
        self.removeIndex(index)

    def add(self, x: np.ndarray) -> None:
        for sub in self._subs:
            sub.add(x)

    def add_with_ids(self, x: np.ndarray, ids: np.ndarray) -> None:
        for sub in self._subs:
            sub.add_with_ids(x, ids)

    def _parts(self, n: int) -> list[tuple[IndexBinary, slice]]:
        if not self._subs:
            raise RuntimeError("no replicas: add_replica first")
        bounds = [i * n // len(self._subs) for i in range(len(self._subs) + 1)]
        return [(sub, slice(a, b)) for sub, a, b in zip(self._subs, bounds, bounds[1:])]

    def _knn(self, x: np.ndarray, k: int, params: SearchParameters | None) -> tuple[np.ndarray, np.ndarray]:
        parts = [sub.search(x[s], k, params=params) for sub, s in self._parts(len(x))]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _range(self, x: np.ndarray, thresh: int,
               params: SearchParameters | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        parts = [sub.range_search(x[s], thresh, params=params) for sub, s in self._parts(len(x))]
        lims = [np.zeros(1, np.uint64)]
        for p in parts:
            lims.append(p[0][1:] + lims[-1][-1])
        return np.concatenate(lims), np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])


