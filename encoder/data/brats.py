"""BraTS volumes (real ones, or phantoms written in their layout) as numpy arrays and 2-D slices.

Preprocessing follows the paper: each volume is z-scored over its non-zero voxels, cut into axial
slices, padded/cropped to a square and resized to the model's resolution; each slice carries an
"abnormal" flag (any tumour label) and its case id and slice index.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from .labels import ANATOMY_LABELS
from .naming import NAMINGS

MODALITIES = ("t1", "t1ce", "t2", "flair")
SLICES_FORMAT = 1


@dataclass(frozen=True)
class CaseFiles:
    """Where one case's files are; optional parts are None when absent."""

    case_id: str
    naming: str
    images: tuple[Path, ...]  # in MODALITIES order
    seg: Path | None = None
    anatomy: Path | None = None
    healthy: tuple[Path, ...] | None = None
    healthy_anatomy: Path | None = None


@dataclass
class Case:
    """One loaded case: arrays on the file's voxel grid, tumour labels in the internal scheme."""

    case_id: str
    images: np.ndarray  # (4, X, Y, Z) float32, MODALITIES order
    affine: np.ndarray
    seg: np.ndarray | None = None  # (X, Y, Z) uint8 0..3, None when the case has no segmentation
    anatomy: np.ndarray | None = None  # phantoms only
    healthy: np.ndarray | None = None  # phantoms only: the same subject without the tumour
    healthy_anatomy: np.ndarray | None = None


def _existing(folder: Path, stem: str) -> Path | None:
    for ext in (".nii.gz", ".nii"):
        path = folder / (stem + ext)
        if path.is_file():
            return path
    return None


def _case_files(folder: Path, case_id: str) -> CaseFiles | None:
    for naming in NAMINGS.values():
        stem = lambda key: naming.filename(case_id, key)[: -len(".nii.gz")]  # noqa: E731
        found = {key: _existing(folder, stem(key)) for key in MODALITIES + ("seg",)}
        if not any(found.values()):
            continue
        missing = [key for key in MODALITIES if found[key] is None]
        if missing:
            raise FileNotFoundError(
                f"case {case_id} in {folder}: missing modality {', '.join(missing)} "
                f"(expected {', '.join(stem(k) + '.nii.gz' for k in missing)})"
            )
        healthy = tuple(_existing(folder, stem("healthy_" + key)) for key in MODALITIES)
        return CaseFiles(
            case_id=case_id,
            naming=naming.name,
            images=tuple(found[key] for key in MODALITIES),  # type: ignore[misc]
            seg=found["seg"],
            anatomy=_existing(folder, stem("anat")),
            healthy=healthy if all(healthy) else None,  # type: ignore[arg-type]
            healthy_anatomy=_existing(folder, stem("healthy_anat")),
        )
    return None


