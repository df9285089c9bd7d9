"""BraTS volumes (real ones, or phantoms written in their layout) as numpy arrays and 2-D slices.

Preprocessing follows the paper: each volume is z-scored over its non-zero voxels, cut into axial
slices, padded/cropped to a square and resized to the model's resolution; each slice carries an
"abnormal" flag (any tumour label) and its case id and slice index.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np

from hashindex.allocator import worker_allocator

from .labels import ANATOMY_LABELS
from .layouts import LAYOUTS, Layout, recognise

MODALITIES = ("t1", "t1ce", "t2", "flair")
SLICES_FORMAT = 2  # 2 added contrasts; 1 (every contrast present) still loads


@dataclass(frozen=True)
class CaseFiles:
    """Where one case's files are; absent contrasts and optional parts are missing / None."""

    case_id: str
    layout: str  # the name of the Layout that recognised it
    images: dict  # contrast -> Path, for the contrasts the case has (MODALITIES order)
    seg: Path | None = None
    mask: Path | None = None
    anatomy: Path | None = None
    healthy: dict | None = None  # contrast -> Path (phantoms)
    healthy_anatomy: Path | None = None
    labels: dict | None = None  # file value -> internal tumour label
    folder: Path | None = None  # the case folder
    problem: str | None = None  # found but unreadable (a damaged DICOM header): what load_case raises

    @property
    def naming(self) -> str:
        return self.layout

    @property
    def present(self) -> tuple[bool, ...]:
        return tuple(c in self.images for c in MODALITIES)


@dataclass
class Case:
    """One loaded case: arrays on the file's voxel grid turned to RAS+ (nibabel's closest canonical
    orientation, so every source shows the same side up), tumour labels in the internal scheme.
    Voxels outside the brain are 0 in every contrast; absent contrasts are 0 everywhere."""

    case_id: str
    images: np.ndarray  # (4, X, Y, Z) float32, MODALITIES order
    affine: np.ndarray
    seg: np.ndarray | None = None  # (X, Y, Z) uint8 0..3, None when the case has no segmentation
    anatomy: np.ndarray | None = None  # phantoms only
    healthy: np.ndarray | None = None  # phantoms only: the same subject without the tumour
    healthy_anatomy: np.ndarray | None = None
    present: tuple = (True, True, True, True)  # which of MODALITIES the case has
    mask: np.ndarray | None = None  # (X, Y, Z) bool brain mask; None: the non-zero voxels


def _layouts(layout) -> list[Layout]:
    if layout is None:
        return list(LAYOUTS.values())
    if layout == "dicom":
        return []
    if isinstance(layout, Layout):
        return [layout]
    if isinstance(layout, str) and layout in LAYOUTS:
        return [LAYOUTS[layout]]
    if isinstance(layout, (str, os.PathLike)) and Path(layout).suffix == ".json":
        return [Layout.from_json(layout)]
    if isinstance(layout, dict):
        return [Layout.from_dict(layout)]
    raise ValueError(f"layout: expected one of {sorted(LAYOUTS) + ['dicom']}, a Layout, a dict or a .json file, "
                     f"got {layout!r}")


def _case_files(folder: Path, layouts: list[Layout], dicom: bool = True, contrast_map: dict | None = None
                ) -> CaseFiles | None:
    names = [p.name for p in folder.iterdir() if p.is_file()]
    hit = recognise(folder, names, layouts)
    if hit is None:
        if not dicom:
            return None
        from .dicom import case_series

        found = case_series(folder, contrast_map)
        if found is None:
            return None
        return CaseFiles(case_id=folder.name, layout="dicom", images=found[0], folder=folder, problem=found[1])
    layout, found = hit
    healthy = {c: found[f"healthy:{c}"] for c in MODALITIES if f"healthy:{c}" in found}
    images = {c: found[f"image:{c}"] for c in MODALITIES if f"image:{c}" in found}
    return CaseFiles(
        case_id=folder.name,
        layout=layout.name,
        images=images,
        seg=found.get("seg"),
        mask=found.get("mask"),
        anatomy=found.get("anatomy"),
        healthy=healthy if healthy and set(healthy) == set(images) else None,
        healthy_anatomy=found.get("healthy_anatomy"),
        labels=dict(layout.labels),
        folder=folder,
    )


