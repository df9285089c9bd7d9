"""faiss's binary-index API over hashindex: switch a CBIR tool by changing one import,

    import faiss                                 ->   from hashindex.compat import faiss

for the binary classes and functions below (faiss itself is not needed). Same argument order, same
result types and padding as faiss-cpu 1.15 (tested side by side with it). Where the semantics differ:

- **ties**: results are sorted by (distance, id); faiss leaves the order of equal distances to its heap.
- **range_search(x, thresh)**: keeps ``distance < thresh`` like faiss (hashindex's own ``range_search``
  is inclusive: ``radius = thresh - 1``). Results come as faiss returns them: lims uint64,
  distances float32, ids int64.
- **IndexBinaryMultiHash** is exact (multi-index hashing with a stopping rule); faiss's is approximate
  (``nflip`` bits flipped per hash). ``nflip`` is kept as an attribute and ignored; the tables number
  ``max(nhash, d / 64)`` (substrings of at most 64 bits).
- **remove_ids** on IndexBinaryFlat renumbers the items after each removed one, as faiss does (ids
  there are positions); on IndexBinaryIDMap ids stay. Both return how many were removed and ignore
  absent ids. This costs O(n) on IndexBinaryFlat (a rebuild), as faiss's memmove does.
- **files**: write_index_binary / read_index_binary write and read hashindex's format (versioned,
  CRC-checked), not faiss's; a file from faiss raises hashindex.FormatError, except those of the
  kinds that are faiss's own here (HNSW, FromFloat), which faiss writes and reads. A read
  IndexBinaryFlat whose ids are not 0..n-1 comes back as an IndexBinaryIDMap. An IVF file keeps its
  nprobe, as faiss's does.
- **IndexBinaryHash** is exact too (the multi-index hashing engine); ``b`` and ``nflip`` are kept as
  attributes. **index_binary_factory** builds "BFlat", "BHash<b>", "BHash<nhash>x<b>" (MultiHash) and
  "BIVF<nlist>" and their "IDMap," / "IDMap2," forms (the wrapper before or after); graph kinds
  ("BHNSW<M>", "BIVF<n>_BHNSW<M>") come from faiss's own factory.
- **IndexBinaryIVF** trains its centroids by k-majority (binary k-means, ``cp.niter`` rounds from
  ``cp.seed``), faiss by k-means on the bits as floats; on the same centroids (a quantizer filled
  beforehand) both probe the same lists. A quantizer of faiss itself (IndexBinaryHNSW) is given the
  centroids, but lists are chosen by an exact search over them. ``invlists`` tells list sizes;
  ``set_direct_map_type`` is accepted (ids are always mapped).
- **serialize_index_binary** returns hashindex's format as a uint8 array (not faiss's bytes).
- **IndexBinaryShards / IndexBinaryReplicas** run their sub-indexes one after another (``threaded`` is
  kept and ignored) and merge by (distance, id); built without d, they take the first sub-index's
  (``addIndex`` / ``removeIndex`` as faiss's ThreadedIndex names them). A selector on shards with successive ids selects
  global ids (faiss hands it to each shard, which reads its own local ids), and shards answer
  range_search (faiss's raise).
- **omp_set_num_threads** sets the threads of this module's searches (hashindex's pool, not OpenMP).
- Names this module lacks (``IndexFlatL2``, ``normalize_L2``, ...) come from faiss itself when it is
  installed, so a script that uses them beside its binary index still swaps with one import; without
  faiss they raise ImportError naming the package. Among them ``IndexBinaryFromFloat`` (a binary index
  over one of faiss's float indexes, which only faiss has; tested to answer as IndexBinaryFlat does)
  and ``IndexBinaryHNSW`` (faiss's own graph: USearch's binary HNSW, measured as a replacement,
  needs several times faiss's time for the same recall and has no filtered search in Python;
  benchmarks/RESULTS.md, "Binary HNSW").
- **bad input** raises TypeError / ValueError naming the argument (faiss raises AssertionError or
  RuntimeError).
"""
from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from .. import _core
from .._validate import codes_arg, ids_arg, int_arg
from ..flat import FlatIndex
from ..io import load, loads
from ..ivf import IVFIndex
from ..mih import MIHIndex
from ._faiss_classes import (
    METRIC_INNER_PRODUCT,
    METRIC_L2,
    IDSelector,
    IDSelectorArray,
    IDSelectorBatch,
    IDSelectorBitmap,
    IDSelectorNot,
    IDSelectorRange,
    IndexBinary,
    IndexBinaryFlat,
    IndexBinaryHash,
    IndexBinaryIDMap,
    IndexBinaryIDMap2,
    IndexBinaryIVF,
    IndexBinaryMultiHash,
    SearchParameters,
    SearchParametersIVF,
    _Positional,
    _threads,
)

