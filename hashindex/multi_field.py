"""MultiFieldIndex: items with several code fields and a group, searched by a weighted sum."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from . import _core
from ._base import _ProbingIndex
from ._results import SearchResult, result_of
from ._validate import (
    field_add_args,
    field_search_args,
    filter_arg,
    ids_arg,
    int_arg,
    nbits_arg,
    threads_arg,
)


class MultiFieldIndex(_ProbingIndex):
    """Exact search over items that carry several named code fields (e.g. the normal and abnormal
    anatomy codes of an MRI slice, of different lengths) and optionally a group id (the patient).

    ``search`` ranks by one field, or by an exact weighted sum of per-field Hamming distances
    (weights >= 0 per query batch; a query may take one field from image A and another from
    image B). Group constraints run inside the scan, so k results come back whenever k items
    satisfy them: ``exclude_groups`` skips each query's own group, ``one_per_group`` keeps only the
    best item of each group. Distances are float64 weighted sums (integers for integer weights),
    padded with ``inf`` and id -1; ties break by id.

    By default every item is scanned (SIMD, all cores). With ``mih=True`` each field is also cut
    into substrings of at most 16 bits with one hash table each, and a query may probe them
    instead: the pigeonhole bound of multi-index hashing holds for the weighted sum (an item not
    yet seen differs in at least r + 1 bits of every substring probed to radius r, so its distance
    is at least the weighted sum of those), group rules and filters only drop candidates, so the
    answers are the same as the scan's, ties included. A cost model calibrated on this machine
    when the tables are built sends a query to the scan when probing would cost more, so probing
    pays only where neighbours are much nearer than most items (``last_search_stats`` says which
    ran). The tables cost 4 bytes per substring per item plus a row-major copy of the codes
    (1024-bit fields: about 390 bytes per item per field, beside the 128 of the codes); they are
    rebuilt as MIHIndex's are, and on load (so ``load(mmap=True)`` then reads every code).
    """

    _core_class = _core.MultiFieldIndex

    def __init__(self, fields: Mapping[str, int], *, mih: bool = False) -> None:
        if not isinstance(fields, Mapping) or not fields:
            raise TypeError(f"fields: expected a non-empty mapping of field name to nbits, got {fields!r}")
        names = list(fields)
        for name in names:
            if not isinstance(name, str) or not name:
                raise TypeError(f"fields: field names must be non-empty strings, got {name!r}")
        nbits = []
        for name in names:
            try:
                nbits.append(nbits_arg(fields[name]))
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"fields[{name!r}]: {exc}") from None
        if not isinstance(mih, (bool, np.bool_)):
            raise TypeError(f"mih: expected a bool, got {type(mih).__name__}")
        self._index = _core.MultiFieldIndex(names, nbits, bool(mih))
        self._init_state()

    def _init_state(self) -> None:
        super()._init_state()
        # Fixed for the index's life; read by every search (built from the core's lists, it cost a
        # search more than a microsecond).
        self._code_sizes = {name: bits // 8 for name, bits in zip(self._index.names, self._index.nbits)}

    # -- shape of the items ---------------------------------------------------------------------
    @property
    def fields(self) -> dict[str, int]:
        """Field name -> bits per code, in the order given."""
        return dict(zip(self._index.names, self._index.nbits))

    @property
    def mih(self) -> bool:
        """Whether the index keeps substring tables to probe (see the class docstring)."""
        return self._index.mih

    @property
    def nbits(self) -> dict[str, int]:
        return self.fields

    @property
    def code_size(self) -> dict[str, int]:
        return dict(self._code_sizes)

    def __repr__(self) -> str:
        mih = ", mih=True" if self.mih else ""
        return f"MultiFieldIndex(fields={self.fields}{mih}, ntotal={self.ntotal})"

    # -- content ----------------------------------------------------------------------------------
    def add(self, codes: Mapping[str, np.ndarray], ids: np.ndarray | None = None,
            groups: np.ndarray | None = None) -> None:
        """Adds items: ``codes`` maps every field to uint8 (n, code_size) rows; ``ids`` as in
        FlatIndex; ``groups`` int64 (n,) >= 0 (e.g. the case id), or None for no group. All or nothing."""
        arrays, n, groups = field_add_args(codes, groups, self._code_sizes)
        if ids is not None:
            ids = ids_arg(ids, "ids", count=n)
        self._index.add(arrays, ids, groups)

    def get(self, ids: np.ndarray | int, field: str | None = None):
        """Stored codes of one field, uint8 (len(ids), code_size), or of every field as a dict."""
        ids = ids_arg(ids, "ids")
        names = list(self.fields)
        if field is None:
            return {name: self._index.get(i, ids) for i, name in enumerate(names)}
        if field not in names:
            raise ValueError(f"field: expected one of {names}, got {field!r}")
        return self._index.get(names.index(field), ids)

    def reconstruct(self, id: int) -> dict[str, np.ndarray]:
        """Every field's code of one item."""
        return {name: codes[0] for name, codes in self.get(int_arg(id, "id", minimum=0)).items()}

    def groups(self, ids: np.ndarray | int) -> np.ndarray:
        """Group of each item, int64 (-1 for items added without one)."""
        return self._index.groups(ids_arg(ids, "ids"))

    # -- search -----------------------------------------------------------------------------------
    def search(self, queries: Mapping[str, np.ndarray], k: int, *, weights: Mapping[str, float] | None = None,
               exclude_groups: np.ndarray | int | None = None, one_per_group: bool = False,
               threads: int | None = None, allow: object = None, deny: object = None) -> SearchResult:
        """The k best items per query by sum over fields of weight x Hamming distance.

        queries: field -> uint8 (nq, code_size) rows (one 1-D code is one row); fields with weight 0
        may be left out. weights: field -> float >= 0; default 1 for every field in ``queries``.
        exclude_groups: one group per query (or one for all) whose items are skipped; -1 skips none.
        allow / deny: only these ids, or all but these, as in FlatIndex.search (with the group rules).
        Returns float64 distances and int64 ids, (nq, k), sorted by (distance, id).
        """
        arrays, nq, w, k, exclude, one_per_group = field_search_args(queries, k, weights, exclude_groups,
                                                                     one_per_group, self._code_sizes)
        distances, ids, stats = self._index.search(arrays, w, nq, k, exclude, one_per_group, threads_arg(threads),
                                                   *filter_arg(allow, deny))
        self._keep(stats)
        return result_of(SearchResult, (distances, ids))
