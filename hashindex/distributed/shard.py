"""One shard: what a Ray actor holds (its index, snapshot and log), as a plain class: Ray wraps it
in the driver, so this module imports no Ray and its behaviour is testable without it."""
from __future__ import annotations

import os
from typing import Any

import numpy as np

from .. import _core
from ..io import load as _load_index
from .log import ADD, ADD_GROUPED, REMOVE, ShardLog
from .manifest import field_sizes, new_index, read_manifest, shard_file


class Shard:
    """What a Ray actor holding one shard runs: its index, its snapshot and its log (see the package docs).

    Built from the directory alone, so that when Ray restarts it after a crash it finds the state
    the last acknowledged change left."""

    def __init__(self, directory: str, shard: int) -> None:
        manifest = read_manifest(directory)
        self.directory, self.shard = directory, shard
        self.spec: dict[str, Any] = manifest["spec"]
        self.multi = self.spec["kind"] == "multi_field"
        snapshot = manifest["snapshots"][shard]
        if snapshot is None:
            self.index = new_index(self.spec, directory)
        else:
            # Mapped: Flat and MultiField shards search their snapshot in place (file-backed pages
            # the OS may drop and re-read, not the heap; the first change copies them); MIH shards
            # build their tables from it. Verified (checksum, ids): a restart must not serve a
            # damaged file.
            self.index = _load_index(os.path.join(directory, snapshot), mmap=True, verify=True)
            expected = new_index({**self.spec, "trained": False})  # its kind and shape, for the check
            if type(self.index) is not type(expected) or self._shape(self.index) != self._shape(expected):
                raise _core.FormatError(f"{snapshot}: holds {self.index!r}, the manifest says {self.spec}")
        self.log = ShardLog(os.path.join(directory, shard_file(shard, ".log")), field_sizes(self.spec))
        for op, ids, codes, groups in self.log.records():  # idempotent: see replay()
            self._replay(op, ids, codes, groups)

    @staticmethod
    def _shape(index: Any) -> Any:
        return index.fields if hasattr(index, "fields") else index.nbits

    # Replaying a record whose effect the snapshot already holds (a crash between committing a
    # snapshot and emptying the log) must change nothing: adds skip present ids, removes absent ones.
    def _replay(self, op: int, ids: np.ndarray, codes: list[np.ndarray], groups: np.ndarray | None) -> None:
        present = self.contains(ids)
        if op == REMOVE:
            if present.any():
                self.index.remove(ids[present])
            return
        new = ~present
        if new.any():
            self._apply_add(ids[new], [c[new] for c in codes], None if groups is None else groups[new])

    def _apply_add(self, ids: np.ndarray, codes: list[np.ndarray], groups: np.ndarray | None) -> None:
        if self.multi:
            self.index.add(dict(zip(self.spec["fields"], codes)), ids, groups)
        else:
            self.index.add(codes[0], ids)

    # -- the driver's calls ---------------------------------------------------------------------
    def ping(self) -> int:
        return os.getpid()

    def set_centroids(self, rows: np.ndarray) -> None:
        """An IVF shard's centroids, the same on every shard (the manifest names them first)."""
        self.index.centroids = rows
        self.spec["trained"] = True

    def info(self) -> dict[str, int]:
        return {"ntotal": len(self.index), "next_id": self.index.next_id, "pid": os.getpid()}

    def contains(self, ids: np.ndarray) -> np.ndarray:
        return np.fromiter((int(i) in self.index for i in ids), bool, len(ids))

    def add(self, ids: np.ndarray, codes: list[np.ndarray], groups: np.ndarray | None, retry: bool) -> int:
        """Adds, then logs (fsync), then answers; a retry of an add that reached the log is a no-op."""
        if retry:
            present = self.contains(ids)
            if present.all():
                stored = self.get(ids, None)
                if all(np.array_equal(a, b) for a, b in zip(stored, codes)):
                    return 0
            if present.any():
                raise ValueError(f"shard {self.shard}: a retried add found {int(present.sum())} of its "
                                 f"{len(ids)} ids already present with other codes")
        self._apply_add(ids, codes, groups)
        try:
            self.log.append(ADD if groups is None else ADD_GROUPED, ids, codes, groups)
        except BaseException:
            self.index.remove(ids)  # not durable, so not acknowledged: leave no trace
            raise
        return len(ids)

    def remove(self, ids: np.ndarray, retry: bool) -> int:
        present = self.contains(ids)
        if retry:  # a retry of a remove that reached the log removes what is left
            ids = ids[present]
        elif not present.all():
            raise KeyError(f"id {ids[np.flatnonzero(~present)[0]]} is not in the index")
        if len(ids):
            self.log.append(REMOVE, ids)  # every id is present, so the removal below cannot fail
            self.index.remove(ids)
        return len(ids)

    def get(self, ids: np.ndarray, field: int | None) -> list[np.ndarray]:
        if not self.multi:
            return [self.index.get(ids)]
        names = list(self.spec["fields"])
        return [self.index.get(ids, names[field])] if field is not None else list(self.index.get(ids).values())

    def groups(self, ids: np.ndarray) -> np.ndarray:
        return self.index.groups(ids)

    def ids(self) -> np.ndarray:
        return self.index.ids()

    def search(self, queries: Any, k: int, threads: int | None, options: dict[str, Any]) -> tuple[Any, ...]:
        """options: allow / deny (this shard's ids), and for multi-field indexes weights,
        exclude_groups, one_per_group."""
        if not self.multi:
            return tuple(self.index.search(queries, k, threads=threads, **options))
        d, i = self.index.search(dict(zip(self.spec["fields"], queries)), k, threads=threads, **options)
        if options.get("one_per_group"):
            g = np.full(i.shape, -1, np.int64)
            real = i >= 0
            g[real] = self.index.groups(i[real])
            return d, i, g
        return d, i

    def range_search(self, queries: np.ndarray, radius: int, threads: int | None,
                     options: dict[str, Any]) -> tuple[np.ndarray, ...]:
        return tuple(self.index.range_search(queries, radius, threads=threads, **options))

    def snapshot(self, directory: str, token: str) -> str:
        name = shard_file(self.shard, f".{token}.hx")
        self.index.save(os.path.join(directory, name))
        return name

    def reset_log(self) -> None:
        self.log.reset()