def find_cases(root: str | os.PathLike, layout: str | Layout | dict | os.PathLike | None = None,
               contrast_map: dict | str | os.PathLike | None = None) -> list[CaseFiles]:
    """Every case folder at any depth under ``root`` (or ``root`` itself if it is one), sorted by
    path. A folder is a case when a layout recognises at least one contrast among its files
    (``layout``: one built-in name, a :class:`Layout`, its dict or a JSON file; default: try all), or
    when the DICOM files below it are one study's series (``layout="dicom"``: only those;
    ``contrast_map``: see hashindex.encoder.data.dicom)."""
    from .dicom import check_contrast_map

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"root: {root} is not a folder")
    layouts = _layouts(layout)
    contrast_map = check_contrast_map(contrast_map)
    dicom = layout is None or layout == "dicom"
    cases = []
    seen_folders: set = set()
    # Symbolic links are followed (a data folder of links to the real cases is common); a folder met
    # again through a link, a cycle included, is read once.
    for folder, subdirs, _files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen_folders:
            subdirs[:] = []
            continue
        seen_folders.add(real)
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        files = _case_files(Path(folder), layouts, dicom, contrast_map)
        if files is not None:
            cases.append(files)
            subdirs[:] = []  # a case folder holds no further cases
    if not cases:
        raise FileNotFoundError(
            f"no BraTS cases under {root}: expected <case>/<case>_t1.nii.gz, _t1ce, _t2, _flair[, _seg] "
            "(BraTS 2018-2021), <case>/<case>-t1n.nii.gz, -t1c, -t2w, -t2f[, -seg] (BraTS 2023), "
            "Flair_*/T1c_*/OTMultiClass (DeepMedic's BraTS 2013), *_t1_bet/*_fla_bet, or a folder of one study's "
            "DICOM series; for other names pass a layout (see hashindex.encoder.data.layouts)"
        )
    seen: dict = {}
    for case in cases:
        seen.setdefault(case.case_id, []).append(case)
    twice = [k for k, v in seen.items() if len(v) > 1]
    if twice:
        raise ValueError(f"root: case id {twice[0]!r} names two folders under {root}; case ids must be unique")
    return cases


def _load_nifti(path: Path):
    """nibabel's image of ``path``; a gzipped NIfTI-1 decompressed in one call (a fifth faster than
    nibabel's streaming reader, whose Python loop reads it in small chunks), anything else by nib.load."""
    import gzip
    import io

    import nibabel as nib

    if str(path).endswith(".gz"):
        raw = gzip.decompress(Path(path).read_bytes())
        try:
            return nib.Nifti1Image.from_file_map({role: nib.FileHolder(fileobj=io.BytesIO(raw)) for role in ("header", "image")})
        except Exception:  # not NIfTI-1 (NIfTI-2, Analyze, ...): nibabel tells the kind by itself
            pass
    return nib.load(str(path))


def _read(path: Path, what: str) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    try:
        image = nib.as_closest_canonical(_load_nifti(path))
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


def _read_labels(path: Path, what: str, mapping: dict, ref: Path, shape, affine) -> np.ndarray:
    """Labels mapped through ``mapping`` (file value -> internal value); other values raise."""
    data, aff = _read(path, what)
    _check_grid(path, data, aff, ref, shape, affine)
    if data.dtype.kind == "f" and not np.array_equal(data, np.round(data)):
        raise ValueError(f"{path}: {what} labels must be whole numbers")
    if data.dtype == np.uint8:  # the usual label file: its values counted, not sorted
        values = np.flatnonzero(np.bincount(data.ravel(), minlength=1))
    else:
        values = np.unique(data).astype(np.int64)
    unknown = sorted(set(values.tolist()) - set(mapping))
    if unknown:
        raise ValueError(f"{path}: unexpected {what} label values {unknown}; expected {sorted(mapping)}")
    lut = np.zeros(int(values.max()) + 1 if values.size else 1, dtype=np.uint8)
    for value, label in mapping.items():
        if 0 <= value < lut.size:
            lut[value] = label
    return lut[data if data.dtype == np.uint8 else data.astype(np.int64)]


