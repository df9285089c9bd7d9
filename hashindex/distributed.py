"""Exact search over many machines: an index split into shards held by Ray actors.

``pip install 'hashindex[distributed]'`` (Ray pinned). Only this module imports ray; ``import
hashindex`` never does. Uses the Ray the program has already joined (``ray.init(address=...)``)
or starts a local one.

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

import json
import os
import secrets
import shutil
import struct
import tempfile
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import _core
from ._results import PAD_DISTANCE, RangeSearchResult, SearchResult
from ._validate import codes_arg, ids_arg, int_arg, k_arg, nbits_arg, threads_arg
from .io import load as _load_index

try:
    import ray
    import ray.exceptions
except ImportError as _exc:  # pragma: no cover - depends on the install
    raise ImportError("hashindex.distributed needs Ray: pip install 'hashindex[distributed]'") from _exc

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "hashindex-sharded"
MANIFEST_VERSION = 1
ROUTING = "splitmix64-mod"
INLINE_BYTES = 64 << 10  # query blocks up to this size travel inside each call; see _ship  # recorded in the manifest: a file routed by another rule must not be opened

LOG_MAGIC = b"HXSHLOG"
LOG_VERSION = 1
_LOG_HEADER = struct.Struct("<7sB")  # magic, version
_RECORD = struct.Struct("<4sBQQI")  # b"HXLR", op, rows, payload bytes, CRC-32 of the payload
_ADD, _ADD_GROUPED, _REMOVE = 1, 2, 3


class ShardUnavailableError(RuntimeError):
    """A shard did not come back within ``recovery_timeout``; the call's answer would be partial."""


