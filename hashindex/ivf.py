"""IVFIndex: approximate search by inverted lists of binary codes (as faiss's IndexBinaryIVF)."""
from __future__ import annotations

import numpy as np

from . import _core
from ._base import _ProbingIndex, _SingleFieldIndex
from ._results import RangeSearchResult, SearchResult, result_of
from ._validate import _type_name, codes_arg, filter_arg, ids_arg, int_arg, k_arg, nbits_arg, threads_arg

MAX_ITERATIONS = (1 << 31) - 1  # the core's int; k-majority stops well before, once nothing moves
MAX_SEED = (1 << 64) - 1  # the core's seed is 64 bits
MAX_CODES = (1 << 63) - 1


class IVFIndex(_ProbingIndex, _SingleFieldIndex):
    """Codes kept in ``nlist`` inverted lists, one per binary centroid; a query scans the lists of
    its ``nprobe`` nearest centroids. Approximate below ``nprobe = nlist``, exact there.

    :meth:`train` sets the centroids by k-majority (binary k-means: each centroid bit the majority
    of its members' bits), seeded, from codes like those to come; then :meth:`add` puts each code in
    its nearest centroid's list. Each list is stored in the kernels' blocked layout and scanned by
    the same SIMD kernels as :class:`FlatIndex`, once for all the queries of a batch that probe it.
    Results are sorted by (distance, id), padded as FlatIndex pads them; allow / deny apply inside
    the scan. Each list keeps its members in order by distance to its centroid; a list, or a block of
    8 codes, whose distances to its centroid put it past a query's k-th distance so far (triangle
    inequality) is not compared, with the same answers, and a query reads its nearest list from the
    blocks nearest it by that bound outward.
    :attr:`last_search_stats` counts the lists probed, the codes compared and those skipped.
    :attr:`nprobe` is what a search probes when it names no ``nprobe``; it is saved with the index.
    """

    _core_class = _core.IVFIndex
    _stats_fields = ("queries", "lists_probed", "codes_compared", "lists_skipped", "codes_skipped")

    def __init__(self, nbits: int, nlist: int) -> None:
        self._index = _core.IVFIndex(nbits_arg(nbits), int_arg(nlist, "nlist", minimum=1, maximum=1 << 24))
        self._init_state()

    def _init_state(self) -> None:
        super()._init_state()
        self._nlist = self._index.nlist  # fixed at construction; read by every search

    def __repr__(self) -> str:
        return f"IVFIndex(nbits={self.nbits}, nlist={self.nlist}, ntotal={self.ntotal}, trained={self.is_trained})"

    @property
    def nlist(self) -> int:
        return self._index.nlist

    @property
    def is_trained(self) -> bool:
        return self._index.trained

    @property
    def nprobe(self) -> int:
        """The lists a search probes when it names none (default 1; saved with the index)."""
        return self._index.nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self._index.nprobe = int_arg(value, "nprobe", minimum=1, maximum=1 << 24)

    def train(self, codes: np.ndarray, *, iterations: int = 10, seed: int = 0) -> None:
        """Centroids by k-majority from at least nlist codes (while the index is empty)."""
        codes = codes_arg(codes, self.code_size, "codes")
        self._index.train(codes, int_arg(iterations, "iterations", minimum=1, maximum=MAX_ITERATIONS),
                          int_arg(seed, "seed", minimum=0, maximum=MAX_SEED))

    @property
    def centroids(self) -> np.ndarray:
        """The nlist centroids, uint8 (nlist, code_size)."""
        return self._index.centroids()

    @centroids.setter
    def centroids(self, rows: np.ndarray) -> None:
        rows = codes_arg(rows, self.code_size, "centroids")
        if len(rows) != self.nlist:
            raise ValueError(f"centroids: expected nlist = {self.nlist} rows, got {len(rows)}")
        self._index.set_centroids(rows)

    def assign(self, codes: np.ndarray) -> np.ndarray:
        """The list (nearest centroid) of each code, int64 (n,)."""
        return self._index.assign(codes_arg(codes, self.code_size, "codes"))

    def list_sizes(self) -> np.ndarray:
        """Codes per list, int64 (nlist,)."""
        return self._index.list_sizes()

    def add(self, codes: np.ndarray, ids: np.ndarray | None = None, *, lists: np.ndarray | None = None) -> None:
        """Adds codes as every index does (see FlatIndex.add), each to its nearest centroid's list, or
        to ``lists`` (int64 (n,), one list number per code) chosen by a quantizer of the caller's own
        (faiss's add_core): the index need not be trained then."""
        if lists is None:
            return super().add(codes, ids)
        codes = codes_arg(codes, self.code_size, "codes")
        self._index.add_to_lists(codes, None if ids is None else ids_arg(ids, "ids", count=len(codes)),
                                 _lists_arg(lists, (len(codes),)))

    def search(self, queries: np.ndarray, k: int, *, nprobe: int | None = None, threads: int | None = None,
               allow: object = None, deny: object = None, lists: np.ndarray | None = None,
               max_codes: int | None = None) -> SearchResult:
        """The k nearest codes among the lists of each query's nprobe nearest centroids, or among
        ``lists``: int64 (nq, nprobe), the lists each query probes (-1: none), chosen by a quantizer of
        the caller's own (faiss's search_preassigned). ``max_codes``: a query scans its lists nearest
        first until it has compared that many codes, the last in part: its members nearest the centroid,
        as each list keeps them in that order (faiss's max_codes, which takes the first added; 0 or None:
        every code of its lists)."""
        queries = self._queries(queries)
        nprobe, lists = self._probes(queries, nprobe, lists)
        distances, ids, stats = self._index.search(queries, k_arg(k), nprobe, threads_arg(threads),
                                                   *filter_arg(allow, deny), lists, _max_codes(max_codes))
        self._keep(stats)
        return result_of(SearchResult, (distances, ids))

    def range_search(self, queries: np.ndarray, radius: int, *, nprobe: int | None = None, threads: int | None = None,
                     allow: object = None, deny: object = None, lists: np.ndarray | None = None,
                     max_codes: int | None = None) -> RangeSearchResult:
        """Every code within ``radius`` (inclusive) among the lists each query probes (``lists`` and
        ``max_codes`` as in :meth:`search`)."""
        queries = self._queries(queries)
        nprobe, lists = self._probes(queries, nprobe, lists)
        lims, distances, ids, stats = self._index.range_search(queries, self._radius(radius), nprobe,
                                                               threads_arg(threads), *filter_arg(allow, deny), lists,
                                                               _max_codes(max_codes))
        self._keep(stats)
        return RangeSearchResult(lims, distances, ids)

    def _probes(self, queries: np.ndarray, nprobe: object, lists: object) -> tuple[int, np.ndarray | None]:
        if lists is None and type(nprobe) is int and nprobe >= 1:
            return min(nprobe, self._nlist), None
        if lists is None:
            if nprobe is None:
                nprobe = self.nprobe
            return min(int_arg(nprobe, "nprobe", minimum=1), self._nlist), None  # the core refuses an untrained index
        rows = np.asarray(lists)
        width = rows.shape[1] if rows.ndim == 2 and rows.shape[1] >= 1 else "nprobe >= 1"
        rows = _lists_arg(rows, (len(queries), width))
        if nprobe is not None and int_arg(nprobe, "nprobe", minimum=1) != rows.shape[1]:
            raise ValueError(f"nprobe: {nprobe} given with lists of {rows.shape[1]} a query; give one or the other")
        return rows.shape[1], rows.reshape(-1)


def _lists_arg(lists: object, shape: tuple) -> np.ndarray:
    """List numbers chosen by the caller, int64 of this shape (the core checks each is a list, or -1
    where a query may probe none)."""
    rows = np.asarray(lists) if isinstance(lists, (list, tuple)) else lists
    if not isinstance(rows, np.ndarray) or rows.dtype.kind not in "iu":
        raise TypeError(f"lists: expected integer list numbers (a numpy.ndarray of int64), got {_type_name(lists)}")
    if rows.dtype.kind == "u" and rows.size and rows.max() > np.iinfo(np.int64).max:
        raise ValueError(f"lists: list numbers must fit in int64, got {rows.max()}")
    if rows.shape != shape:
        raise ValueError(f"lists: expected shape {shape}, got {rows.shape}")
    return np.ascontiguousarray(rows, dtype=np.int64)


def _max_codes(max_codes: object) -> int:
    # A budget past any index's codes is no limit: capped as an absurd thread count is.
    return 0 if max_codes is None else min(int_arg(max_codes, "max_codes", minimum=0), MAX_CODES)