def _border_mode(volume: np.ndarray) -> float:
    """The most common value on the volume's six faces: the background's value (0 for skull-stripped
    scanner data, a constant below zero for data z-scored before the background was masked)."""
    faces = np.concatenate([volume[[0, -1]].ravel(), volume[:, [0, -1]].ravel(), volume[:, :, [0, -1]].ravel()])
    values, counts = np.unique(faces, return_counts=True)
    return float(values[np.argmax(counts)])


def brain_mask(images: np.ndarray, present: Sequence[bool]) -> np.ndarray:
    """Voxels where some present contrast differs from its background value."""
    mask = np.zeros(images.shape[1:], dtype=bool)
    for c, has in enumerate(present):
        if has:
            mask |= images[c] != _border_mode(images[c])
    return mask


def _read_images(paths: dict, ref: Path | None = None, shape=None, affine=None):
    images = None  # each volume cast straight into its plane: no per-volume copy, no stack
    for c, key in enumerate(MODALITIES):
        if key not in paths:
            continue
        path = paths[key]
        data, aff = _read(path, key)
        if ref is None:
            ref, shape, affine = path, data.shape, aff
        _check_grid(path, data, aff, ref, shape, affine)
        if data.min() == data.max():
            raise ValueError(f"{path}: the {key} volume is empty (every voxel is {data.flat[0]})")
        if images is None:
            images = np.zeros((len(MODALITIES), *shape), np.float32)
        images[c] = data
    if images is None:
        images = np.zeros((len(MODALITIES), *shape), np.float32)
    return images, ref, shape, affine


def _read_dicom(files: CaseFiles):
    from .dicom import read_contrasts

    volumes, affine = read_contrasts(files.images)
    shape = next(iter(volumes.values())).shape
    for key, volume in volumes.items():
        if np.all(volume == volume.flat[0]):
            raise ValueError(f"{files.images[key]}: the {key} volume is empty (every voxel is {volume.flat[0]})")
    images = np.stack([volumes.get(k, np.zeros(shape, np.float32)) for k in MODALITIES])
    return images, files.folder, shape, affine


def load_case(files: CaseFiles | str | os.PathLike, layout=None) -> Case:
    """Reads one case (a :class:`CaseFiles` or a case folder); errors name the offending file."""
    if not isinstance(files, CaseFiles):
        found = find_cases(files, layout)
        if len(found) != 1:
            raise ValueError(f"files: expected one case folder, {files} holds {len(found)} cases")
        files = found[0]
    if files.problem is not None:
        raise ValueError(f"case {files.case_id}: {files.problem}")
    if not files.images:
        raise ValueError(f"case {files.case_id}: no contrast file (expected some of {', '.join(MODALITIES)})")
    if files.layout == "dicom":
        images, ref, shape, affine = _read_dicom(files)
    else:
        images, ref, shape, affine = _read_images(files.images)
    present = files.present
    if files.mask is not None:
        data, aff = _read(files.mask, "brain mask")
        _check_grid(files.mask, data, aff, ref, shape, affine)
        mask = data > 0.5
    else:
        mask = brain_mask(images, present)
    if not mask.any():
        raise ValueError(f"case {files.case_id}: the brain mask is empty (no voxel differs from the background)")
    np.multiply(images, mask, out=images)  # 0 outside the brain; faster than a boolean-index store
    case = Case(case_id=files.case_id, images=images, affine=affine, present=present, mask=mask)
    labels = files.labels if files.labels is not None else LAYOUTS["brats2021"].labels
    if files.seg is not None:
        case.seg = _read_labels(files.seg, "segmentation", labels, ref, shape, affine)
    anatomy_values = {v: v for v in ANATOMY_LABELS}
    if files.anatomy is not None:
        case.anatomy = _read_labels(files.anatomy, "anatomy", anatomy_values, ref, shape, affine)
    if files.healthy is not None:
        case.healthy = _read_images(files.healthy, ref, shape, affine)[0]
    if files.healthy_anatomy is not None:
        case.healthy_anatomy = _read_labels(files.healthy_anatomy, "anatomy", anatomy_values, ref, shape, affine)
    return case