def find_cases(root: str | os.PathLike) -> list[CaseFiles]:
    """Every case under ``root`` (``<root>/<case>/<case>_t1.nii.gz`` ... or BraTS 2023's
    ``<root>/<case>/<case>-t1n.nii.gz`` ...), sorted by case id; ``root`` may also be one case folder."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"root: {root} is not a folder")
    single = _case_files(root, root.name)
    if single is not None:
        return [single]
    cases = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = _case_files(folder, folder.name)
        if files is not None:
            cases.append(files)
    if not cases:
        raise FileNotFoundError(
            f"no BraTS cases under {root}: expected <case>/<case>_t1.nii.gz, _t1ce, _t2, _flair[, _seg] "
            "(BraTS 2018-2021) or <case>/<case>-t1n.nii.gz, -t1c, -t2w, -t2f[, -seg] (BraTS 2023)"
        )
    return cases


def _read(path: Path, what: str) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    try:
        image = nib.load(str(path))
        data = np.asarray(image.dataobj)
    except Exception as exc:  # nibabel raises many types for a damaged file
        raise ValueError(f"{path}: cannot read the {what} volume as NIfTI ({type(exc).__name__}: {exc})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3-D {what} volume, got shape {data.shape}")
    if data.dtype.kind not in "iuf":
        raise ValueError(f"{path}: expected a numeric {what} volume, got dtype {data.dtype}")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        raise ValueError(f"{path}: the {what} volume holds NaN or infinite values")
    return data, image.affine


def _check_grid(path: Path, data: np.ndarray, affine: np.ndarray, ref: Path, ref_shape, ref_affine) -> None:
    if data.shape != ref_shape:
        raise ValueError(f"{path}: shape {data.shape} differs from {ref.name}'s {ref_shape}")
    if not np.allclose(affine, ref_affine, atol=1e-3):
        raise ValueError(f"{path}: its affine differs from {ref.name}'s (the volumes are not on one grid)")


def _read_labels(path: Path, what: str, allowed: set[int], ref: Path, shape, affine) -> np.ndarray:
    data, aff = _read(path, what)
    _check_grid(path, data, aff, ref, shape, affine)
    if data.dtype.kind == "f" and not np.array_equal(data, np.round(data)):
        raise ValueError(f"{path}: {what} labels must be whole numbers")
    values = set(np.unique(data).astype(np.int64).tolist())
    if not values <= allowed:
        raise ValueError(f"{path}: unexpected {what} label values {sorted(values - allowed)}; expected {sorted(allowed)}")
    return data.astype(np.uint8)


def _read_images(paths: Sequence[Path], ref: Path | None = None, shape=None, affine=None):
    volumes = []
    for key, path in zip(MODALITIES, paths):
        data, aff = _read(path, key)
        if ref is None:
            ref, shape, affine = path, data.shape, aff
        _check_grid(path, data, aff, ref, shape, affine)
        if not np.any(data):
            raise ValueError(f"{path}: the {key} volume is empty (every voxel is 0)")
        volumes.append(data.astype(np.float32))
    return np.stack(volumes), ref, shape, affine


def load_case(files: CaseFiles | str | os.PathLike) -> Case:
    """Reads one case (a :class:`CaseFiles` or a case folder); errors name the offending file."""
    if not isinstance(files, CaseFiles):
        found = find_cases(files)
        if len(found) != 1:
            raise ValueError(f"files: expected one case folder, {files} holds {len(found)} cases")
        files = found[0]
    naming = NAMINGS[files.naming]
    images, ref, shape, affine = _read_images(files.images)
    case = Case(case_id=files.case_id, images=images, affine=affine)
    if files.seg is not None:
        seg = _read_labels(files.seg, "segmentation", naming.allowed_seg_values, ref, shape, affine)
        case.seg = naming.seg_from_file(seg)
    anatomy_values = set(ANATOMY_LABELS)
    if files.anatomy is not None:
        case.anatomy = _read_labels(files.anatomy, "anatomy", anatomy_values, ref, shape, affine)
    if files.healthy is not None:
        case.healthy = _read_images(files.healthy, ref, shape, affine)[0]
    if files.healthy_anatomy is not None:
        case.healthy_anatomy = _read_labels(files.healthy_anatomy, "anatomy", anatomy_values, ref, shape, affine)
    return case


def zscore(images: np.ndarray, stats_from: np.ndarray | None = None) -> np.ndarray:
    """Per channel: (x - mean) / std over the non-zero voxels, background left at 0 (as the paper).

    ``stats_from`` takes the statistics from another volume of the same shape, so that a healthy
    counterpart is scaled exactly like its subject.
    """
    images = np.asarray(images, dtype=np.float32)
    ref = images if stats_from is None else np.asarray(stats_from, dtype=np.float32)
    if ref.shape != images.shape:
        raise ValueError(f"stats_from: expected shape {images.shape}, got {ref.shape}")
    out = np.zeros_like(images)
    for c in range(images.shape[0]):
        mask = ref[c] != 0
        if not mask.any():
            raise ValueError(f"images: channel {c} is empty (every voxel is 0); cannot z-score it")
        values = ref[c][mask]
        std = float(values.std())
        keep = images[c] != 0
        out[c][keep] = (images[c][keep] - float(values.mean())) / (std if std > 0 else 1.0)
    return out


@dataclass
class SliceSet:
    """Axial slices ready for the model; every array has one row per slice."""

    images: np.ndarray  # (N, 4, S, S) float32, z-scored
    abnormal: np.ndarray  # (N,) int8: 1 tumour in the slice, 0 none, -1 unknown (no segmentation)
    case_ids: np.ndarray  # (N,) str
    slice_index: np.ndarray  # (N,) int32, index along the volume's axial axis
    depth: np.ndarray  # (N,) int32, axial slices in that volume
    seg: np.ndarray | None = None  # (N, S, S) uint8 tumour labels
    anatomy: np.ndarray | None = None  # (N, S, S) uint8 anatomy labels (phantoms)
    healthy: np.ndarray | None = None  # (N, 4, S, S) float32 healthy counterpart (phantoms)
    healthy_anatomy: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    def select(self, rows) -> "SliceSet":
        return SliceSet(**{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[rows]) for f in fields(self)})

    @staticmethod
    def concatenate(parts: Sequence["SliceSet"]) -> "SliceSet":
        if not parts:
            raise ValueError("parts: expected at least one SliceSet")
        out = {}
        for f in fields(SliceSet):
            values = [getattr(p, f.name) for p in parts]
            out[f.name] = None if any(v is None for v in values) else np.concatenate(values)
        return SliceSet(**out)

    def save(self, path: str | os.PathLike) -> None:
        arrays = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, format_version=np.array(SLICES_FORMAT), **arrays)
        os.replace(tmp, path)

    @staticmethod
    def load(path: str | os.PathLike) -> "SliceSet":
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except Exception as exc:
            raise ValueError(f"{path}: not a slice file written by SliceSet.save ({exc})") from exc
        version = int(arrays.pop("format_version", -1))
        if version != SLICES_FORMAT:
            raise ValueError(f"{path}: slice file format {version}, this version reads {SLICES_FORMAT}")
        names = {f.name for f in fields(SliceSet)}
        if not {"images", "abnormal", "case_ids", "slice_index", "depth"} <= set(arrays) <= names:
            raise ValueError(f"{path}: unexpected arrays {sorted(arrays)}")
        return SliceSet(**arrays)


def _square(volume: np.ndarray) -> np.ndarray:
    """Centre-crops / zero-pads the two in-plane axes (the last-but-one pair) to a square."""
    x, y = volume.shape[-3], volume.shape[-2]
    side = max(x, y)
    out = np.zeros(volume.shape[:-3] + (side, side, volume.shape[-1]), dtype=volume.dtype)
    ox, oy = (side - x) // 2, (side - y) // 2
    out[..., ox:ox + x, oy:oy + y, :] = volume
    return out


def _resize(volume: np.ndarray, size: int, labels: bool) -> np.ndarray:
    """In-plane resize of (..., X, X, Z) to (..., size, size, Z): linear with an anti-alias blur for
    images, nearest for labels."""
    from scipy import ndimage as ndi

    side = volume.shape[-2]
    if side == size:
        return volume
    factor = size / side
    lead = volume.ndim - 3
    zoom = (1.0,) * lead + (factor, factor, 1.0)
    if labels:
        return ndi.zoom(volume, zoom, order=0, grid_mode=True, mode="grid-constant")
    if factor < 1:
        sigma = (0.0,) * lead + (0.45 / factor, 0.45 / factor, 0.0)
        volume = ndi.gaussian_filter(volume, sigma)
    return ndi.zoom(volume, zoom, order=1, grid_mode=True, mode="grid-constant").astype(np.float32)


def slice_case(case: Case, size: int = 128, drop_empty: bool = True) -> SliceSet:
    """Axial slices of one case (axis 2 of the volume), z-scored per volume, resized to ``size``².

    ``drop_empty`` leaves out slices where every modality is 0 (outside the head), which carry no
    information and would all tie in retrieval.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 8 <= size <= 1024:
        raise ValueError(f"size: expected an int in [8, 1024], got {size!r}")
    images = zscore(case.images)
    keep = np.flatnonzero(np.any(case.images != 0, axis=(0, 1, 2))) if drop_empty else np.arange(images.shape[-1])
    def prepare(volume: np.ndarray, labels: bool) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(_resize(_square(volume[..., keep]), size, labels), -1, 0))

    out = SliceSet(
        images=prepare(images, False),
        abnormal=np.full(keep.size, -1, dtype=np.int8),
        case_ids=np.array([case.case_id] * keep.size),
        slice_index=keep.astype(np.int32),
        depth=np.full(keep.size, images.shape[-1], dtype=np.int32),
    )
    if case.seg is not None:
        out.seg = prepare(case.seg, True)
        out.abnormal = np.any(case.seg[..., keep] > 0, axis=(0, 1)).astype(np.int8)
    if case.anatomy is not None:
        out.anatomy = prepare(case.anatomy, True)
    if case.healthy is not None:
        out.healthy = prepare(zscore(case.healthy, stats_from=case.images), False)
    if case.healthy_anatomy is not None:
        out.healthy_anatomy = prepare(case.healthy_anatomy, True)
    return out


def load_slices(
    root: str | os.PathLike,
    size: int = 128,
    cases: Iterable[str] | None = None,
    drop_empty: bool = True,
    progress: bool | Callable[[Iterable], Iterable] = False,
) -> SliceSet:
    """Slices of every case under ``root`` (or of the named ``cases``), concatenated in case order."""
    found = find_cases(root)
    if cases is not None:
        wanted = list(cases)
        by_id = {c.case_id: c for c in found}
        unknown = [c for c in wanted if c not in by_id]
        if unknown:
            raise KeyError(f"cases: {unknown} not found under {root}")
        found = [by_id[c] for c in wanted]
    stream: Iterable[CaseFiles] = found
    if progress:
        if callable(progress):
            stream = progress(found)
        else:
            from tqdm import tqdm

            stream = tqdm(found, desc="slicing", unit="case")
    return SliceSet.concatenate([slice_case(load_case(f), size, drop_empty) for f in stream])
