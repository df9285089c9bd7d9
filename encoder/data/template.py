"""The MNI152 2009c symmetric template that ships inside the nilearn wheel, as tissue maps.

Only the three files are read (found through the installed package's location; nilearn itself is
never imported and nothing is downloaded). The T1 there is already skull-stripped, like BraTS.
"""
from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .labels import BACKGROUND, CSF, GREY, VENTRICLES, WHITE

TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
# Interior CSF pockets smaller than this (voxels at 1 mm) are partial-volume noise, not ventricles;
# the temporal horns of the template are ~180 voxels, the lateral ventricles ~18k.
MIN_VENTRICLE_VOXELS = 150


@dataclass(frozen=True)
class Template:
    """Tissue probabilities on the template's 1 mm grid.

    ``tissue[c]`` is the probability of anatomy label ``c`` (labels.py), summing to 1 per voxel;
    ``t1`` is the template T1 scaled so that median white matter is 1; ``origin`` is the world
    position (mm) of voxel (0, 0, 0); ``brain_center`` the world centre of the brain's bounding box.
    """

    tissue: np.ndarray
    t1: np.ndarray
    origin: np.ndarray
    brain_center: np.ndarray


def template_dir() -> Path:
    spec = importlib.util.find_spec("nilearn")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "the phantoms need the MNI152 template files shipped inside the nilearn wheel: "
            "pip install nilearn (or pip install 'hashindex[data]')"
        )
    folder = Path(spec.origin).parent / "datasets" / "data"
    missing = [name for name in TEMPLATE_FILES.values() if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"the installed nilearn lacks the MNI152 template files {missing} in {folder}")
    return folder


@functools.lru_cache(maxsize=1)
def load_template() -> Template:
    import nibabel as nib
    from scipy import ndimage as ndi

    folder = template_dir()
    images = {key: nib.load(str(folder / name)) for key, name in TEMPLATE_FILES.items()}
    affine = images["t1"].affine
    if not np.allclose(affine[:3, :3], np.eye(3)):
        raise ValueError(f"expected the 1 mm MNI152 template in {folder}, got affine {affine.tolist()}")
    t1 = np.asarray(images["t1"].dataobj, dtype=np.float32)
    gm = np.asarray(images["gm"].dataobj, dtype=np.float32) / 255.0
    wm = np.asarray(images["wm"].dataobj, dtype=np.float32) / 255.0
    brain = t1 > 0
    gm *= brain
    wm *= brain
    over = np.maximum(gm + wm, 1.0)
    gm /= over
    wm /= over
    csf = np.where(brain, 1.0 - gm - wm, 0.0).astype(np.float32)

    # Ventricles: CSF components that do not reach the brain's outer surface.
    components, count = ndi.label(csf > 0.5)
    outside = ndi.binary_dilation(~brain, iterations=2)
    sizes = np.bincount(components.ravel(), minlength=count + 1)
    interior = np.ones(count + 1, dtype=bool)
    interior[np.unique(components[outside])] = False
    interior[0] = False
    interior &= sizes >= MIN_VENTRICLE_VOXELS
    ventricle_core = interior[components]
    near = ndi.binary_dilation(ventricle_core, iterations=2)
    ventricles = np.where(near, csf, 0.0).astype(np.float32)

    tissue = np.zeros((5,) + t1.shape, dtype=np.float32)
    tissue[BACKGROUND] = ~brain
    tissue[CSF] = csf - ventricles
    tissue[VENTRICLES] = ventricles
    tissue[GREY] = gm
    tissue[WHITE] = wm
    t1 /= np.median(t1[wm > 0.9])
    idx = np.argwhere(brain)
    center_voxel = (idx.min(0) + idx.max(0)) / 2.0
    origin = affine[:3, 3].astype(np.float64)
    return Template(tissue=tissue, t1=t1, origin=origin, brain_center=origin + center_voxel)
