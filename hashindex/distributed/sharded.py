"""The public sharded indexes: ShardedIndex, ShardedMultiFieldIndex and load(), each an index kind's
API over the Ray plumbing of ``driver`` (see the package docs)."""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from .._results import RangeSearchResult, SearchResult
from .._validate import codes_arg, field_add_args, field_search_args, ids_arg, int_arg, k_arg, nbits_arg
from .driver import _Sharded
from .manifest import field_sizes, read_manifest
from .merge import merge_range


class ShardedIndex(_Sharded):
    """A :class:`hashindex.FlatIndex` or :class:`hashindex.MIHIndex` split over ``shards`` Ray actors,
    with the same API and the same answers (see the module docs).

    directory: where shards keep snapshots and logs (a shared file system on several machines);
    None makes a temporary one, removed by :meth:`close`. recovery_timeout: seconds a call waits for
    a failed shard to come back before raising ShardUnavailableError (None: forever). threads: per
    shard search threads (None: all of its node). batch_size: queries per fan-out round.
    actor_options: passed to Ray's ``.options()`` (resources, placement), after ours.
    """

    def __init__(self, nbits: int, shards: int = 4, kind: str = "flat", *, m: int | None = None,
                 directory: str | os.PathLike[str] | None = None, recovery_timeout: float | None = 60.0,
                 threads: int | None = None, batch_size: int = 4096,
                 actor_options: Mapping[str, Any] | None = None, _open: bool = False) -> None:
        if kind not in ("flat", "mih"):
            raise ValueError(f"kind: expected 'flat' or 'mih', got {kind!r}")
        nbits = nbits_arg(nbits)
        if kind == "mih" and m is not None:
            from ..mih import MIHIndex
            MIHIndex(nbits, m)  # the single-machine index's checks of m
        spec = {"kind": kind, "nbits": nbits, "m": m}
        super().__init__(spec, shards, directory, recovery_timeout=recovery_timeout, threads=threads,
                         batch_size=batch_size, actor_options=actor_options, _open=_open)

    @property
    def kind(self) -> str:
        return self._spec["kind"]

    @property
    def nbits(self) -> int:
        return self._spec["nbits"]

    @property
    def code_size(self) -> int:
        return self.nbits // 8

    def __repr__(self) -> str:
        return f"ShardedIndex(nbits={self.nbits}, shards={self.nshards}, kind={self.kind!r}, directory={self.directory!r})"

    def add(self, codes: np.ndarray, ids: np.ndarray | None = None) -> None:
        """As FlatIndex.add; returns once every shard has the codes on disk. All or nothing, unless a
        shard stays unavailable past recovery_timeout (then ShardUnavailableError: retry the same call)."""
        codes = codes_arg(codes, self.code_size, "codes")
        with self._writer():
            self._add(self._new_ids(ids, codes.shape[0]), [codes], None)

    def get(self, ids: np.ndarray | int) -> np.ndarray:
        return self._get(ids, None, 1)[0]

    def reconstruct(self, id: int) -> np.ndarray:
        return self.get(int_arg(id, "id", minimum=0))[0]

    def search(self, queries: np.ndarray, k: int, *, threads: int | None = None, allow: object = None,
               deny: object = None) -> SearchResult:
        """The k nearest codes of each query over all shards, exactly as FlatIndex.search returns them;
        allow / deny as there (each shard gets the ids of the filter that live on it)."""
        queries = codes_arg(queries, self.code_size, "queries")
        k = k_arg(k)
        threads = self._search_threads(threads)
        filters = self._filters(allow, deny)
        no_options: dict[str, Any] = {}
        batches = [(self._ship(queries[b]), k, threads, no_options) for b in self._batches(len(queries))]
        return self._search(batches, len(queries), k, False, False, filters)

    def range_search(self, queries: np.ndarray, radius: int, *, threads: int | None = None, allow: object = None,
                     deny: object = None) -> RangeSearchResult:
        """Every code within ``radius`` (inclusive) of each query, as FlatIndex.range_search."""
        queries = codes_arg(queries, self.code_size, "queries")
        radius = min(int_arg(radius, "radius", minimum=0), self.nbits)
        threads = self._search_threads(threads)
        filters = self._filters(allow, deny)
        slices = self._batches(len(queries))
        no_options: dict[str, Any] = {}
        answers = self._fan_out("range_search", [(self._ship(queries[b]), radius, threads, no_options)
                                                 for b in slices], filters)
        merged = [merge_range(parts, b.stop - b.start) for parts, b in zip(answers, slices)]
        offsets = np.cumsum([0] + [m.lims[-1] for m in merged])
        lims = np.concatenate([[0]] + [m.lims[1:] + off for m, off in zip(merged, offsets)]).astype(np.int64)
        return RangeSearchResult(lims, np.concatenate([m.distances for m in merged]),
                                 np.concatenate([m.ids for m in merged]))


