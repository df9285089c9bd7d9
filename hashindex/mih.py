"""MIHIndex: exact multi-index hashing (Norouzi, Punjani & Fleet, CVPR 2012 / TPAMI 2014)."""
from __future__ import annotations

import numpy as np

from . import _core
from ._base import _ProbingIndex, _SingleFieldIndex
from ._results import RangeSearchResult, SearchResult, result_of
from ._validate import filter_arg, int_arg, k_arg, nbits_arg, threads_arg


class MIHIndex(_ProbingIndex, _SingleFieldIndex):
    """Exact k-NN and range search that touches only part of the database.

    Same answers as :class:`FlatIndex`, ties included, with the same API. Codes are cut
    into ``m`` substrings with one hash table each; a query probes the tables at growing
    substring radius and stops once the pigeonhole bound proves the k-th distance.
    ``m=None`` picks m from the number of codes (about nbits / log2 N, substrings of at
    most 16 bits) and picks again at each rebuild.

    Codes added since the tables were built, and those a removal moved to another slot, are
    unindexed: every query checks them apart. The tables are rebuilt when they exceed 1/64 of
    the index (or 1024 codes). A cost model sends a query to a plain scan when probing would
    cost more (uniform codes with a large radius); :attr:`last_search_stats` says which ran.

    Memory: besides the codes, each table holds a copy of them in bucket order plus a
    4-byte slot per code (m + 1 copies in all), and every thread that probes keeps a
    4-byte mark per indexed code.
    """

    _core_class = _core.MIHIndex
    _max_codes = 2**32 - 1  # the tables keep 32-bit slots

    def __init__(self, nbits: int, m: int | None = None) -> None:
        nbits = nbits_arg(nbits)
        m = 0 if m is None else int_arg(m, "m", minimum=1)
        if m > nbits or (m and -(-nbits // m) > 64):
            raise ValueError(
                f"m: expected between {-(-nbits // 64)} (substrings of at most 64 bits) and nbits={nbits}, got {m}"
            )
        self._index = _core.MIHIndex(nbits, m)
        self._init_state()

    @property
    def m(self) -> int:
        """Number of substrings (hash tables) in use now; 0 while the index is empty."""
        return self._index.m

    def search(self, queries: np.ndarray, k: int, *, threads: int | None = None, allow: object = None,
               deny: object = None) -> SearchResult:
        """The k nearest codes of each query, exactly as :meth:`FlatIndex.search` returns them (allow /
        deny too: filtered items only leave the candidate set, so the stopping rule stays exact; an
        allow list under 1/16 of the index is gathered and scanned)."""
        queries = self._queries(queries)
        k = k_arg(k)
        distances, ids, stats = self._index.search(queries, k, threads_arg(threads), *filter_arg(allow, deny))
        self._keep(stats)
        return result_of(SearchResult, (distances, ids))

    def range_search(self, queries: np.ndarray, radius: int, *, threads: int | None = None, allow: object = None,
                     deny: object = None) -> RangeSearchResult:
        """Every code within ``radius`` (inclusive), exactly as :meth:`FlatIndex.range_search`."""
        queries = self._queries(queries)
        lims, distances, ids, stats = self._index.range_search(queries, self._radius(radius), threads_arg(threads),
                                                               *filter_arg(allow, deny))
        self._keep(stats)
        return RangeSearchResult(lims, distances, ids)

    @classmethod
    def from_index(cls, index: _SingleFieldIndex, m: int | None = None) -> MIHIndex:
        """An MIHIndex holding the same codes and ids as another index (e.g. a FlatIndex)."""
        out = cls(index.nbits, m)
        ids = index.ids()
        out.add(index.get(ids), ids)
        # ids retired by removals stay retired: the next default id continues where the source's would
        out._index.restore_next_id(index._index.next_id)
        return out
