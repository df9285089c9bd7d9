"""Result types shared by every index kind."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _core

#: Distance reported for padding entries (id -1) when k exceeds what the index holds.
PAD_DISTANCE: int = _core.PAD_DISTANCE
#: Id reported for padding entries.
PAD_ID: int = -1


class SearchResult(NamedTuple):
    """k nearest neighbours per query, sorted by (distance, id); unpacks as ``D, I = ...``.

    Rows with fewer than k results end with ``PAD_DISTANCE`` / ``PAD_ID`` (-1).
    """

    distances: np.ndarray  # int32 (nq, k)
    ids: np.ndarray  # int64 (nq, k)


#: ``result_of(SearchResult, (distances, ids))``: a result made without NamedTuple's own ``__new__``,
#: a Python-level call that was a large share of a small search's time in Python.
result_of = tuple.__new__


class RangeSearchResult(NamedTuple):
    """All results within a radius, in CSR form like faiss: the results of query i are
    ``distances[lims[i]:lims[i+1]]`` and ``ids[lims[i]:lims[i+1]]``, sorted by (distance, id)."""

    lims: np.ndarray  # int64 (nq + 1,)
    distances: np.ndarray  # int32 (lims[-1],)
    ids: np.ndarray  # int64 (lims[-1],)