def zscore(images: np.ndarray, stats_from: np.ndarray | None = None, mask: np.ndarray | None = None,
           present: Sequence[bool] | None = None) -> np.ndarray:
    """Per channel: (x - mean) / std over the brain, background left at 0 (as the paper).

    The brain is ``mask`` where given, else each channel's non-zero voxels. ``stats_from`` takes the
    statistics from another volume of the same shape, so that a healthy counterpart is scaled exactly
    like its subject. Channels that ``present`` marks absent stay 0.
    """
    images = np.asarray(images, dtype=np.float32)
    ref = images if stats_from is None else np.asarray(stats_from, dtype=np.float32)
    if ref.shape != images.shape:
        raise ValueError(f"stats_from: expected shape {images.shape}, got {ref.shape}")
    out = np.zeros_like(images)
    for c in range(images.shape[0]):
        if present is not None and not present[c]:
            continue
        inside = (ref[c] != 0) if mask is None else mask
        if not inside.any():
            raise ValueError(f"images: channel {c} is empty (every voxel is 0); cannot z-score it")
        values = ref[c][inside]
        std = float(values.std())
        keep = (images[c] != 0) if mask is None else mask
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
    contrasts: np.ndarray | None = None  # (N, 4) bool: which of MODALITIES the slice's case has
    healthy_known: np.ndarray | None = None  # (N,) bool: the row's ``healthy`` is its true counterpart

    def __post_init__(self) -> None:
        if self.contrasts is None:
            self.contrasts = np.ones((len(self.images), len(MODALITIES)), dtype=bool)
        if self.healthy is not None and self.healthy_known is None:
            self.healthy_known = np.ones(len(self.images), dtype=bool)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    def select(self, rows) -> SliceSet:
        return SliceSet(**{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[rows]) for f in fields(self)})

    @staticmethod
    def concatenate(parts: Sequence[SliceSet]) -> SliceSet:
        """Rows of all parts. Tumour labels and healthy counterparts that only some parts have are
        filled with zeros for the others, whose rows then say so (``abnormal`` -1, ``healthy_known``
        False); anatomy labels are kept only when every part has them."""
        if not parts:
            raise ValueError("parts: expected at least one SliceSet")
        out = {}
        fill = {"seg": lambda p: np.zeros(p.images.shape[:1] + p.images.shape[2:], np.uint8),
                "healthy": lambda p: np.zeros_like(p.images),
                "healthy_known": lambda p: np.zeros(len(p), bool)}
        for f in fields(SliceSet):
            values = [getattr(p, f.name) for p in parts]
            if f.name in fill and any(v is not None for v in values):
                values = [fill[f.name](p) if v is None else v for p, v in zip(parts, values)]
            out[f.name] = None if any(v is None for v in values) else np.concatenate(values)
        return SliceSet(**out)

    def save(self, path: str | os.PathLike) -> None:
        arrays = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, format_version=np.array(SLICES_FORMAT), **arrays)
        os.replace(tmp, path)

    @staticmethod
    def load(path: str | os.PathLike) -> SliceSet:
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except Exception as exc:
            raise ValueError(f"{path}: not a slice file written by SliceSet.save ({exc})") from exc
        version = int(arrays.pop("format_version", -1))
        if version not in (1, SLICES_FORMAT):
            raise ValueError(f"{path}: slice file format {version}, this version reads {SLICES_FORMAT}")
        names = {f.name for f in fields(SliceSet)}
        if not {"images", "abnormal", "case_ids", "slice_index", "depth"} <= set(arrays) <= names:
            raise ValueError(f"{path}: unexpected arrays {sorted(arrays)}")
        return SliceSet(**arrays)


