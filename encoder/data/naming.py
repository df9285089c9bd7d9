"""BraTS file naming, old and new, and the extra files the phantoms add.

BraTS 2018-2021: ``<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz``, enhancing tumour stored as 4.
BraTS 2023:      ``<case>/<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz``, enhancing tumour stored as 3.
Phantoms add ``anat`` (normal-anatomy labels), ``healthy_<contrast>`` and ``healthy_anat`` in the
same style (``<case>_healthy_t1.nii.gz``; ``<case>-healthy-t1n.nii.gz``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .labels import ENHANCING


@dataclass(frozen=True)
class Naming:
    name: str
    separator: str
    suffix: dict  # internal key -> file suffix
    enhancing_in_file: int
    case_pattern: str

    def filename(self, case: str, key: str) -> str:
        if key.startswith("healthy_"):
            return f"{case}{self.separator}healthy{self.separator}{self.suffix[key[len('healthy_'):]]}.nii.gz"
        return f"{case}{self.separator}{self.suffix[key]}.nii.gz"

    def seg_to_file(self, seg: np.ndarray) -> np.ndarray:
        out = seg.astype(np.uint8, copy=True)
        out[seg == ENHANCING] = self.enhancing_in_file
        return out


_COMMON = {"seg": "seg", "anat": "anat"}
NAMINGS = {
    "brats2021": Naming("brats2021", "_", {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair", **_COMMON},
                        4, "Phantom_{:05d}"),
    "brats2023": Naming("brats2023", "-", {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f", **_COMMON},
                        3, "Phantom-GLI-{:05d}-000"),
}


def case_name(index: int, naming: str) -> str:
    return NAMINGS[naming].case_pattern.format(index)


def write_volume(folder: Path, case: str, naming: str, key: str, data: np.ndarray, affine: np.ndarray) -> Path:
    import nibabel as nib

    path = Path(folder) / NAMINGS[naming].filename(case, key)
    image = nib.Nifti1Image(np.asarray(data), affine)
    image.header.set_xyzt_units("mm")
    nib.save(image, str(path))
    return path
