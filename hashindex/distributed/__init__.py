"""Exact search over many machines: an index split into shards held by Ray actors.

``pip install 'hashindex[distributed]'`` (Ray pinned). Only ``driver`` imports Ray (``sharded``, the
public classes, through it), when a sharded index is first named; ``import hashindex`` never does,
and the manifest, the shard logs, routing and merging (``manifest``, ``log``, ``merge``, ``shard``)
work without it. Uses the Ray the program has
already joined (``ray.init(address=...)``) or starts a local one.

Each item lives on one shard, chosen by a hash of its id (so ``get``, ``remove`` and the duplicate
check ask one shard); a search goes to every shard in batches and the per-shard top k are merged
exactly: same distances, ids and (distance, id) order as one index over all items, ties included.
``one_per_group`` stays exact although a group's items may sit on several shards: a group among the
global k best is among the k best of the shard holding its best item, and the merge keeps each
group's first hit.

Durability: every shard keeps, in the index's directory, its last snapshot (a hashindex file) and an
append-only log of what was added and removed since. ``add`` and ``remove`` return only after the
log record is on disk (fsync), so an acknowledged change survives the actor's death: Ray restarts
the actor, which reloads its snapshot and replays its log; calls in flight are retried after the
restart (or raise :class:`ShardUnavailableError` once ``recovery_timeout`` has passed), never
answered from fewer shards. On several machines the directory must be a file system that every
node mounts at the same path (NFS, a parallel file system).
"""
from __future__ import annotations

from typing import Any


class ShardUnavailableError(RuntimeError):
    """A shard did not come back within ``recovery_timeout``; the call's answer would be partial."""


from .manifest import MANIFEST_VERSION, read_manifest  # noqa: E402
from .merge import merge_knn, merge_range, route, shard_of  # noqa: E402

_NEEDS_RAY = ("ShardedIndex", "ShardedMultiFieldIndex", "load", "start_local_ray")

__all__ = ["MANIFEST_VERSION", "ShardUnavailableError", "merge_knn", "merge_range", "read_manifest", "route",
           "shard_of", *_NEEDS_RAY]


def __getattr__(name: str) -> Any:
    """The Ray-backed names load Ray on first use: the rest of the package works without it."""
    if name in _NEEDS_RAY:
        from . import driver, sharded

        return getattr(driver if name == "start_local_ray" else sharded, name)
    raise AttributeError(f"module 'hashindex.distributed' has no attribute {name!r}")