__all__ = [
    "IDSelector", "IDSelectorArray", "IDSelectorBatch", "IDSelectorBitmap", "IDSelectorNot", "IDSelectorRange",
    "IndexBinary", "IndexBinaryFlat", "IndexBinaryHash", "IndexBinaryIDMap", "IndexBinaryIDMap2",
    "IndexBinaryIVF", "IndexBinaryMultiHash", "IndexBinaryReplicas", "IndexBinaryShards", "METRIC_INNER_PRODUCT", "METRIC_L2",
    "SearchParameters", "SearchParametersIVF", "deserialize_index_binary", "downcast_IndexBinary", "index_binary_factory",
    "omp_get_max_threads", "omp_set_num_threads", "read_index_binary", "serialize_index_binary",
    "write_index_binary",
]

def omp_set_num_threads(n: int) -> None:
    """Threads for this module's searches (faiss sets OpenMP's; here hashindex's pool takes them)."""
    _threads[0] = int_arg(n, "n", minimum=1)


def omp_get_max_threads() -> int:
    return _threads[0] or _core.available_threads()


def _real_faiss(what: str) -> Any:
    try:
        import faiss as real
    except ImportError:
        raise ImportError(f"hashindex.compat.faiss has no {what}, and faiss itself, which has it, is not "
                          "installed: pip install faiss-cpu") from None
    return real


def __getattr__(name: str) -> Any:
    """faiss's other names (float indexes, utilities) from faiss itself, so a script keeps working."""
    if name.startswith("__"):
        raise AttributeError(name)
    return getattr(_real_faiss(repr(name)), name)


def _is_faiss_own(index: Any) -> bool:
    """An index of faiss itself (one this module handed out from faiss: HNSW, FromFloat)."""
    return not isinstance(index, IndexBinary) and type(index).__module__.startswith("faiss")


# --- files ------------------------------------------------------------------------------------

def write_index_binary(index: IndexBinary, fname: str | os.PathLike[str]) -> None:
    """Writes the index in hashindex's file format (atomic, versioned, CRC-checked); an index of faiss
    itself (IndexBinaryHNSW, IndexBinaryFromFloat) in faiss's."""
    if _is_faiss_own(index):
        _real_faiss("write_index_binary for faiss's own indexes").write_index_binary(index, os.fspath(fname))
        return
    if not isinstance(index, IndexBinary):
        raise TypeError(f"index: expected a hashindex.compat.faiss index, got {type(index).__name__}")
    index._index.save(fname)


def read_index_binary(fname: str | os.PathLike[str]) -> IndexBinary:
    """Reads a file written by write_index_binary: hashindex's format, or faiss's for the index kinds
    that are faiss's own here (HNSW, FromFloat); any other faiss file raises FormatError."""
    try:
        return _wrap(load(fname), os.fspath(fname))
    except _core.FormatError:
        own = _faiss_own_file(fname)
        if own is None:
            raise
        return own


def _faiss_own_file(fname: str | os.PathLike[str]) -> Any:
    """The index in a faiss file when it is one of the kinds handed out from faiss, else None."""
    try:
        import faiss as real

        index = real.read_index_binary(os.fspath(fname))
    except Exception:  # not faiss's either, or no faiss: the caller's FormatError stands
        return None
    return index if type(index).__name__ in _FAISS_OWN else None


_FAISS_OWN = ("IndexBinaryHNSW", "IndexBinaryHNSWCagra", "IndexBinaryFromFloat")


def serialize_index_binary(index: IndexBinary) -> np.ndarray:
    """The index as a uint8 array of hashindex's file format (what write_index_binary writes); an
    index of faiss itself in faiss's."""
    if _is_faiss_own(index):
        return _real_faiss("serialize_index_binary for faiss's own indexes").serialize_index_binary(index)
    if not isinstance(index, IndexBinary) or isinstance(index, _Composite):
        raise TypeError(f"index: expected a hashindex.compat.faiss index, got {type(index).__name__}")
    return np.frombuffer(index._index.to_bytes(), np.uint8).copy()


def deserialize_index_binary(data: np.ndarray) -> IndexBinary:
    """An index from serialize_index_binary's array (faiss's own kinds through faiss, as files)."""
    data = np.ascontiguousarray(data, dtype=np.uint8)
    try:
        return _wrap(loads(data.tobytes(), source="<serialized>"), "<serialized>")
    except _core.FormatError:
        index: Any = None
        try:
            import faiss as real

            index = real.deserialize_index_binary(data)
        except Exception:  # not faiss's either, or no faiss: the FormatError stands
            pass
        if type(index).__name__ not in _FAISS_OWN:
            raise
        return index


