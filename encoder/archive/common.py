"""What the archive's modules share: its errors, the report of an add, the encoder's identity."""
from __future__ import annotations

import os
import signal
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


class ArchiveLockedError(BlockingIOError):
    """Another process is writing to the archive."""


class ModelMismatchError(ValueError):
    """The encoder offered is not the one that encoded the archive."""


@dataclass
class AddReport:
    """What an ``add`` did, case by case."""

    added: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already in, same files
    failed: dict[str, str] = field(default_factory=dict)  # case -> the loader's error (recorded)
    changed: dict[str, str] = field(default_factory=dict)  # in with other files: left as it was
    slices: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def encoder_identity(encoder: Any) -> dict[str, Any]:
    """What makes two encoders give the same codes: the weights' checksum and the hashing."""
    ident = dict(encoder.identity())
    for key in ("sha256", "normal_nbits", "abnormal_nbits", "image_size"):
        if key not in ident:
            raise TypeError(f"encoder: identity() lacks {key!r}; expected a CodeEncoder or an object like it")
    return ident


def _kill_point() -> None:
    """Fault injection for the crash tests: with HASHINDEX_ARCHIVE_KILL=N the process kills itself
    (SIGKILL, as a power cut or the OOM killer would) at the N-th point it passes."""
    target = os.environ.get("HASHINDEX_ARCHIVE_KILL")
    if target is None:
        return
    _kill_point.count = getattr(_kill_point, "count", 0) + 1  # type: ignore[attr-defined]
    if _kill_point.count == int(target):  # type: ignore[attr-defined]
        os.kill(os.getpid(), signal.SIGKILL)


def _default_encoder(encoder: Any) -> Any:
    if encoder is None or isinstance(encoder, (str, os.PathLike)):
        from ..codes import CodeEncoder

        return CodeEncoder.load(encoder)
    return encoder


def _describe(identity: dict[str, Any]) -> str:
    where = identity.get("checkpoint") or "a model given in memory"
    return (f"{where} (sha256 {str(identity.get('sha256'))[:12]}, {identity.get('hashing')} hashing, "
            f"{identity.get('normal_nbits')}+{identity.get('abnormal_nbits')} bits)")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _progress(total: int):
    from tqdm import tqdm

    return tqdm(total=total, desc="archive add", unit="case")
