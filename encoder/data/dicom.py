"""Cases as a PACS exports them: a folder of DICOM series, one per contrast (pydicom; the ``dicom``
extra).

A folder is a DICOM case when the DICOM files below it belong to one study. Each series' contrast is
recognised from its SeriesDescription (else ProtocolName), or from a user's map (``contrast_map``:
regular expression -> contrast, tried first, case-insensitively); series that match no contrast
(localisers, diffusion, ...) are left out. Slices are ordered by their position along the slice
normal, scaled by RescaleSlope/Intercept, put on the scanner's patient axes (DICOM's LPS turned to
NIfTI's RAS+), and every contrast is resampled (linearly) onto the grid of the FLAIR series, or of the
first contrast present: the loader then treats the case as it treats a NIfTI folder.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .layouts import CONTRASTS

# Tried in this order: FLAIR before T2 (a "T2 FLAIR" is FLAIR), post-contrast T1 before T1.
PATTERNS = (
    ("flair", r"flair|t2[\s_-]*fl|dark[\s_-]*fluid|tirm"),
    ("t1ce", r"(t1|mprage|spgr|bravo|vibe|tfl).*(post|gd|gad|\+\s*c|\bce\b|contrast|c\+)"
             r"|(post|gd|gad|contrast).*(t1|mprage|spgr)"),
    ("t2", r"t2"),
    ("t1", r"t1|mprage|spgr"),
)


@dataclass(frozen=True)
class DicomSeries:
    """One series of a case: its files, in slice order once read."""

    folder: Path
    uid: str
    description: str
    files: tuple[Path, ...]

    def __str__(self) -> str:
        return f"{self.folder} (DICOM series {self.description!r}, {len(self.files)} files)"


def _pydicom() -> Any:
    try:
        import pydicom
    except ImportError as exc:
        raise ImportError("reading DICOM needs pydicom: pip install 'hashindex[dicom]'") from exc
    return pydicom


def is_dicom(path: Path) -> bool:
    """A DICOM Part 10 file: 128 bytes of preamble, then "DICM"."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


_HEADERS: dict[tuple[str, int, int], tuple[str, str, str]] = {}