class ShardedMultiFieldIndex(_Sharded):
    """A :class:`hashindex.MultiFieldIndex` split over Ray actors: fields, groups, weights,
    exclude_groups and one_per_group as there, with the same answers. ``mih=True`` gives every
    shard its substring tables (MultiFieldIndex's ``mih``). Options as ShardedIndex."""

    def __init__(self, fields: Mapping[str, int], shards: int = 4, *, mih: bool = False,
                 directory: str | os.PathLike[str] | None = None, recovery_timeout: float | None = 60.0,
                 threads: int | None = None, batch_size: int = 4096,
                 actor_options: Mapping[str, Any] | None = None, _open: bool = False) -> None:
        from ..multi_field import MultiFieldIndex

        checked = MultiFieldIndex(fields, mih=mih)  # one place checks field names, sizes and mih
        self._code_size = checked.code_size
        spec = {"kind": "multi_field", "fields": checked.fields, "mih": checked.mih}
        super().__init__(spec, shards, directory, recovery_timeout=recovery_timeout, threads=threads,
                         batch_size=batch_size, actor_options=actor_options, _open=_open)

    @property
    def fields(self) -> dict[str, int]:
        return dict(self._spec["fields"])

    @property
    def mih(self) -> bool:
        return bool(self._spec.get("mih", False))

    def __repr__(self) -> str:
        mih = ", mih=True" if self.mih else ""
        return (f"ShardedMultiFieldIndex(fields={self.fields}{mih}, shards={self.nshards}, "
                f"directory={self.directory!r})")

    def add(self, codes: Mapping[str, np.ndarray], ids: np.ndarray | None = None,
            groups: np.ndarray | None = None) -> None:
        """As MultiFieldIndex.add (every field needed; groups >= 0 or None)."""
        arrays, n, groups = field_add_args(codes, groups, self._code_size)
        with self._writer():
            self._add(self._new_ids(ids, n), arrays, groups)

    def get(self, ids: np.ndarray | int, field: str | None = None) -> Any:
        names = list(self.fields)
        if field is None:
            return dict(zip(names, self._get(ids, None, len(names))))
        if field not in names:
            raise ValueError(f"field: expected one of {names}, got {field!r}")
        return self._get(ids, names.index(field), 1)[0]

    def groups(self, ids: np.ndarray | int) -> np.ndarray:
        ids = ids_arg(ids, "ids")
        present = self._present(ids)
        if not present.all():
            raise KeyError(f"id {ids[np.flatnonzero(~present)[0]]} is not in the index")
        out = np.empty(len(ids), np.int64)
        routes = self._route(ids)
        for (_, p), g in zip(routes, self._gather([(s, "groups", (ids[p],)) for s, p in routes])):
            out[p] = g
        return out

    def search(self, queries: Mapping[str, np.ndarray], k: int, *, weights: Mapping[str, float] | None = None,
               exclude_groups: np.ndarray | int | None = None, one_per_group: bool = False,
               threads: int | None = None, allow: object = None, deny: object = None) -> SearchResult:
        """As MultiFieldIndex.search, over all shards (allow / deny pushed to each shard)."""
        arrays, nq, w, k, exclude, one_per_group = field_search_args(
            queries, k, weights, exclude_groups, one_per_group, self._code_size)
        filters = self._filters(allow, deny)
        names = list(self.fields)
        weight_map = {n: x for n, x in zip(names, w) if x > 0}
        threads = self._search_threads(threads)
        batches: list[tuple[Any, ...]] = []
        for b in self._batches(nq):
            rows = b.stop - b.start
            qs = [a[b] if a is not None else np.zeros((rows, size), np.uint8)
                  for a, size in zip(arrays, field_sizes(self._spec))]
            options: dict[str, Any] = {"weights": weight_map, "one_per_group": bool(one_per_group)}
            if exclude is not None:
                options["exclude_groups"] = exclude[b]
            batches.append((self._ship(qs), k, threads, options))
        return self._search(batches, nq, k, True, bool(one_per_group), filters)


def load(directory: str | os.PathLike[str], **options: Any) -> _Sharded:
    """Opens a directory written by ``save`` (or in use by a sharded index that stopped): each shard
    actor loads its snapshot and replays its log. ``options`` as for ShardedIndex (not shards or kind,
    which the manifest records)."""
    directory = os.path.abspath(os.fspath(directory))
    manifest = read_manifest(directory)
    spec, shards = manifest["spec"], manifest["shards"]
    if spec["kind"] == "multi_field":
        return ShardedMultiFieldIndex(spec["fields"], shards, mih=spec.get("mih", False), directory=directory,
                                      _open=True, **options)
    return ShardedIndex(spec["nbits"], shards, spec["kind"], m=spec.get("m"), directory=directory, _open=True,
                        **options)
