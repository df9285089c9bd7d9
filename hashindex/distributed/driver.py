"""The driver: sharded indexes whose shards are Ray actors (see the package docs). The only module of
hashindex that imports Ray."""
from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .. import _core
from .._results import SearchResult
from .._validate import (
    filter_arg,
    ids_arg,
    int_arg,
    threads_arg,
)
from . import ShardUnavailableError
from .manifest import CENTROIDS, MANIFEST, MANIFEST_FORMAT, MANIFEST_VERSION, field_sizes, write_json_atomic
from .merge import ROUTING, merge_knn, route
from .shard import Shard

try:
    import ray
    import ray.exceptions
except ImportError as _exc:  # pragma: no cover - depends on the install
    raise ImportError("hashindex.distributed needs Ray: pip install 'hashindex[distributed]'") from _exc

INLINE_BYTES = 64 << 10  # query blocks up to this size travel inside each call; see _ship


def start_local_ray(**init_kwargs: Any) -> None:
    """``ray.init(**init_kwargs)`` from a neutral working directory. Ray puts the driver's current
    directory on its workers' ``sys.path``; started from a hashindex source checkout, the workers
    would then import the source folder (no compiled core) instead of the installed package."""
    init_kwargs.setdefault("include_dashboard", False)
    init_kwargs.setdefault("log_to_driver", False)
    cwd = os.getcwd()
    os.chdir(tempfile.gettempdir())
    try:
        ray.init(**init_kwargs)
    finally:
        os.chdir(cwd)


# (shard, actor method, arguments); add and remove also get retry=True when sent again after a failure
_Call = tuple[int, str, tuple[Any, ...]]
_RETRY_AWARE = ("add", "remove")


