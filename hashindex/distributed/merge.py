"""Routing ids to shards and merging the shards' answers: pure numpy, no Ray."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .._results import PAD_DISTANCE, RangeSearchResult

ROUTING = "splitmix64-mod"  # recorded in the manifest: a directory routed by another rule must not be opened


def shard_of(ids: np.ndarray, shards: int) -> np.ndarray:
    """The shard of each id: splitmix64's finaliser, then modulo, so ids 0..n-1, or ids that are all
    multiples of the shard count, still spread evenly."""
    z = np.asarray(ids, dtype=np.int64).astype(np.uint64)
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(shards)).astype(np.int64)


def route(ids: np.ndarray, shards: int) -> list[tuple[int, np.ndarray]]:
    """(shard, positions in ids) for every shard that holds some of these ids."""
    where = shard_of(ids, shards)
    order = np.argsort(where, kind="stable")
    bounds = np.searchsorted(where[order], np.arange(shards + 1))
    return [(s, order[bounds[s]:bounds[s + 1]]) for s in range(shards) if bounds[s + 1] > bounds[s]]


def merge_knn(distances: Sequence[np.ndarray], ids: Sequence[np.ndarray], k: int,
              groups: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The k best of several (nq, k) answers by (distance, id); with ``groups``, only the first hit of
    each group >= 0 counts (one_per_group). Padding (id -1) sorts last."""
    d = np.concatenate(distances, axis=1)
    i = np.concatenate(ids, axis=1)
    pad = i < 0
    # id -1 pads; as an unsigned key it sorts after every real id at the padding distance.
    order = np.lexsort((i.astype(np.uint64), d), axis=1)
    d = np.take_along_axis(d, order, 1)
    i = np.take_along_axis(i, order, 1)
    if groups is not None:
        g = np.take_along_axis(np.concatenate(groups, axis=1), order, 1)
        keep = ~np.take_along_axis(pad, order, 1)
        rows, cols = np.nonzero(keep & (g >= 0))
        if len(rows):
            # first occurrence of each (row, group) in rank order
            by = np.lexsort((cols, g[rows, cols], rows))
            r, c = rows[by], cols[by]
            gg = g[r, c]
            dup = np.zeros(len(r), bool)
            dup[1:] = (r[1:] == r[:-1]) & (gg[1:] == gg[:-1])
            keep[r[dup], c[dup]] = False
        # stable: kept entries first, in rank order
        order = np.argsort(~keep, axis=1, kind="stable")
        d = np.take_along_axis(d, order, 1)
        i = np.take_along_axis(i, order, 1)
        kept = np.take_along_axis(keep, order, 1)
        i = np.where(kept, i, -1)
        d = np.where(kept, d, np.inf if d.dtype.kind == "f" else PAD_DISTANCE)
    return np.ascontiguousarray(d[:, :k]), np.ascontiguousarray(i[:, :k])


def merge_range(parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], nq: int) -> RangeSearchResult:
    """One CSR answer from several, each query's results sorted by (distance, id)."""
    q = np.concatenate([np.repeat(np.arange(nq, dtype=np.int64), np.diff(lims)) for lims, _, _ in parts])
    d = np.concatenate([p[1] for p in parts])
    i = np.concatenate([p[2] for p in parts])
    order = np.lexsort((i, d, q))
    lims = np.zeros(nq + 1, np.int64)
    np.cumsum(np.bincount(q, minlength=nq), out=lims[1:])
    return RangeSearchResult(lims, d[order], i[order])
