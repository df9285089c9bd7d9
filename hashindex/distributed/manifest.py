"""A sharded index's directory: the manifest (what the index is, how ids are routed, each shard's
snapshot), written atomically and checked on open, and the names of the shards' files."""
from __future__ import annotations

import json
import os
import secrets
from typing import Any

from .. import _core
from .merge import ROUTING

MANIFEST = "manifest.json"
CENTROIDS = "centroids.hx"  # an IVF index's centroids: an empty trained IVFIndex, in the index format
MANIFEST_FORMAT = "hashindex-sharded"
MANIFEST_VERSION = 1


def fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: str, data: dict[str, Any]) -> None:
    tmp = f"{path}.tmp-{secrets.token_hex(4)}"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path) or ".")


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
    if not isinstance(spec, dict) or spec.get("kind") not in ("flat", "mih", "ivf", "multi_field") or (
            spec["kind"] == "ivf" and not (isinstance(spec.get("nlist"), int) and isinstance(spec.get("trained"), bool)
                                           and isinstance(spec.get("nprobe"), int))):
        raise _core.FormatError(f"{path}: invalid index spec {spec!r}")
    return manifest


def new_index(spec: dict[str, Any], directory: str | None = None) -> Any:
    """An empty index of ``spec``; an IVF one trained with the centroids kept in ``directory``."""
    from ..flat import FlatIndex
    from ..io import load
    from ..ivf import IVFIndex
    from ..mih import MIHIndex
    from ..multi_field import MultiFieldIndex

    if spec["kind"] == "flat":
        return FlatIndex(spec["nbits"])
    if spec["kind"] == "mih":
        return MIHIndex(spec["nbits"], spec.get("m"))
    if spec["kind"] == "ivf":
        if not spec.get("trained"):
            return IVFIndex(spec["nbits"], spec["nlist"])
        path = os.path.join(directory or ".", CENTROIDS)
        index = load(path, verify=True)
        if not isinstance(index, IVFIndex) or (index.nbits, index.nlist, len(index)) != (spec["nbits"], spec["nlist"], 0):
            raise _core.FormatError(f"{path}: holds {index!r}, not the empty trained IVFIndex the manifest says")
        return index
    return MultiFieldIndex(spec["fields"], mih=spec.get("mih", False))


def field_sizes(spec: dict[str, Any]) -> list[int]:
    if spec["kind"] == "multi_field":
        return [bits // 8 for bits in spec["fields"].values()]
    return [spec["nbits"] // 8]


def shard_file(shard: int, suffix: str) -> str:
    return f"shard-{shard:05d}{suffix}"
