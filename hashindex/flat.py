"""FlatIndex: exact exhaustive Hamming search."""
from __future__ import annotations

import numpy as np

from . import _core
from ._base import _SingleFieldIndex
from ._results import RangeSearchResult, SearchResult, result_of
from ._validate import filter_arg, k_arg, nbits_arg, threads_arg


class FlatIndex(_SingleFieldIndex):
    """Exact k-NN and range search over packed binary codes by Hamming distance.

    Codes are rows of ``nbits // 8`` uint8 bytes (see :func:`hashindex.pack_bits`).
    Every code is compared with every query by SIMD XOR + popcount (AVX-512
    VPOPCNTDQ, AVX2 or scalar, chosen at run time). Results are exact and
    deterministic: sorted by distance, ties by id.

    Methods that scan release the GIL and use all available threads unless
    ``threads=`` says otherwise; a single query is split across threads too.
    """

    _core_class = _core.FlatIndex

    def __init__(self, nbits: int) -> None:
        self._index = _core.FlatIndex(nbits_arg(nbits))
        self._init_state()

    def search(self, queries: np.ndarray, k: int, *, threads: int | None = None, allow: object = None,
               deny: object = None) -> SearchResult:
        """The k nearest codes of each query: int32 distances and int64 ids, both (nq, k).

        Sorted by (distance, id). When fewer than k codes exist, rows are padded with
        distance ``hashindex.PAD_DISTANCE`` and id -1. A 1-D query gives one row.

        allow / deny: only these ids, or every id but these (int64 ids, a set, or a boolean bitmap
        over ids), applied inside the scan: k results whenever k items pass, the same answers as
        an index holding only the passing items. Ids the index does not hold are ignored.
        """
        queries = self._queries(queries)
        k = k_arg(k)
        return result_of(SearchResult, self._index.search(queries, k, threads_arg(threads), *filter_arg(allow, deny)))

    def range_search(self, queries: np.ndarray, radius: int, *, threads: int | None = None, allow: object = None,
                     deny: object = None) -> RangeSearchResult:
        """Every code within Hamming distance ``radius`` (inclusive: d <= radius) of each query;
        allow / deny as in :meth:`search`."""
        queries = self._queries(queries)
        return RangeSearchResult(*self._index.range_search(queries, self._radius(radius), threads_arg(threads),
                                                           *filter_arg(allow, deny)))