def _square(volume: np.ndarray) -> np.ndarray:
    """Centre-crops / zero-pads the two in-plane axes (the last-but-one pair) to a square."""
    x, y = volume.shape[-3], volume.shape[-2]
    if x == y:
        return volume
    side = max(x, y)
    out = np.zeros(volume.shape[:-3] + (side, side, volume.shape[-1]), dtype=volume.dtype)
    ox, oy = (side - x) // 2, (side - y) // 2
    out[..., ox:ox + x, oy:oy + y, :] = volume
    return out


def _resize(volume: np.ndarray, size: int, labels: bool) -> np.ndarray:
    """In-plane resize of (..., X, X, Z) to (..., size, size, Z): linear with an anti-alias blur for
    images, nearest for labels: ``scipy.ndimage.zoom``'s values (order 1 or 0, ``grid_mode=True``,
    ``mode="grid-constant"``; the same labels, images at most one float32 ulp apart, and on the demo
    and the real cases under ../shared identical: tests/test_brats.py) in a tenth of its time. Each
    output pixel blends two input pixels per axis, which zoom reaches through a general N-dimensional
    spline loop that reading a case spent most of its time in."""
    from scipy import ndimage as ndi

    side = volume.shape[-2]
    if side == size:
        return volume
    centres = (np.arange(size) + 0.5) * (side / size) - 0.5  # input coordinate of each output pixel
    if labels:
        nearest = np.floor(centres + 0.5).astype(np.int64)
        return np.ascontiguousarray(volume[..., nearest, :, :][..., :, nearest, :])
    if size < side:
        lead = volume.ndim - 3
        volume = ndi.gaussian_filter(volume, (0.0,) * lead + (0.45 * side / size, 0.45 * side / size, 0.0))
    lo = np.floor(centres).astype(np.int64)
    t = centres - lo
    # zero outside the volume: a tap that falls off an edge weighs 0 (and reads the edge pixel)
    w0 = np.where((lo >= 0) & (lo < side), 1 - t, 0.0)[:, None]
    w1 = np.where(lo + 1 < side, t, 0.0)[:, None]
    i0, i1 = np.clip(lo, 0, side - 1), np.clip(lo + 1, 0, side - 1)
    # written slice-major, as slice_case wants it next (one transposing pass fewer), and returned as
    # the (..., size, size, Z) view of it
    out = np.moveaxis(np.empty((volume.shape[-1],) + volume.shape[:-3] + (size, size), np.float32), 0, -1)
    # A band of output rows at a time, its first axis's float64 rows small enough to stay in the
    # core's cache for the second axis: whole planes went through memory twice as slowly (CHANGELOG.md,
    # "An archive that grows"). Each value is the same w0 * a + w1 * b per axis, in float64 as zoom computes it.
    band = max(1, (2 << 20) // (side * volume.shape[-1] * 8))
    for lead_index in np.ndindex(volume.shape[:-3]):
        plane, into = volume[lead_index], out[lead_index]
        for r in range(0, size, band):
            rows = slice(r, r + band)
            a = np.multiply(plane[i0[rows]], w0[rows, :, None], dtype=np.float64)
            a += np.multiply(plane[i1[rows]], w1[rows, :, None], dtype=np.float64)
            b = np.multiply(a[:, i0], w0)
            b += np.multiply(a[:, i1], w1)
            into[rows] = b
    return out


def default_slice(case: Case) -> int:
    """The axial slice a case is shown or queried by when none is named: the one with the most
    tumour where the case has labels and a tumour, else the middle one."""
    if case.seg is not None and case.seg.any():
        return int(np.argmax((case.seg > 0).sum(axis=(0, 1))))
    return case.images.shape[-1] // 2


def slice_case(case: Case, size: int = 128, drop_empty: bool = True) -> SliceSet:
    """Axial slices of one case (axis 2 of the volume), z-scored per volume, resized to ``size``².

    ``drop_empty`` leaves out slices where every modality is 0 (outside the head), which carry no
    information and would all tie in retrieval.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not 8 <= size <= 1024:
        raise ValueError(f"size: expected an int in [8, 1024], got {size!r}")
    mask = case.mask if case.mask is not None else np.any(case.images != 0, axis=0)
    images = zscore(case.images, mask=case.mask, present=case.present)
    keep = np.flatnonzero(np.any(mask, axis=(0, 1))) if drop_empty else np.arange(images.shape[-1])
    # the brain's slices are nearly always one run: a view of them instead of a gathered copy
    run = slice(int(keep[0]), int(keep[-1]) + 1) if len(keep) and keep[-1] - keep[0] + 1 == len(keep) else keep

    def prepare(volume: np.ndarray, labels: bool) -> np.ndarray:
        return np.ascontiguousarray(np.moveaxis(_resize(_square(volume[..., run]), size, labels), -1, 0))

    out = SliceSet(
        images=prepare(images, False),
        abnormal=np.full(keep.size, -1, dtype=np.int8),
        case_ids=np.array([case.case_id] * keep.size),
        slice_index=keep.astype(np.int32),
        depth=np.full(keep.size, images.shape[-1], dtype=np.int32),
        contrasts=np.tile(np.asarray(case.present, dtype=bool), (keep.size, 1)),
    )
    if case.seg is not None:
        out.seg = prepare(case.seg, True)
        out.abnormal = np.any(case.seg[..., keep] > 0, axis=(0, 1)).astype(np.int8)
    if case.anatomy is not None:
        out.anatomy = prepare(case.anatomy, True)
    if case.healthy is not None:
        out.healthy = prepare(zscore(case.healthy, stats_from=case.images, present=case.present), False)
    if case.healthy_anatomy is not None:
        out.healthy_anatomy = prepare(case.healthy_anatomy, True)
    return out


def _slice_one(job: tuple) -> SliceSet:
    files, size, drop_empty = job
    return slice_case(load_case(files), size, drop_empty)


def load_slices(
    root: str | os.PathLike,
    size: int = 128,
    cases: Iterable[str] | None = None,
    drop_empty: bool = True,
    progress: bool | Callable[[Iterable], Iterable] = False,
    layout: str | Layout | dict | os.PathLike | None = None,
    workers: int = 1,
) -> SliceSet:
    """Slices of every case under ``root`` (or of the named ``cases``), concatenated in case order.

    ``layout`` as for :func:`find_cases`; ``workers`` > 1 reads cases in that many processes.
    """
    found = find_cases(root, layout)
    if cases is not None:
        wanted = list(cases)
        by_id = {c.case_id: c for c in found}
        unknown = [c for c in wanted if c not in by_id]
        if unknown:
            raise KeyError(f"cases: {unknown} not found under {root}")
        found = [by_id[c] for c in wanted]
    jobs = [(f, size, drop_empty) for f in found]
    if workers > 1 and len(jobs) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), initializer=worker_allocator()) as pool:
            stream: Iterable[SliceSet] = pool.map(_slice_one, jobs, chunksize=1)
            if progress:
                stream = progress(stream) if callable(progress) else _tqdm(stream, len(jobs))
            return SliceSet.concatenate(list(stream))
    parts: Iterable = map(_slice_one, jobs)
    if progress:
        parts = progress(parts) if callable(progress) else _tqdm(parts, len(jobs))
    return SliceSet.concatenate(list(parts))


def _tqdm(stream: Iterable, total: int) -> Iterable:
    from tqdm import tqdm

    return tqdm(stream, total=total, desc="slicing", unit="case")