def downcast_IndexBinary(index: IndexBinary) -> IndexBinary:
    """The index itself: these classes are never handed out as a base class."""
    if not isinstance(index, IndexBinary):
        raise TypeError(f"index: expected a hashindex.compat.faiss index, got {type(index).__name__}")
    return index


def _wrap(inner: Any, source: str) -> IndexBinary:
    """The compat class of a loaded hashindex index (an IDMap around it when its ids are not 0..n-1)."""
    if isinstance(inner, FlatIndex):
        out: _Positional = IndexBinaryFlat.__new__(IndexBinaryFlat)
    elif isinstance(inner, IVFIndex):
        ivf = IndexBinaryIVF(IndexBinaryFlat(inner.nbits), inner.nbits, inner.nlist)
        ivf._index = inner
        if inner.is_trained:
            ivf.quantizer.add(inner.centroids)
            ivf.is_trained = True
        return ivf
    elif isinstance(inner, MIHIndex):
        out = IndexBinaryMultiHash.__new__(IndexBinaryMultiHash)
        out.nhash, out.b, out.nflip = inner.m or 1, inner.nbits // max(inner.m, 1), 0
    else:
        raise _core.FormatError(f"{source}: holds a {type(inner).__name__}, which faiss has no class for")
    IndexBinary.__init__(out, inner.nbits)
    out._index = inner
    ids = inner.ids()
    if np.array_equal(np.sort(ids), np.arange(len(ids))):
        return out
    wrapped = IndexBinaryIDMap.__new__(IndexBinaryIDMap)
    IndexBinary.__init__(wrapped, inner.nbits)
    wrapped.index, wrapped._index = out, inner
    return wrapped


def index_binary_factory(d: int, description: str) -> IndexBinary:
    """faiss.index_binary_factory for the kinds built here: "BFlat", "BHash<b>", "BHash<nhash>x<b>",
    "BIVF<nlist>", each optionally behind "IDMap," or "IDMap2," (or followed by ",IDMap2"). Graph
    kinds ("BHNSW<M>", "BIVF<n>_BHNSW<M>") are faiss's own: built by faiss when it is installed."""
    if not isinstance(description, str):
        raise TypeError(f"description: expected a string, got {type(description).__name__}")
    if "HNSW" in description:
        return _real_faiss(f"the graph index {description!r}").index_binary_factory(d, description)
    head, _, tail = description.partition(",")
    if tail in ("IDMap", "IDMap2") and "," not in head:
        description = f"{tail},{head}"  # faiss reads the wrapper on either side
    wrap, _, core = description.rpartition(",")
    inner: IndexBinary
    match = re.fullmatch(r"BHash(\d+)(?:x(\d+))?", core)
    ivf = re.fullmatch(r"BIVF(\d+)", core)
    if core == "BFlat":
        inner = IndexBinaryFlat(d)
    elif ivf:
        inner = IndexBinaryIVF(IndexBinaryFlat(d), d, int(ivf.group(1)))
    elif match and match.group(2):
        inner = IndexBinaryMultiHash(d, int(match.group(1)), int(match.group(2)))
    elif match:
        inner = IndexBinaryHash(d, int(match.group(1)))
    else:
        raise ValueError(f"description: {core!r} is not built by hashindex.compat.faiss (BFlat, BHash<b>, "
                         "BHash<nhash>x<b> and BIVF<nlist> are; HNSW kinds come from faiss)")
    if wrap and isinstance(inner, IndexBinaryIVF):
        raise ValueError(f"description: IVF lists keep their ids: use {core!r} without {wrap + ','!r}")
    if wrap in ("", "IDMap", "IDMap2"):
        return {"": lambda: inner, "IDMap": lambda: IndexBinaryIDMap(inner), "IDMap2": lambda: IndexBinaryIDMap2(inner)}[wrap]()
    raise ValueError(f"description: expected an optional 'IDMap,' or 'IDMap2,' prefix, got {wrap!r}")


# --- several indexes as one -------------------------------------------------------------------

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


for _cls in (IDSelector, IDSelectorArray, IDSelectorBatch, IDSelectorBitmap, IDSelectorNot, IDSelectorRange,
             IndexBinary, IndexBinaryFlat, IndexBinaryHash, IndexBinaryIDMap, IndexBinaryIDMap2, IndexBinaryIVF,
             IndexBinaryMultiHash, SearchParameters, SearchParametersIVF):
    _cls.__module__ = __name__  # they are this module's API, defined in _faiss_classes
