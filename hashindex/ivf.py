"""IVFIndex: approximate search by inverted lists of binary codes (as faiss's IndexBinaryIVF)."""
from __future__ import annotations

import numpy as np

from . import _core
from ._base import _ProbingIndex, _SingleFieldIndex
from ._results import RangeSearchResult, SearchResult
from ._validate import codes_arg, filter_arg, int_arg, k_arg, nbits_arg, threads_arg


class IVFIndex(_ProbingIndex, _SingleFieldIndex):
    """Codes kept in ``nlist`` inverted lists, one per binary centroid; a query scans the lists of
    its ``nprobe`` nearest centroids. Approximate below ``nprobe = nlist``, exact there.

    :meth:`train` sets the centroids by k-majority (binary k-means: each centroid bit the majority
    of its members' bits), seeded, from codes like those to come; then :meth:`add` puts each code in
    its nearest centroid's list. Each list is stored in the kernels' blocked layout and scanned by
    the same SIMD kernels as :class:`FlatIndex`, once for all the queries of a batch that probe it.
    Results are sorted by (distance, id), padded as FlatIndex pads them; allow / deny apply inside
    the scan. :attr:`last_search_stats` counts the lists probed and the codes compared.
    :attr:`nprobe` is what a search probes when it names no ``nprobe``; it is saved with the index.
    """

    _core_class = _core.IVFIndex

    def __init__(self, nbits: int, nlist: int) -> None:
        self._index = _core.IVFIndex(nbits_arg(nbits), int_arg(nlist, "nlist", minimum=1, maximum=1 << 24))
        self._init_state()

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
        self._index.train(codes, int_arg(iterations, "iterations", minimum=1), int_arg(seed, "seed", minimum=0))

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

    def search(self, queries: np.ndarray, k: int, *, nprobe: int | None = None, threads: int | None = None,
               allow: object = None, deny: object = None) -> SearchResult:
        """The k nearest codes among the lists of each query's nprobe nearest centroids."""
        queries = self._queries(queries)
        distances, ids, stats = self._index.search(queries, k_arg(k), self._nprobe(nprobe), threads_arg(threads),
                                                   *filter_arg(allow, deny))
        self._keep(stats)
        return SearchResult(distances, ids)

    def range_search(self, queries: np.ndarray, radius: int, *, nprobe: int | None = None, threads: int | None = None,
                     allow: object = None, deny: object = None) -> RangeSearchResult:
        """Every code within ``radius`` (inclusive) among the lists each query probes."""
        queries = self._queries(queries)
        lims, distances, ids, stats = self._index.range_search(queries, self._radius(radius), self._nprobe(nprobe),
                                                               threads_arg(threads), *filter_arg(allow, deny))
        self._keep(stats)
        return RangeSearchResult(lims, distances, ids)

    def _nprobe(self, nprobe: object) -> int:
        if nprobe is None:
            nprobe = self.nprobe
        return min(int_arg(nprobe, "nprobe", minimum=1), self.nlist)  # the core refuses an untrained index
