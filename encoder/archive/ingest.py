"""Reading cases for the archive: file checksums, and volumes read and sliced by a pool of worker
processes while the main process encodes (the network, not the disk, sets the pace)."""
from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..data import CaseFiles, SliceSet, load_case, slice_case


def case_paths(files: CaseFiles) -> dict[str, Path]:
    """Role -> file of every file the archive reads for a case (a DICOM series: one role per file,
    numbered in the series' file order)."""
    paths = {}
    for contrast, where in files.images.items():
        if isinstance(where, (str, os.PathLike)):
            paths[contrast] = Path(where)
        else:
            paths.update({f"{contrast}:{n:05d}": f for n, f in enumerate(where.files)})
    for role in ("seg", "mask"):
        if getattr(files, role) is not None:
            paths[role] = getattr(files, role)
    return paths


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_records(files: CaseFiles, known: dict | None = None) -> dict[str, list]:
    """Role -> [path, size, mtime_ns, sha256]. A file whose path, size and modification time match
    ``known`` (the records stored when it was added) keeps its stored sum unread, as make and rsync
    trust them; any other file is read and summed."""
    out = {}
    for role, path in case_paths(files).items():
        st = os.stat(path)
        old = (known or {}).get(role)
        if old is not None and old[:3] == [str(path), st.st_size, st.st_mtime_ns]:
            out[role] = old
        else:
            out[role] = [str(path), st.st_size, st.st_mtime_ns, sha256_file(path)]
    return out


def case_checksum(records: dict[str, list]) -> str:
    """One sum for a case: over its roles and their files' sums (not their paths: a moved folder is
    the same case)."""
    return hashlib.sha256(json.dumps(sorted((r, v[3]) for r, v in records.items())).encode()).hexdigest()


@dataclass
class ReadCase:
    files: CaseFiles
    records: dict | None = None
    slices: SliceSet | None = None
    levels: np.ndarray | None = None  # (N,) 0 first brain slice .. 1 last
    pixel_mm2: float = 0.0  # in-plane area of one pixel of the model's slices
    thickness_mm: float = 0.0
    error: str | None = None


def read_case(files: CaseFiles, size: int) -> ReadCase:
    """One case's checksums and slices; an unreadable case comes back with the loader's error."""
    try:
        records = file_records(files)
        # a phantom's anatomy and healthy counterpart are for training and evaluation, not the archive
        case = load_case(replace(files, anatomy=None, healthy=None, healthy_anatomy=None))
        slices = slice_case(case, size=size, drop_empty=True)
        if not len(slices):
            raise ValueError(f"case {files.case_id}: no axial slice holds brain")
        z = slices.slice_index.astype(np.float64)
        levels = (z - z[0]) / (z[-1] - z[0]) if len(z) > 1 else np.zeros(1)
        voxel = np.sqrt((case.affine[:3, :3] ** 2).sum(axis=0))
        side = max(case.images.shape[1:3])  # _square pads the in-plane axes to the larger
        pixel = side * float(voxel[:2].mean()) / size
        return ReadCase(files, records, slices, levels, pixel * pixel, float(voxel[2]))
    except Exception as exc:  # recorded against the case; the others go on
        return ReadCase(files, error=f"{type(exc).__name__}: {exc}")


def read_cases(cases: Iterable[CaseFiles], size: int, workers: int) -> Iterator[ReadCase]:
    """The cases read in order, ``workers`` processes ahead of the caller (at most two cases each
    waiting, so memory stays bounded however many cases an ingest holds); 0: in this process."""
    cases = list(cases)
    if workers < 1 or len(cases) <= 1:
        for files in cases:
            yield read_case(files, size)
        return
    from hashindex.allocator import worker_allocator

    with ProcessPoolExecutor(max_workers=min(workers, len(cases)), initializer=worker_allocator()) as pool:
        ahead: deque[Future] = deque()
        todo = iter(cases)
        for files in todo:
            ahead.append(pool.submit(read_case, files, size))
            if len(ahead) >= 2 * workers:
                break
        while ahead:
            done = ahead.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                ahead.append(pool.submit(read_case, nxt, size))
            yield done