class _Sharded:
    """What both sharded kinds share: actors, routing, retries, persistence."""

    _spec: dict[str, Any]

    def __init__(self, spec: dict[str, Any], shards: int, directory: str | os.PathLike[str] | None, *,
                 recovery_timeout: float | None, threads: int | None, batch_size: int,
                 actor_options: Mapping[str, Any] | None, _open: bool = False) -> None:
        self._shards = int_arg(shards, "shards", minimum=1, maximum=1 << 16)
        if recovery_timeout is not None and (not isinstance(recovery_timeout, (int, float))
                                             or isinstance(recovery_timeout, bool) or recovery_timeout < 0):
            raise ValueError(f"recovery_timeout: expected seconds >= 0 or None (wait forever), got {recovery_timeout!r}")
        self.recovery_timeout = None if recovery_timeout is None else float(recovery_timeout)
        self._threads = None if threads is None else threads_arg(threads)
        self.batch_size = int_arg(batch_size, "batch_size", minimum=1)
        if actor_options is not None and not isinstance(actor_options, Mapping):
            raise TypeError(f"actor_options: expected a mapping of Ray actor options, got {type(actor_options).__name__}")
        self._actor_options = dict(actor_options or {})
        self._lock = threading.RLock()  # one mutation at a time from this driver
        self._spec = spec
        #: Calls answered only after a shard failed and came back (Ray's restart or ours).
        self.recoveries = 0
        self._owned_dir = directory is None
        self._read_only = False
        if directory is None:
            directory = tempfile.mkdtemp(prefix="hashindex-shards-")
        self.directory = os.path.abspath(os.fspath(directory))
        if not _open:
            self._create_directory()
        if not ray.is_initialized():
            start_local_ray()
        self._actors: list[Any] = [self._new_actor(s) for s in range(self._shards)]
        try:
            infos = ray.get([a.info.remote() for a in self._actors])
        except ray.exceptions.RayActorError as exc:
            self._kill_actors()
            cause = getattr(exc, "cause", None) or exc
            raise _core.FormatError(f"{self.directory}: a shard could not open: {cause}") from None
        self._next_id = max(info["next_id"] for info in infos)

    def _create_directory(self) -> None:
        os.makedirs(self.directory, exist_ok=True)
        if os.path.exists(os.path.join(self.directory, MANIFEST)):
            raise FileExistsError(f"directory: {self.directory} already holds a sharded index; open it with "
                                  f"hashindex.distributed.load()")
        self._write_manifest([None] * self._shards)

    def _write_manifest(self, snapshots: list[str | None], directory: str | None = None) -> None:
        from .. import __version__

        write_json_atomic(os.path.join(directory or self.directory, MANIFEST), {
            "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "routing": ROUTING,
            "shards": self._shards, "spec": self._spec, "snapshots": snapshots, "written_by": __version__,
        })

    def _new_actor(self, shard: int) -> Any:
        options: dict[str, Any] = {"max_restarts": -1, "max_task_retries": 0, "scheduling_strategy": "SPREAD"}
        options.update(self._actor_options)
        return ray.remote(Shard).options(**options).remote(self.directory, shard)

    # -- calls that survive a shard's restart ---------------------------------------------------
    def _gather(self, calls: Sequence[_Call]) -> list[Any]:
        """Runs each call on its shard and returns the answers in order. A shard that
        fails is retried once Ray has restarted it (or, if the actor is gone for good, once it has
        been recreated from the directory) until ``recovery_timeout``; then ShardUnavailableError."""
        refs = [self._submit(call, False) for call in calls]
        out: list[Any] = [None] * len(calls)
        for n, call in enumerate(calls):
            shard = call[0]
            deadline = None if self.recovery_timeout is None else time.monotonic() + self.recovery_timeout
            failure: BaseException | None = None
            delay = 0.02
            while True:
                try:
                    out[n] = ray.get(refs[n]) if failure is None else self._retry(shard, call, deadline)
                    self.recoveries += failure is not None
                    break
                except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as exc:
                    failure = exc
                    if deadline is not None and time.monotonic() >= deadline:
                        raise ShardUnavailableError(
                            f"shard {shard} did not recover within recovery_timeout={self.recovery_timeout} s; "
                            f"no partial answer is returned (last error: {type(exc).__name__}: {exc})") from None
                    if isinstance(exc, ray.exceptions.ActorDiedError) and not self._read_only and self._gone(shard):
                        self._actors[shard] = self._new_actor(shard)
                    time.sleep(delay)
                    delay = min(delay * 2, 0.5)
        return out

    def _submit(self, call: _Call, retry: bool) -> Any:
        shard, method, args = call
        extra = {"retry": retry} if method in _RETRY_AWARE else {}
        return getattr(self._actors[shard], method).remote(*args, **extra)

    def _retry(self, shard: int, call: _Call, deadline: float | None) -> Any:
        timeout = None if deadline is None else max(0.001, deadline - time.monotonic())
        return ray.get(self._submit(call, True), timeout=timeout)

    def _gone(self, shard: int) -> bool:
        """True when the actor is dead for good (killed with no_restart, its owner gone), so that a
        new one may open its files without two actors sharing one log."""
        try:
            ray.get(self._actors[shard].ping.remote(), timeout=5)
            return False
        except ray.exceptions.ActorDiedError:
            return True
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            return False

    def _each(self, method: str, *args: Any) -> list[Any]:
        return self._gather([(s, method, args) for s in range(self._shards)])

    def _route(self, ids: np.ndarray) -> list[tuple[int, np.ndarray]]:
        return route(ids, self._shards)

    def _filters(self, allow: object, deny: object) -> list[dict[str, Any]]:
        """Each shard's allow= / deny= options: the ids of the filter that live on it (a filter is a
        set of ids, each on one shard), so each shard answers k results whenever k of its items pass."""
        allow_ids, deny_ids = filter_arg(allow, deny)
        if allow_ids is None and deny_ids is None:
            return [{} for _ in range(self._shards)]
        key, ids = ("allow", allow_ids) if allow_ids is not None else ("deny", deny_ids)
        assert ids is not None
        out: list[dict[str, Any]] = [{key: ids[:0]} for _ in range(self._shards)]
        for s, p in self._route(ids):
            out[s] = {key: ids[p]}
        return out

    def _present(self, ids: np.ndarray) -> np.ndarray:
        routes = self._route(ids)
        answers = self._gather([(s, "contains", (ids[p],)) for s, p in routes])
        present = np.zeros(len(ids), bool)
        for (_, p), answer in zip(routes, answers):
            present[p] = answer
        return present

    def _new_ids(self, ids: object, n: int) -> np.ndarray:
        """Ids for n new items: the given ones, checked against every shard, or the next n."""
        if ids is None:
            if self._next_id + n - 1 > np.iinfo(np.int64).max:
                raise ValueError(f"ids: {n} default ids from {self._next_id} would pass int64")
            return np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        ids = ids_arg(ids, "ids", count=n)
        uniq, first, counts = np.unique(ids, return_index=True, return_counts=True)
        if (counts > 1).any():
            dup = uniq[counts > 1][0]
            where = np.flatnonzero(ids == dup)[:2]
            raise ValueError(f"ids: id {dup} appears twice (positions {where[0]} and {where[1]})")
        present = self._present(ids)
        if present.any():
            pos = int(np.flatnonzero(present)[0])
            raise ValueError(f"ids: id {ids[pos]} (position {pos}) is already in the index")
        return ids

    def _add(self, ids: np.ndarray, codes: list[np.ndarray], groups: np.ndarray | None) -> None:
        if not len(ids):
            return
        parts = [(s, ids[p], [c[p] for c in codes], None if groups is None else groups[p]) for s, p in self._route(ids)]
        self._gather([(s, "add", (i, c, g)) for s, i, c, g in parts])
        self._next_id = max(self._next_id, int(ids.max()) + 1)

    # -- the index API ----------------------------------------------------------------------------
    @property
    def nshards(self) -> int:
        return self._shards

    @property
    def shard_actors(self) -> list[Any]:
        """The Ray actor handles, shard by shard (e.g. to place, watch or kill them)."""
        return list(self._actors)

    @property
    def ntotal(self) -> int:
        return len(self)

    def __len__(self) -> int:
        return sum(info["ntotal"] for info in self._each("info"))

    def __contains__(self, id: object) -> bool:
        if isinstance(id, (bool, np.bool_)) or not isinstance(id, (int, np.integer)) or int(id) < 0:
            return False
        return bool(self._present(np.asarray([id], np.int64))[0])

    def ids(self) -> np.ndarray:
        """Ids of all items, sorted."""
        return np.sort(np.concatenate(self._each("ids")))

    def remove(self, ids: np.ndarray | int) -> None:
        """Removes these items from their shards; KeyError (and nothing removed) if one is absent."""
        ids = ids_arg(ids, "ids")
        with self._writer():
            if len(np.unique(ids)) != len(ids):
                raise ValueError("ids: an id appears twice")
            present = self._present(ids)
            if not present.all():
                raise KeyError(f"id {ids[np.flatnonzero(~present)[0]]} is not in the index")
            self._gather([(s, "remove", (ids[p],)) for s, p in self._route(ids)])

    def _get(self, ids: object, field: int | None, nfields: int) -> list[np.ndarray]:
        ids = ids_arg(ids, "ids")
        present = self._present(ids)
        if not present.all():
            raise KeyError(f"id {ids[np.flatnonzero(~present)[0]]} is not in the index")
        routes = self._route(ids)
        answers = self._gather([(s, "get", (ids[p], field)) for s, p in routes])
        out: list[np.ndarray] = []
        for f in range(nfields):
            size = field_sizes(self._spec)[f if field is None else field]
            block = np.empty((len(ids), size), np.uint8)
            for (_, p), answer in zip(routes, answers):
                block[p] = answer[f]
            out.append(block)
        return out

    def _batches(self, nq: int) -> list[slice]:
        return [slice(b, min(b + self.batch_size, nq)) for b in range(0, nq, self.batch_size)] or [slice(0, 0)]

    def _fan_out(self, method: str, batches: list[tuple[Any, ...]],
                 options: list[dict[str, Any]] | None = None) -> list[list[Any]]:
        """Every batch's arguments to every shard, all submitted before the first answer is awaited
        (so shards work on batch b + 1 while the driver merges batch b); answers per batch. The last
        argument of a call is the batch's options merged with the shard's own (``options[shard]``)."""
        calls = [(s, method, args[:-1] + ({**args[-1], **(options[s] if options else {})},))
                 for args in batches for s in range(self._shards)]
        answers = self._gather(calls)
        return [answers[b * self._shards:(b + 1) * self._shards] for b in range(len(batches))]

    def _search(self, batches: list[tuple[Any, ...]], nq: int, k: int, float_distances: bool,
                grouped: bool, filters: list[dict[str, Any]]) -> SearchResult:
        d_out = np.empty((nq, k), np.float64 if float_distances else np.int32)
        i_out = np.empty((nq, k), np.int64)
        start = 0
        for answers in self._fan_out("search", batches, filters):
            d, i = merge_knn([a[0] for a in answers], [a[1] for a in answers], k,
                             [a[2] for a in answers] if grouped else None)
            d_out[start:start + len(d)], i_out[start:start + len(d)] = d, i
            start += len(d)
        return SearchResult(d_out, i_out)

    @staticmethod
    def _ship(array: Any) -> Any:
        """A query block as every shard's argument: small ones inline in the call (an object-store put
        costs more than sending a few KB to each shard), large ones put once and shared."""
        size = sum(a.nbytes for a in array) if isinstance(array, list) else array.nbytes
        return array if size <= INLINE_BYTES else ray.put(array)

    def _search_threads(self, threads: int | None) -> int | None:
        return self._threads if threads is None else threads_arg(threads)

    # -- persistence -------------------------------------------------------------------------------
    def save(self, directory: str | os.PathLike[str] | None = None) -> None:
        """Writes every shard's snapshot and a manifest. With no directory (or this index's own) it is
        a checkpoint: the logs are emptied once the new manifest is on disk. Any other directory gets a
        copy that :func:`load` opens. Atomic either way: a crash leaves the old manifest and the files
        it names; stray files of an unfinished save are removed by the next one."""
        target = self.directory if directory is None else os.path.abspath(os.fspath(directory))
        with self._writer():
            if target != self.directory:
                os.makedirs(target, exist_ok=True)
                if self._spec.get("trained"):  # an IVF index's centroids, which its manifest names
                    shutil.copy2(os.path.join(self.directory, CENTROIDS), os.path.join(target, CENTROIDS))
            token = secrets.token_hex(6)
            names = self._each("snapshot", target, token)
            self._write_manifest(names, target)
            if target == self.directory:
                self._each("reset_log")
            for name in os.listdir(target):
                if name.startswith("shard-") and name.endswith(".hx") and name not in names:
                    os.unlink(os.path.join(target, name))
                if target != self.directory and name.startswith("shard-") and name.endswith(".log"):
                    os.unlink(os.path.join(target, name))  # a copy holds its snapshots only

    def _writer(self) -> threading.RLock:
        if self._read_only:
            raise RuntimeError("this is a read-only copy of a sharded index (pickled, e.g. sent to a Ray task to "
                               "search in parallel); add, remove and save go through the index that made it")
        return self._lock

    # A copy (pickled into a Ray task or another process) shares the actors and searches with them:
    # several drivers merge in parallel when one driver's merge is the bottleneck (benchmarks/RESULTS.md).
    # It may not change the index: one writer keeps the default ids and the all-or-nothing checks.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_lock")
        state.update(_read_only=True, _owned_dir=False)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def close(self) -> None:
        """Stops the shard actors (their files stay, unless the index made its own temporary directory).
        On a read-only copy it only forgets them."""
        if self._read_only:
            self._actors = []
            return
        self._kill_actors()
        if self._owned_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _kill_actors(self) -> None:
        for actor in getattr(self, "_actors", []):
            try:
                ray.kill(actor, no_restart=True)
            except Exception:  # already gone
                pass
        self._actors = []

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