def shard_of(ids: np.ndarray, shards: int) -> np.ndarray:
    """The shard of each id: splitmix64's finaliser, then modulo, so ids 0..n-1, or ids that are all
    multiples of the shard count, still spread evenly."""
    z = np.asarray(ids, dtype=np.int64).astype(np.uint64)
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(shards)).astype(np.int64)


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


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json_atomic(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp-{secrets.token_hex(4)}"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path) or ".")


def read_manifest(directory: str) -> dict[str, Any]:
    """The manifest of a sharded index directory, checked; FormatError if it is not one we can open."""
    path = os.path.join(directory, MANIFEST)
    try:
        with open(path) as f:
            manifest = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{directory}: no {MANIFEST}; not a sharded hashindex directory") from None
    except json.JSONDecodeError as exc:
        raise _core.FormatError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise _core.FormatError(f"{path}: not a sharded hashindex manifest")
    version = manifest.get("version")
    if not isinstance(version, int) or version < 1:
        raise _core.FormatError(f"{path}: invalid manifest version {version!r}")
    if version > MANIFEST_VERSION:
        raise _core.FormatError(f"{path}: manifest version {version} is newer than this hashindex reads "
                                f"({MANIFEST_VERSION}); upgrade hashindex")
    if manifest.get("routing") != ROUTING:
        raise _core.FormatError(f"{path}: routing {manifest.get('routing')!r}, expected {ROUTING!r}")
    shards = manifest.get("shards")
    snapshots = manifest.get("snapshots")
    if not isinstance(shards, int) or shards < 1 or not isinstance(snapshots, list) or len(snapshots) != shards:
        raise _core.FormatError(f"{path}: expected 'shards' >= 1 and one snapshot entry per shard")
    for name in snapshots:
        if name is not None and (not isinstance(name, str) or os.path.basename(name) != name):
            raise _core.FormatError(f"{path}: invalid snapshot name {name!r}")
    spec = manifest.get("spec")
    if not isinstance(spec, dict) or spec.get("kind") not in ("flat", "mih", "multi_field"):
        raise _core.FormatError(f"{path}: invalid index spec {spec!r}")
    return manifest


# --- one shard (runs inside a Ray actor) ------------------------------------------------------

def _new_index(spec: dict[str, Any]) -> Any:
    from .flat import FlatIndex
    from .mih import MIHIndex
    from .multi_field import MultiFieldIndex

    if spec["kind"] == "flat":
        return FlatIndex(spec["nbits"])
    if spec["kind"] == "mih":
        return MIHIndex(spec["nbits"], spec.get("m"))
    return MultiFieldIndex(spec["fields"], mih=spec.get("mih", False))


def _field_sizes(spec: dict[str, Any]) -> list[int]:
    if spec["kind"] == "multi_field":
        return [bits // 8 for bits in spec["fields"].values()]
    return [spec["nbits"] // 8]


class _ShardLog:
    """Append-only log of one shard's changes since its snapshot: length-prefixed records with a
    CRC-32 each. A torn last record (a crash mid-write, never acknowledged) is dropped on replay; a
    damaged record with data after it is corruption and raises FormatError."""

    def __init__(self, path: str, sizes: list[int]) -> None:
        self.path = path
        self.sizes = sizes
        self._file: Any = None

    def _encode(self, op: int, ids: np.ndarray, codes: Sequence[np.ndarray], groups: np.ndarray | None) -> bytes:
        parts = [np.ascontiguousarray(ids, dtype=np.int64).tobytes()]
        parts += [np.ascontiguousarray(c, dtype=np.uint8).tobytes() for c in codes]
        if groups is not None:
            parts.append(np.ascontiguousarray(groups, dtype=np.int64).tobytes())
        payload = b"".join(parts)
        return _RECORD.pack(b"HXLR", op, len(ids), len(payload), zlib.crc32(payload)) + payload

    def append(self, op: int, ids: np.ndarray, codes: Sequence[np.ndarray] = (),
               groups: np.ndarray | None = None) -> None:
        if self._file is None:
            self._file = open(self.path, "ab")
            if self._file.tell() == 0:
                self._file.write(_LOG_HEADER.pack(LOG_MAGIC, LOG_VERSION))
        self._file.write(self._encode(op, ids, codes, groups))
        self._file.flush()
        os.fsync(self._file.fileno())

    def records(self):
        """Yields (op, ids, codes, groups) in order; truncates a torn tail."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        if not data:
            return
        if len(data) < _LOG_HEADER.size or data[:7] != LOG_MAGIC:
            raise _core.FormatError(f"{self.path}: not a hashindex shard log")
        version = data[7]
        if version > LOG_VERSION:
            raise _core.FormatError(f"{self.path}: log version {version} is newer than this hashindex reads")
        pos = _LOG_HEADER.size
        while pos < len(data):
            torn = pos + _RECORD.size > len(data)
            if not torn:
                magic, op, rows, size, crc = _RECORD.unpack_from(data, pos)
                end = pos + _RECORD.size + size
                torn = end > len(data)
            if torn or zlib.crc32(data[pos + _RECORD.size:end]) != crc:
                if torn or end == len(data):  # the last record, cut short by a crash before its fsync
                    self._truncate(pos)
                    return
                raise _core.FormatError(f"{self.path}: damaged record at byte {pos} with records after it")
            if magic != b"HXLR" or op not in (_ADD, _ADD_GROUPED, _REMOVE):
                raise _core.FormatError(f"{self.path}: unknown record {magic!r}/{op} at byte {pos}")
            payload = memoryview(data)[pos + _RECORD.size:end]
            yield (op, *self._decode(op, rows, payload))
            pos = end

    def _decode(self, op: int, rows: int, payload: memoryview) -> tuple[np.ndarray, list[np.ndarray], Any]:
        expected = rows * 8 if op == _REMOVE else rows * (8 + sum(self.sizes) + (8 if op == _ADD_GROUPED else 0))
        if len(payload) != expected:
            raise _core.FormatError(f"{self.path}: record of {rows} rows has {len(payload)} bytes, expected {expected}")
        ids = np.frombuffer(payload, np.int64, rows, 0).copy()
        if op == _REMOVE:
            return ids, [], None
        offset, codes = rows * 8, []
        for size in self.sizes:
            codes.append(np.frombuffer(payload, np.uint8, rows * size, offset).reshape(rows, size).copy())
            offset += rows * size
        groups = np.frombuffer(payload, np.int64, rows, offset).copy() if op == _ADD_GROUPED else None
        return ids, codes, groups

    def _truncate(self, size: int) -> None:
        with open(self.path, "r+b") as f:
            f.truncate(size)
            f.flush()
            os.fsync(f.fileno())

    def reset(self) -> None:
        """Empties the log (after a snapshot that holds everything in it has been committed)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        with open(self.path, "wb") as f:
            f.write(_LOG_HEADER.pack(LOG_MAGIC, LOG_VERSION))
            f.flush()
            os.fsync(f.fileno())


def _shard_file(shard: int, suffix: str) -> str:
    return f"shard-{shard:05d}{suffix}"


class _Shard:
    """A Ray actor holding one shard: its index, its snapshot and its log (see the module docs).

    Built from the directory alone, so that when Ray restarts it after a crash it finds the state
    the last acknowledged change left."""

    def __init__(self, directory: str, shard: int) -> None:
        manifest = read_manifest(directory)
        self.directory, self.shard = directory, shard
        self.spec: dict[str, Any] = manifest["spec"]
        self.multi = self.spec["kind"] == "multi_field"
        snapshot = manifest["snapshots"][shard]
        if snapshot is None:
            self.index = _new_index(self.spec)
        else:
            # Mapped: Flat and MultiField shards search their snapshot in place (file-backed pages
            # the OS may drop and re-read, not the heap; the first change copies them); MIH shards
            # build their tables from it. Verified (checksum, ids): a restart must not serve a
            # damaged file.
            self.index = _load_index(os.path.join(directory, snapshot), mmap=True, verify=True)
            expected = _new_index(self.spec)
            if type(self.index) is not type(expected) or self._shape(self.index) != self._shape(expected):
                raise _core.FormatError(f"{snapshot}: holds {self.index!r}, the manifest says {self.spec}")
        self.log = _ShardLog(os.path.join(directory, _shard_file(shard, ".log")), _field_sizes(self.spec))
        for op, ids, codes, groups in self.log.records():  # idempotent: see replay()
            self._replay(op, ids, codes, groups)

    @staticmethod
    def _shape(index: Any) -> Any:
        return index.fields if hasattr(index, "fields") else index.nbits

    # Replaying a record whose effect the snapshot already holds (a crash between committing a
    # snapshot and emptying the log) must change nothing: adds skip present ids, removes absent ones.
    def _replay(self, op: int, ids: np.ndarray, codes: list[np.ndarray], groups: np.ndarray | None) -> None:
        present = self.contains(ids)
        if op == _REMOVE:
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

    def info(self) -> dict[str, int]:
        return {"ntotal": len(self.index), "next_id": int(self.index._index.next_id), "pid": os.getpid()}

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
            self.log.append(_ADD if groups is None else _ADD_GROUPED, ids, codes, groups)
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
            self.log.append(_REMOVE, ids)  # every id is present, so the removal below cannot fail
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
        if not self.multi:
            return tuple(self.index.search(queries, k, threads=threads))
        d, i = self.index.search(dict(zip(self.spec["fields"], queries)), k, threads=threads, **options)
        if options.get("one_per_group"):
            g = np.full(i.shape, -1, np.int64)
            real = i >= 0
            g[real] = self.index.groups(i[real])
            return d, i, g
        return d, i

    def range_search(self, queries: np.ndarray, radius: int, threads: int | None) -> tuple[np.ndarray, ...]:
        return tuple(self.index.range_search(queries, radius, threads=threads))

    def snapshot(self, directory: str, token: str) -> str:
        name = _shard_file(self.shard, f".{token}.hx")
        self.index.save(os.path.join(directory, name))
        return name

    def reset_log(self) -> None:
        self.log.reset()


# --- merging the shards' answers --------------------------------------------------------------

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


# --- the driver ---------------------------------------------------------------------------------

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
        from . import __version__

        _write_json_atomic(os.path.join(directory or self.directory, MANIFEST), {
            "format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "routing": ROUTING,
            "shards": self._shards, "spec": self._spec, "snapshots": snapshots, "written_by": __version__,
        })

    def _new_actor(self, shard: int) -> Any:
        options: dict[str, Any] = {"max_restarts": -1, "max_task_retries": 0, "scheduling_strategy": "SPREAD"}
        options.update(self._actor_options)
        return ray.remote(_Shard).options(**options).remote(self.directory, shard)

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
        """(shard, positions in ids) for every shard that holds some of these ids."""
        where = shard_of(ids, self._shards)
        order = np.argsort(where, kind="stable")
        bounds = np.searchsorted(where[order], np.arange(self._shards + 1))
        return [(s, order[bounds[s]:bounds[s + 1]]) for s in range(self._shards) if bounds[s + 1] > bounds[s]]

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
            size = _field_sizes(self._spec)[f if field is None else field]
            block = np.empty((len(ids), size), np.uint8)
            for (_, p), answer in zip(routes, answers):
                block[p] = answer[f]
            out.append(block)
        return out

    def _batches(self, nq: int) -> list[slice]:
        return [slice(b, min(b + self.batch_size, nq)) for b in range(0, nq, self.batch_size)] or [slice(0, 0)]

    def _fan_out(self, method: str, batches: list[tuple[Any, ...]]) -> list[list[Any]]:
        """Every batch's arguments to every shard, all submitted before the first answer is awaited
        (so shards work on batch b + 1 while the driver merges batch b); answers per batch."""
        answers = self._gather([(s, method, args) for args in batches for s in range(self._shards)])
        return [answers[b * self._shards:(b + 1) * self._shards] for b in range(len(batches))]

    def _search(self, batches: list[tuple[Any, ...]], nq: int, k: int, float_distances: bool,
                grouped: bool) -> SearchResult:
        d_out = np.empty((nq, k), np.float64 if float_distances else np.int32)
        i_out = np.empty((nq, k), np.int64)
        start = 0
        for answers in self._fan_out("search", batches):
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
            from .mih import MIHIndex
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

    def search(self, queries: np.ndarray, k: int, *, threads: int | None = None) -> SearchResult:
        """The k nearest codes of each query over all shards, exactly as FlatIndex.search returns them."""
        queries = codes_arg(queries, self.code_size, "queries")
        k = k_arg(k)
        threads = self._search_threads(threads)
        no_options: dict[str, Any] = {}
        batches = [(self._ship(queries[b]), k, threads, no_options) for b in self._batches(len(queries))]
        return self._search(batches, len(queries), k, False, False)

    def range_search(self, queries: np.ndarray, radius: int, *, threads: int | None = None) -> RangeSearchResult:
        """Every code within ``radius`` (inclusive) of each query, as FlatIndex.range_search."""
        queries = codes_arg(queries, self.code_size, "queries")
        radius = min(int_arg(radius, "radius", minimum=0), self.nbits)
        threads = self._search_threads(threads)
        slices = self._batches(len(queries))
        answers = self._fan_out("range_search", [(self._ship(queries[b]), radius, threads) for b in slices])
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
        from .multi_field import MultiFieldIndex

        checked = MultiFieldIndex(fields, mih=mih)  # one place checks field names, sizes and mih
        self._local = checked  # empty: borrows its argument checks
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
        arrays, n = self._local._field_arrays(codes, "codes")
        missing = [f for f, a in zip(self.fields, arrays) if a is None]
        if missing:
            raise ValueError(f"codes: every field is needed to add items, missing {missing}")
        if groups is not None:
            groups = ids_arg(groups, "groups", count=n)
        with self._writer():
            self._add(self._new_ids(ids, n), [a for a in arrays if a is not None], groups)

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
               threads: int | None = None) -> SearchResult:
        """As MultiFieldIndex.search, over all shards."""
        arrays, nq, w, k, exclude, one_per_group = self._local._search_args(
            queries, k, weights, exclude_groups, one_per_group)
        names = list(self.fields)
        weight_map = {n: x for n, x in zip(names, w) if x > 0}
        threads = self._search_threads(threads)
        batches: list[tuple[Any, ...]] = []
        for b in self._batches(nq):
            rows = b.stop - b.start
            qs = [a[b] if a is not None else np.zeros((rows, size), np.uint8)
                  for a, size in zip(arrays, _field_sizes(self._spec))]
            options: dict[str, Any] = {"weights": weight_map, "one_per_group": bool(one_per_group)}
            if exclude is not None:
                options["exclude_groups"] = exclude[b]
            batches.append((self._ship(qs), k, threads, options))
        return self._search(batches, nq, k, True, bool(one_per_group))


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
