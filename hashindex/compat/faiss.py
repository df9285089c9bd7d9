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
  centroids, but lists are chosen by an exact search over them; one that cannot give them back (an
  IndexBinaryFromFloat over a float HNSW or multi-index quantizer) chooses them by its own search,
  as in faiss (such an index is not written to a file). ``invlists`` tells list sizes;
  ``set_direct_map_type`` is accepted (ids are always mapped). ``max_codes`` compares as many codes
  as faiss's, but a list it cuts gives its members nearest the centroid, where faiss's gives the
  first added (each list is kept in order by distance to its centroid).
- **serialize_index_binary** returns hashindex's format as a uint8 array (not faiss's bytes).
- **IndexBinaryShards / IndexBinaryReplicas** run their sub-indexes one after another (``threaded`` is
  kept and ignored) and merge by (distance, id); built without d, they take the first sub-index's
  (``addIndex`` / ``removeIndex`` as faiss's ThreadedIndex names them). A selector on shards with successive ids selects
  global ids (faiss hands it to each shard, which reads its own local ids), and shards answer
  range_search (faiss's raise).
- **omp_set_num_threads** sets the threads of this module's searches (hashindex's pool, not OpenMP).
- **cvar.indexIVF_stats** sums this module's IVF searches (``nq``, ``nlist`` probed, ``ndis``,
  ``search_time``; the coarse search is not timed apart); ``cvar``'s other globals are faiss's.
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
from .._validate import int_arg
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
    IndexBinaryMultiHash,
    SearchParameters,
    SearchParametersIVF,
    _is_faiss_own,
    _Positional,
    _threads,
)
from ._faiss_composite import IndexBinaryReplicas, IndexBinaryShards, _Composite
from ._faiss_ivf import IndexBinaryIVF, IndexIVFStats, indexIVF_stats

__all__ = [
    "IDSelector", "IDSelectorArray", "IDSelectorBatch", "IDSelectorBitmap", "IDSelectorNot", "IDSelectorRange",
    "IndexBinary", "IndexBinaryFlat", "IndexBinaryHash", "IndexBinaryIDMap", "IndexBinaryIDMap2",
    "IndexBinaryIVF", "IndexBinaryMultiHash", "IndexBinaryReplicas", "IndexBinaryShards", "IndexIVFStats",
    "METRIC_INNER_PRODUCT", "METRIC_L2", "cvar",
    "SearchParameters", "SearchParametersIVF", "deserialize_index_binary", "downcast_IndexBinary", "index_binary_factory",
    "omp_get_max_threads", "omp_set_num_threads", "read_index_binary", "serialize_index_binary",
    "write_index_binary",
]

class _CVar:
    """faiss's ``cvar``: ``indexIVF_stats`` counts this module's IVF searches (faiss's own would never
    see them); its other globals are faiss's."""

    indexIVF_stats = indexIVF_stats

    def __getattr__(self, name: str) -> Any:
        return getattr(_real_faiss(f"cvar.{name}").cvar, name)


cvar = _CVar()


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


# --- files ------------------------------------------------------------------------------------

def write_index_binary(index: IndexBinary, fname: str | os.PathLike[str]) -> None:
    """Writes the index in hashindex's file format (atomic, versioned, CRC-checked); an index of faiss
    itself (IndexBinaryHNSW, IndexBinaryFromFloat) in faiss's."""
    if _is_faiss_own(index):
        _real_faiss("write_index_binary for faiss's own indexes").write_index_binary(index, os.fspath(fname))
        return
    if not isinstance(index, IndexBinary):
        raise TypeError(f"index: expected a hashindex.compat.faiss index, got {type(index).__name__}")
    _savable(index)._index.save(fname)


def read_index_binary(fname: str | os.PathLike[str]) -> IndexBinary:
    """Reads a file written by write_index_binary: hashindex's format, or faiss's for the index kinds
    that are faiss's own here (HNSW, FromFloat); any other faiss file raises FormatError."""
    try:
        return _wrap(load(fname), os.fspath(fname))
    except _core.FormatError as exc:
        return _faiss_own_or_raise(exc, lambda real: real.read_index_binary(os.fspath(fname)))


_FAISS_OWN = ("IndexBinaryHNSW", "IndexBinaryHNSWCagra", "IndexBinaryFromFloat")


def _faiss_own_or_raise(error: Exception, read: Any) -> Any:
    """What faiss reads (``read(faiss)``) that ours refused with ``error``, when it is one of
    faiss's own kinds here; else ``error``."""
    try:
        import faiss as real

        index = read(real)
    except Exception:  # not faiss's either, or no faiss
        index = None
    if type(index).__name__ not in _FAISS_OWN:
        raise error
    return index


def serialize_index_binary(index: IndexBinary) -> np.ndarray:
    """The index as a uint8 array of hashindex's file format (what write_index_binary writes); an
    index of faiss itself in faiss's."""
    if _is_faiss_own(index):
        return _real_faiss("serialize_index_binary for faiss's own indexes").serialize_index_binary(index)
    if not isinstance(index, IndexBinary) or isinstance(index, _Composite):
        raise TypeError(f"index: expected a hashindex.compat.faiss index, got {type(index).__name__}")
    return np.frombuffer(_savable(index)._index.to_bytes(), np.uint8).copy()


def _savable(index: IndexBinary) -> IndexBinary:
    if isinstance(index, IndexBinaryIVF) and index._by_quantizer:
        raise ValueError(f"index: its lists are chosen by its quantizer, a {type(index.quantizer).__name__} of faiss "
                         "that cannot give its centroids back, and hashindex's file keeps centroids, not quantizers")
    return index


def deserialize_index_binary(data: np.ndarray) -> IndexBinary:
    """An index from serialize_index_binary's array (faiss's own kinds through faiss, as files)."""
    data = np.ascontiguousarray(data, dtype=np.uint8)
    try:
        return _wrap(loads(data.tobytes(), source="<serialized>"), "<serialized>")
    except _core.FormatError as exc:
        return _faiss_own_or_raise(exc, lambda real: real.deserialize_index_binary(data))


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


for _cls in (IDSelector, IDSelectorArray, IDSelectorBatch, IDSelectorBitmap, IDSelectorNot, IDSelectorRange,
             IndexBinary, IndexBinaryFlat, IndexBinaryHash, IndexBinaryIDMap, IndexBinaryIDMap2, IndexBinaryIVF,
             IndexBinaryMultiHash, IndexBinaryReplicas, IndexBinaryShards, SearchParameters, SearchParametersIVF):
    _cls.__module__ = __name__  # they are this module's API, defined in its private modules
