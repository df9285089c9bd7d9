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
from .manifest import CENTROIDS, field_sizes, new_index, read_manifest
from .merge import merge_range


class ShardedIndex(_Sharded):
    """A :class:`hashindex.FlatIndex`, :class:`hashindex.MIHIndex` or :class:`hashindex.IVFIndex`
    (``kind="ivf"``, ``nlist``) split over ``shards`` Ray actors, with the same API and the same
    answers (see the module docs). An IVF index is trained once, on the driver (:meth:`train`); every
    shard gets the centroids, so each probes the same lists and the merged k best are those of one
    IVFIndex with those centroids.

    directory: where shards keep snapshots and logs (a shared file system on several machines);
    None makes a temporary one, removed by :meth:`close`. recovery_timeout: seconds a call waits for
    a failed shard to come back before raising ShardUnavailableError (None: forever). threads: per
    shard search threads (None: all of its node). batch_size: queries per fan-out round.
    actor_options: passed to Ray's ``.options()`` (resources, placement), after ours.
    """

    def __init__(self, nbits: int, shards: int = 4, kind: str = "flat", *, m: int | None = None,
                 nlist: int | None = None, directory: str | os.PathLike[str] | None = None,
                 recovery_timeout: float | None = 60.0, threads: int | None = None, batch_size: int = 4096,
                 actor_options: Mapping[str, Any] | None = None, _spec: dict[str, Any] | None = None,
                 _open: bool = False) -> None:
        if kind not in ("flat", "mih", "ivf"):
            raise ValueError(f"kind: expected 'flat', 'mih' or 'ivf', got {kind!r}")
        nbits = nbits_arg(nbits)
        if kind == "mih" and m is not None:
            from ..mih import MIHIndex
            MIHIndex(nbits, m)  # the single-machine index's checks of m
        if (kind == "ivf") != (nlist is not None):
            raise ValueError(f"nlist: the lists of kind 'ivf', and only of it; got nlist={nlist!r} for kind {kind!r}")
        spec = {"kind": kind, "nbits": nbits, "m": m}
        if kind == "ivf":
            from ..ivf import IVFIndex

            checked = IVFIndex(nbits, int_arg(nlist, "nlist", minimum=1))  # the single-machine checks of nlist
            spec.update(nlist=checked.nlist, trained=False, nprobe=1)
        if _spec is not None:  # opened: the manifest's (an IVF index's training and nprobe)
            spec = _spec
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

    # -- IVF ---------------------------------------------------------------------------------------
    @property
    def is_trained(self) -> bool:
        return self.kind != "ivf" or bool(self._spec["trained"])

    @property
    def nlist(self) -> int:
        self._ivf_only("nlist")
        return int(self._spec["nlist"])

    @property
    def nprobe(self) -> int:
        """An IVF index's lists probed when a search names none (saved in the manifest)."""
        self._ivf_only("nprobe")
        return int(self._spec["nprobe"])

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self._ivf_only("nprobe")
        self._spec["nprobe"] = int_arg(value, "nprobe", minimum=1, maximum=1 << 24)

    @property
    def centroids(self) -> np.ndarray:
        self._ivf_only("centroids")
        if not self.is_trained:
            raise ValueError("the index is not trained: call train(codes) first")
        return new_index(self._spec, self.directory).centroids

    def train(self, codes: np.ndarray, *, iterations: int = 10, seed: int = 0) -> None:
        """An IVF index's centroids, by IVFIndex.train on this driver (k-majority, seeded), then
        given to every shard. Only while the index is empty."""
        from ..ivf import IVFIndex

        self._ivf_only("train")
        codes = codes_arg(codes, self.code_size, "codes")
        with self._writer():
            if self.ntotal:
                raise ValueError("train: the index holds codes; train an empty index (the lists would change)")
            local = IVFIndex(self.nbits, self.nlist)
            local.train(codes, iterations=iterations, seed=seed)
            self._set_centroids(local)

    def _set_centroids(self, local: Any) -> None:
        local.save(os.path.join(self.directory, CENTROIDS))  # atomic; the manifest then names it
        self._spec["trained"] = True
        self._write_manifest(read_manifest(self.directory)["snapshots"])
        self._each("set_centroids", local.centroids)

    def _ivf_only(self, what: str) -> None:
        if self.kind != "ivf":
            raise AttributeError(f"{what}: only a sharded index of kind 'ivf' has it, this one is {self.kind!r}")

    def _probe_options(self, nprobe: int | None) -> dict[str, Any]:
        if self.kind != "ivf":
            if nprobe is not None:
                raise ValueError(f"nprobe: only for kind 'ivf', this index is {self.kind!r}")
            return {}
        if not self.is_trained:
            raise ValueError("the index is not trained: call train(codes) first")
        nprobe = self.nprobe if nprobe is None else int_arg(nprobe, "nprobe", minimum=1)
        return {"nprobe": min(nprobe, self.nlist)}

    def add(self, codes: np.ndarray, ids: np.ndarray | None = None) -> None:
        """As FlatIndex.add; returns once every shard has the codes on disk. All or nothing, unless a
        shard stays unavailable past recovery_timeout (then ShardUnavailableError: retry the same call)."""
        codes = codes_arg(codes, self.code_size, "codes")
        if not self.is_trained:
            raise ValueError("the index is not trained: call train(codes) first")
        with self._writer():
            self._add(self._new_ids(ids, codes.shape[0]), [codes], None)

    def get(self, ids: np.ndarray | int) -> np.ndarray:
        return self._get(ids, None, 1)[0]

    def reconstruct(self, id: int) -> np.ndarray:
        return self.get(int_arg(id, "id", minimum=0))[0]

    def search(self, queries: np.ndarray, k: int, *, threads: int | None = None, allow: object = None,
               deny: object = None, nprobe: int | None = None) -> SearchResult:
        """The k nearest codes of each query over all shards, exactly as the single-machine index
        returns them; allow / deny as there (each shard gets the ids of the filter that live on it);
        ``nprobe`` for kind 'ivf' (default: :attr:`nprobe`)."""
        queries = codes_arg(queries, self.code_size, "queries")
        k = k_arg(k)
        options = self._probe_options(nprobe)
        threads = self._search_threads(threads)
        filters = self._filters(allow, deny)
        batches = [(self._ship(queries[b]), k, threads, options) for b in self._batches(len(queries))]
        return self._search(batches, len(queries), k, False, False, filters)

    def range_search(self, queries: np.ndarray, radius: int, *, threads: int | None = None, allow: object = None,
                     deny: object = None, nprobe: int | None = None) -> RangeSearchResult:
        """Every code within ``radius`` (inclusive) of each query, as the single-machine index's
        range_search (``nprobe`` for kind 'ivf')."""
        queries = codes_arg(queries, self.code_size, "queries")
        radius = min(int_arg(radius, "radius", minimum=0), self.nbits)
        options = self._probe_options(nprobe)
        threads = self._search_threads(threads)
        filters = self._filters(allow, deny)
        slices = self._batches(len(queries))
        answers = self._fan_out("range_search", [(self._ship(queries[b]), radius, threads, options)
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
    return ShardedIndex(spec["nbits"], shards, spec["kind"], m=spec.get("m"), nlist=spec.get("nlist"),
                        directory=directory, _spec=spec, _open=True, **options)