def _header(path: Path) -> tuple[str, str, str]:
    """(study, series, description) of one file, read once per (path, size, mtime)."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _HEADERS:
        ds = _pydicom().dcmread(path, stop_before_pixels=True)
        description = str(getattr(ds, "SeriesDescription", "") or getattr(ds, "ProtocolName", ""))
        _HEADERS[key] = (str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), description)
    return _HEADERS[key]


def contrast_of(description: str, contrast_map: dict | None = None) -> str | None:
    for pattern, contrast in (contrast_map or {}).items():
        if re.search(pattern, description, re.I):
            return contrast
    for contrast, pattern in PATTERNS:
        if re.search(pattern, description, re.I):
            return contrast
    return None


def check_contrast_map(contrast_map: Any) -> dict | None:
    if contrast_map is None:
        return None
    if isinstance(contrast_map, (str, os.PathLike)):
        import json

        try:
            contrast_map = json.loads(Path(contrast_map).read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"contrast_map: cannot read {contrast_map} as JSON ({exc})") from None
    if not isinstance(contrast_map, dict) or any(v not in CONTRASTS for v in contrast_map.values()):
        raise ValueError(f"contrast_map: expected a mapping of regular expression -> one of {list(CONTRASTS)}, "
                         f"got {contrast_map!r}")
    for pattern in contrast_map:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"contrast_map: {pattern!r} is not a regular expression ({exc})") from None
    return contrast_map


def find_series(folder: Path) -> tuple[dict[str, list], list[str]]:
    """Study -> [series] of the DICOM files below ``folder`` (any depth), and the files whose header
    could not be read (with why)."""
    groups: dict[tuple[str, str], list[Path]] = {}
    descriptions: dict[str, str] = {}
    broken: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not is_dicom(path):
                continue
            try:
                study, series, description = _header(path)
            except ImportError:
                raise
            except Exception as exc:  # pydicom raises many types for a damaged file
                broken.append(f"{path} ({type(exc).__name__}: {exc})")
                continue
            groups.setdefault((study, series), []).append(path)
            descriptions[series] = description
    out: dict[str, list] = {}
    for (study, uid), files in sorted(groups.items()):
        out.setdefault(study, []).append(DicomSeries(files[0].parent, uid, descriptions[uid], tuple(files)))
    return out, broken


def case_series(folder: Path, contrast_map: dict | None = None) -> tuple[dict[str, DicomSeries], str | None] | None:
    """(contrast -> series, a problem or None) when ``folder`` holds one study's DICOM series, else
    None (no DICOM, or several studies: the walk goes on below). What makes the case unusable (a
    file whose header cannot be read, no series recognised, two series read as one contrast) is its
    problem, which the loader raises: an archive records it against the case and goes on."""
    studies, broken = find_series(folder)
    if len(studies) > 1 or (not studies and not broken):
        return None
    if broken:
        return {}, f"unreadable DICOM file {broken[0]}"
    series = next(iter(studies.values()))
    found: dict[str, DicomSeries] = {}
    for s in series:
        contrast = contrast_of(s.description, contrast_map)
        if contrast is None:
            continue
        if contrast in found:
            return {}, (f"two DICOM series read as {contrast}: {found[contrast].description!r} and {s.description!r}; "
                        "say which is which with a contrast map (--contrast-map)")
        found[contrast] = s
    if not found:
        names = ", ".join(repr(s.description) for s in series)
        return {}, (f"no DICOM series recognised as T1, T1CE, T2 or FLAIR among {names}; pass a contrast map "
                    "(--contrast-map map.json: {\"regular expression\": \"flair\", ...})")
    return {c: found[c] for c in CONTRASTS if c in found}, None


def read_series(series: DicomSeries) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y, Z) float32 voxels and their RAS affine, slices ordered along the normal."""
    pydicom = _pydicom()
    try:
        slices = [pydicom.dcmread(f) for f in series.files]
        orient = np.asarray(slices[0].ImageOrientationPatient, np.float64)
        along_row, along_col = orient[:3], orient[3:]
        normal = np.cross(along_row, along_col)
        slices.sort(key=lambda d: float(np.dot(np.asarray(d.ImagePositionPatient, np.float64), normal)))
        spacing = np.asarray(slices[0].PixelSpacing, np.float64)  # (between rows, between columns)
        planes = []
        for d in slices:
            pixels = d.pixel_array.astype(np.float32)
            planes.append(pixels * float(getattr(d, "RescaleSlope", 1) or 1) + float(getattr(d, "RescaleIntercept", 0)))
        shapes = {p.shape for p in planes}
        if len(shapes) != 1:
            raise ValueError(f"slices of different sizes {sorted(shapes)}")
    except ValueError:
        raise
    except Exception as exc:  # pydicom raises many types for a damaged file
        raise ValueError(f"{series}: cannot read it ({type(exc).__name__}: {exc})") from None
    volume = np.stack([p.T for p in planes], axis=-1)  # (columns, rows, slices): x along a row
    first = np.asarray(slices[0].ImagePositionPatient, np.float64)
    if len(slices) > 1:
        step = (np.asarray(slices[-1].ImagePositionPatient, np.float64) - first) / (len(slices) - 1)
    else:
        step = normal * float(getattr(slices[0], "SliceThickness", 1) or 1)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = along_row * spacing[1], along_col * spacing[0], step, first
    return volume, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # LPS -> RAS


def read_contrasts(series: dict[str, DicomSeries]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every contrast on the reference grid (FLAIR's, or the first's), RAS+ canonical: contrast ->
    volume, and the grid's affine."""
    import nibabel as nib
    from nibabel.processing import resample_from_to

    images = {c: nib.Nifti1Image(*read_series(s)) for c, s in series.items()}
    ref = nib.as_closest_canonical(images["flair" if "flair" in images else next(iter(images))])
    out = {}
    for contrast, image in images.items():
        on_grid = resample_from_to(image, ref, order=1, mode="constant", cval=0.0)
        out[contrast] = np.asarray(on_grid.dataobj, np.float32)
    return out, ref.affine
