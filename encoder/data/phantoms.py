"""Synthetic glioma phantoms from the MNI152 template, written in BraTS layout.

Each case is a deformed template (random affine plus smooth elastic field, so anatomy differs
between subjects) rendered in four contrasts from its tissue maps, with bias field and Rician noise.
A share of cases carries a tumour with BraTS labels: a necrotic centre inside an enhancing rim
(bright on T1CE), oedema that spreads further through white matter than grey (bright on T2 and
FLAIR), and mass effect that pushes the surrounding anatomy outwards. Every case also gets its exact
healthy counterpart (same deformation, intensities and noise, no tumour and no mass effect) and
normal-anatomy label maps for both, which is what evaluation of normal/abnormal retrieval needs.

Cases are independent: case ``i`` of seed ``s`` is drawn from ``default_rng([s, i])``, so any subset,
in any order or process, gives the same volumes.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from hashindex.allocator import worker_allocator

from .labels import BACKGROUND, CSF, ENHANCING, NECROTIC, OEDEMA, VENTRICLES, WHITE
from .naming import NAMINGS, case_name, write_volume
from .template import Template, load_template

GENERATOR_VERSION = 1
MANIFEST = "phantoms.json"
# BraTS volumes are 240 x 240 x 155 voxels of 1 mm; the template's brain is 155 mm tall.
FIELD_OF_VIEW_MM = (240.0, 240.0, 155.0)
# Stored values are intensity x 1000 in int16, as BraTS stores integers.
INTENSITY_SCALE = 1000.0

CONTRASTS = ("t1", "t1ce", "t2", "flair")
# Relative intensity of each anatomy label (rows: background, CSF, ventricles, grey, white) per
# contrast. T1 and T1CE take their texture from the template T1 (CSF dark, white brighter than grey);
# these rows give T2 (CSF bright, white darker than grey) and FLAIR (CSF suppressed).
TISSUE_INTENSITY = {
    "t2": np.array([0.0, 1.00, 1.05, 0.62, 0.45], dtype=np.float32),
    "flair": np.array([0.0, 0.14, 0.10, 0.68, 0.52], dtype=np.float32),
}
T1_MODEL = np.array([0.0, 0.39, 0.36, 0.74, 1.0], dtype=np.float32)  # the template T1's own levels
# Share of the template's fine T1 texture (its residual from T1_MODEL) carried into T2 / FLAIR,
# negative because deep grey nuclei that are darker on T1 are brighter on T2.
TEXTURE_SHARE = {"t1": 1.0, "t1ce": 1.0, "t2": -0.5, "flair": -0.3}
# Tumour compartments (T1, T1CE, T2, FLAIR), relative to white matter on T1 = 1.
TUMOUR_INTENSITY = {
    "necrosis": np.array([0.33, 0.38, 1.05, 0.55], dtype=np.float32),
    "non_enhancing": np.array([0.55, 0.57, 0.95, 0.97], dtype=np.float32),
    "enhancing": np.array([0.70, 1.45, 0.75, 0.85], dtype=np.float32),
    "oedema": np.array([0.62, 0.64, 0.90, 1.00], dtype=np.float32),
}
# Glioma kinds: a glioblastoma-like necrotic core in an enhancing rim, a solid enhancing mass, and a
# low-grade-like non-enhancing mass; their shares and core radii (mm).
TUMOUR_KINDS = {
    "necrotic": (0.6, (8.0, 24.0)),
    "solid": (0.15, (6.0, 16.0)),
    "non_enhancing": (0.25, (7.0, 22.0)),
}


@dataclass(frozen=True)
class PhantomConfig:
    """What the phantoms look like; the seed says which ones."""

    spacing: float = 1.0  # mm per voxel; 2 gives 120 x 120 x 78 volumes, 8x fewer voxels
    healthy_fraction: float = 0.2  # share of cases without a tumour
    naming: str = "brats2021"  # file names and label values of BraTS 2018-2021, or "brats2023"
    noise: float = 0.025  # Rician noise sigma, relative to white matter on T1
    bias: float = 0.12  # amplitude of the smooth multiplicative bias field (log scale)
    deformation_mm: float = 3.0  # RMS of the elastic displacement

    def __post_init__(self) -> None:
        if not (isinstance(self.spacing, (int, float)) and 0.5 <= self.spacing <= 8.0):
            raise ValueError(f"spacing: expected mm per voxel in [0.5, 8], got {self.spacing!r}")
        if not (0.0 <= self.healthy_fraction <= 1.0):
            raise ValueError(f"healthy_fraction: expected a share in [0, 1], got {self.healthy_fraction!r}")
        if self.naming not in NAMINGS:
            raise ValueError(f"naming: expected one of {sorted(NAMINGS)}, got {self.naming!r}")
        for name in ("noise", "bias", "deformation_mm"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name}: expected a non-negative number, got {getattr(self, name)!r}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(round(fov / self.spacing)) for fov in FIELD_OF_VIEW_MM)  # type: ignore[return-value]

    @property
    def affine(self) -> np.ndarray:
        """Voxel -> world (mm), with the grid centred on the world origin."""
        affine = np.eye(4)
        affine[:3, :3] *= self.spacing
        affine[:3, 3] = -(np.array(self.shape) - 1) * self.spacing / 2.0
        return affine


@dataclass
class PhantomCase:
    """One generated case; volumes are on the config's grid, axis 2 is axial (inferior -> superior)."""

    images: np.ndarray  # (4, X, Y, Z) float32, contrasts in CONTRASTS order
    seg: np.ndarray  # (X, Y, Z) uint8, internal tumour labels (0 everywhere for a healthy case)
    anatomy: np.ndarray  # (X, Y, Z) uint8 anatomy labels of this subject (with mass effect)
    healthy: np.ndarray  # (4, X, Y, Z) float32, the same subject without tumour or mass effect
    healthy_anatomy: np.ndarray  # (X, Y, Z) uint8
    affine: np.ndarray
    info: dict = field(default_factory=dict)


# --- smooth random fields -------------------------------------------------------------------

def _cosine_basis(t: np.ndarray, order: int, half_width: float) -> np.ndarray:
    """cos(pi i (t + w) / 2w) for i < order: smooth fields over [-w, w] without boundary artefacts."""
    return np.cos(np.pi * np.arange(order)[:, None] * (t[None, :] + half_width) / (2.0 * half_width))


def _field_on_grid(coeffs: np.ndarray, axes: list[np.ndarray], half: np.ndarray) -> np.ndarray:
    """sum_ijk coeffs[..., i, j, k] b_i(x) b_j(y) b_k(z) on the grid of the 1-D axes, separably."""
    order = coeffs.shape[-1]
    bx, by, bz = (_cosine_basis(a, order, h).astype(np.float32) for a, h in zip(axes, half))
    out = np.tensordot(coeffs.astype(np.float32), bz, axes=([-1], [0]))  # (..., i, j, Z)
    out = np.einsum("...ijz,jy->...iyz", out, by)
    return np.einsum("...iyz,ix->...xyz", out, bx)


def _field_at_points(coeffs: np.ndarray, points: np.ndarray, half: np.ndarray) -> np.ndarray:
    """The same field at scattered points (N, 3) -> (..., N)."""
    order = coeffs.shape[-1]
    bx, by, bz = (_cosine_basis(points[:, a], order, half[a]) for a in range(3))
    return np.einsum("...ijk,in,jn,kn->...n", coeffs, bx, by, bz, optimize=True)


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    from scipy import ndimage as ndi

    noise = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), max(sigma, 0.5), mode="reflect")
    return noise / max(float(noise.std()), 1e-6)


# --- sampling from the template -------------------------------------------------------------

@functools.lru_cache(maxsize=2)
def _template_at(spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Template channels last (tissue..., t1) as one array, low-passed for coarse grids so that
    sampling it every ``spacing`` mm does not alias."""
    from scipy import ndimage as ndi

    template = load_template()
    stacked = np.concatenate([template.tissue, template.t1[None]], axis=0)
    if spacing > 1.5:
        sigma = 0.4 * spacing
        stacked = np.stack([ndi.gaussian_filter(c, sigma) for c in stacked])
    fill = np.zeros(stacked.shape[0], dtype=np.float32)
    fill[BACKGROUND] = 1.0
    return np.ascontiguousarray(np.moveaxis(stacked, 0, -1)), fill


def _trilinear(volume: np.ndarray, coords: np.ndarray, fill: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    """Samples a channels-last volume at voxel coordinates (3, N); outside it gives ``fill``.

    Gathers whole channel rows per corner, faster than map_coordinates per channel
    (benchmarks/RESULTS.md, "Measurements behind the code").
    """
    dims = np.array(volume.shape[:3])
    flat = volume.reshape(-1, volume.shape[3])
    strides = np.array([dims[1] * dims[2], dims[2], 1])
    out = np.empty((coords.shape[1], volume.shape[3]), dtype=np.float32)
    for start in range(0, coords.shape[1], chunk):
        c = coords[:, start:start + chunk]
        inside = np.all((c >= 0) & (c <= (dims - 1)[:, None]), axis=0)
        base = np.clip(np.floor(c), 0, (dims - 2)[:, None]).astype(np.int64)
        frac = np.clip(c - base, 0.0, 1.0).astype(np.float32)
        index = strides @ base
        acc = np.zeros((c.shape[1], volume.shape[3]), dtype=np.float32)
        for dx in (0, 1):
            wx = frac[0] if dx else 1.0 - frac[0]
            for dy in (0, 1):
                wy = wx * (frac[1] if dy else 1.0 - frac[1])
                for dz in (0, 1):
                    w = wy * (frac[2] if dz else 1.0 - frac[2])
                    acc += w[:, None] * flat[index + (dx * strides[0] + dy * strides[1] + dz)]
        acc[~inside] = fill
        out[start:start + chunk] = acc
    return out


@dataclass(frozen=True)
class Deformation:
    """Subject world (mm, centred) -> template world: s = M p + centre + shift + elastic(p)."""

    matrix: np.ndarray
    shift: np.ndarray
    elastic: np.ndarray  # (3, n, n, n) cosine coefficients, mm
    half: np.ndarray  # half field of view, mm

    @staticmethod
    def sample(rng: np.random.Generator, config: PhantomConfig) -> Deformation:
        angles = np.deg2rad(rng.uniform(-1, 1, 3) * np.array([5.0, 5.0, 8.0]))
        rotation = np.eye(3)
        for axis, angle in enumerate(angles):
            a, b = [i for i in range(3) if i != axis]
            r = np.eye(3)
            r[a, a] = r[b, b] = np.cos(angle)
            r[a, b], r[b, a] = -np.sin(angle), np.sin(angle)
            rotation = rotation @ r
        scale = rng.uniform(0.92, 1.08) * rng.uniform(0.95, 1.05, 3)  # head size, then its shape
        order = 4
        i, j, k = np.meshgrid(*[np.arange(order)] * 3, indexing="ij")
        decay = 1.0 / (1.0 + i + j + k) ** 1.5
        decay[0, 0, 0] = 0.0  # translation is the shift's job
        elastic = rng.standard_normal((3, order, order, order)) * decay
        # E[field^2] over the box: each cosine of order > 0 averages 1/2 per axis.
        power = np.sum(decay * np.where(i > 0, 0.5, 1) * np.where(j > 0, 0.5, 1) * np.where(k > 0, 0.5, 1) * decay)
        elastic *= config.deformation_mm / np.sqrt(max(power, 1e-12))
        return Deformation(
            matrix=rotation @ np.diag(1.0 / scale),
            shift=rng.normal(0.0, 2.0, 3),
            elastic=elastic,
            half=np.array(FIELD_OF_VIEW_MM) / 2.0,
        )

    def on_grid(self, axes: list[np.ndarray], template: Template) -> np.ndarray:
        """Template voxel coordinates (3, X, Y, Z) of every grid point."""
        out = _field_on_grid(self.elastic, axes, self.half)
        offset = template.brain_center + self.shift - template.origin
        for c in range(3):
            out[c] += (self.matrix[c, 0] * axes[0][:, None, None] + self.matrix[c, 1] * axes[1][None, :, None]
                       + self.matrix[c, 2] * axes[2][None, None, :] + offset[c]).astype(np.float32)
        return out

    def at_points(self, points: np.ndarray, template: Template) -> np.ndarray:
        """Template voxel coordinates (3, N) of world points (N, 3)."""
        out = _field_at_points(self.elastic, points, self.half)
        out += (self.matrix @ points.T) + (template.brain_center + self.shift - template.origin)[:, None]
        return out.astype(np.float32)


# --- one case -------------------------------------------------------------------------------

def _anatomy(tissue: np.ndarray) -> np.ndarray:
    """Most likely tissue inside the brain mask (background probability < 1/2), 0 outside it."""
    labels = (1 + np.argmax(tissue[1:], axis=0)).astype(np.uint8)
    labels[tissue[BACKGROUND] >= 0.5] = BACKGROUND
    return labels


def _render(tissue: np.ndarray, t1: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """Four contrasts (4, ...) from tissue probabilities (5, ...) and template T1 texture."""
    model = np.tensordot(T1_MODEL, tissue, axes=1)
    texture = t1 - model
    images = np.empty((4,) + t1.shape, dtype=np.float32)
    for c, name in enumerate(CONTRASTS):
        if name in TISSUE_INTENSITY:
            images[c] = np.tensordot(TISSUE_INTENSITY[name], tissue, axes=1) + TEXTURE_SHARE[name] * texture
        else:
            images[c] = t1
        images[c] *= gains[c]
    return images


def _tumour_masks(rng, kind, core_radius, oedema_mm, points, tissue, spacing, shape):
    """Compartment masks on a box of the grid: returns {label: bool array}."""
    from scipy import ndimage as ndi

    axes3 = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    stretch = rng.uniform(0.75, 1.3, 3)
    local = (points @ axes3) / (core_radius * stretch)
    rough = _smooth_noise(rng, shape, core_radius / (3.0 * spacing)).ravel()
    brain = tissue[BACKGROUND] < 0.5
    core = ((np.linalg.norm(local, axis=1) + 0.22 * rough) < 1.0).reshape(shape) & brain
    if not core.any():  # a tiny tumour that fell between voxels: keep its centre voxel
        core[tuple(np.array(shape) // 2)] = True
    inner = ndi.distance_transform_edt(core, sampling=spacing)
    masks = {}
    if kind == "necrotic":
        rim = rng.uniform(2.0, 6.0) * (1.0 + 0.4 * _smooth_noise(rng, shape, 2.0 / spacing))
        masks["enhancing"] = core & (inner <= rim)
        masks["necrosis"] = core & ~masks["enhancing"]
    elif kind == "solid":
        masks["enhancing"] = core
    else:
        masks["non_enhancing"] = core
    outer = ndi.distance_transform_edt(~core, sampling=spacing)
    # Oedema follows white-matter tracts: its reach scales with the white-matter probability.
    white = ndi.gaussian_filter(tissue[WHITE], 2.0 / spacing)  # tracts, not single voxels
    reach = oedema_mm * (0.25 + 1.1 * white) * (1.0 + 0.3 * _smooth_noise(rng, shape, 6.0 / spacing))
    fluid = tissue[CSF] + tissue[VENTRICLES] > 0.5
    masks["oedema"] = ndi.binary_fill_holes(~core & (outer <= reach) & brain & ~fluid) & ~core
    return masks


SEG_LABEL = {"necrosis": NECROTIC, "non_enhancing": NECROTIC, "enhancing": ENHANCING, "oedema": OEDEMA}


def generate_case(index: int, seed: int, config: PhantomConfig = PhantomConfig()) -> PhantomCase:
    """Case ``index`` of the phantom set drawn with ``seed`` (deterministic)."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng([int(seed), int(index)])
    template = load_template()
    volume, fill = _template_at(float(config.spacing))
    shape = config.shape
    affine = config.affine
    axes = [affine[a, 3] + config.spacing * np.arange(shape[a]) for a in range(3)]
    deformation = Deformation.sample(rng, config)

    coords = deformation.on_grid(axes, template)
    sampled = _trilinear(volume, coords.reshape(3, -1), fill).T.reshape((-1,) + shape)
    del coords
    tissue_h, t1_h = sampled[:5], sampled[5]
    gains = rng.uniform(0.93, 1.07, 4).astype(np.float32)
    healthy = _render(tissue_h, t1_h, gains)
    brain_h = tissue_h[BACKGROUND] < 0.5
    images = healthy.copy()
    tissue_s = tissue_h
    brain_s = brain_h.copy()
    seg = np.zeros(shape, dtype=np.uint8)
    info: dict = {"tumour": None}

    if rng.random() >= config.healthy_fraction:
        kinds = list(TUMOUR_KINDS)
        kind = kinds[rng.choice(len(kinds), p=[TUMOUR_KINDS[k][0] for k in kinds])]
        low, high = TUMOUR_KINDS[kind][1]
        core_radius = float(np.exp(rng.uniform(np.log(low), np.log(high))))
        oedema_mm = float(rng.uniform(2.0, 12.0) if kind == "non_enhancing" else rng.uniform(4.0, 25.0))
        displaced = float(core_radius * rng.uniform(0.5, 0.85))
        # Gliomas grow in the cerebral white matter: centres above the lowest quarter of the brain.
        z_floor = np.quantile(np.nonzero(brain_h.any(axis=(0, 1)))[0], 0.25)
        candidates = np.flatnonzero((tissue_h[WHITE] > 0.6) & (np.arange(shape[2]) >= z_floor)[None, None, :])
        if candidates.size == 0:
            candidates = np.flatnonzero(brain_h)
        center_idx = np.array(np.unravel_index(rng.choice(candidates), shape))
        center = affine[:3, :3] @ center_idx + affine[:3, 3]

        # The box that the tumour and its mass effect (negligible beyond ~3 core radii) touch.
        radius_vox = (3.0 * core_radius + 1.6 * oedema_mm + 3.0) / config.spacing
        lo = np.maximum(center_idx - np.ceil(radius_vox).astype(int), 0)
        hi = np.minimum(center_idx + np.ceil(radius_vox).astype(int) + 1, shape)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        box_shape = tuple(hi - lo)
        grid = np.stack(np.meshgrid(*[axes[a][lo[a]:hi[a]] for a in range(3)], indexing="ij"), axis=-1)
        offsets = grid.reshape(-1, 3) - center

        # Mass effect: incompressible expansion by a sphere of radius `displaced`, damped with
        # distance (the skull holds the brain in): healthy radius rho = cbrt(r^3 - a^3).
        r = np.linalg.norm(offsets, axis=1)
        rho = np.cbrt(np.maximum(r**3 - displaced**3, 0.0))
        damp = np.exp(-((r / (3.0 * core_radius)) ** 2))
        healthy_r = r - (r - rho) * damp
        source = center + offsets * (healthy_r / np.maximum(r, 1e-6))[:, None]
        box_sampled = _trilinear(volume, deformation.at_points(source, template), fill).T.reshape((-1,) + box_shape)
        tissue_s = tissue_h.copy()
        tissue_s[(slice(None),) + box] = box_sampled[:5]
        box_tissue = box_sampled[:5]
        box_images = _render(box_tissue, box_sampled[5], gains)

        masks = _tumour_masks(rng, kind, core_radius, oedema_mm, offsets, box_tissue, config.spacing, box_shape)
        heterogeneity = 1.0 + 0.08 * _smooth_noise(rng, box_shape, 1.5 / config.spacing)
        soft = {name: ndi.gaussian_filter(m.astype(np.float32), 0.6 / config.spacing + 0.3) for name, m in masks.items()}
        total = np.clip(sum(soft.values()), 0.0, 1.0)
        norm = np.maximum(sum(soft.values()), 1.0)
        blended = box_images * (1.0 - total)
        for name, weight in soft.items():
            blended += (weight / norm)[None] * TUMOUR_INTENSITY[name][:, None, None, None] * gains[:, None, None, None] * heterogeneity
        images[(slice(None),) + box] = blended
        box_seg = np.zeros(box_shape, dtype=np.uint8)
        for name in ("oedema", "non_enhancing", "necrosis", "enhancing"):
            if name in masks:
                box_seg[masks[name]] = SEG_LABEL[name]
        seg[box] = box_seg
        brain_s = (tissue_s[BACKGROUND] < 0.5) | (seg > 0)
        info["tumour"] = {
            "kind": kind,
            "center_mm": [round(float(v), 2) for v in center],
            "center_voxel": [int(v) for v in center_idx],
            "core_radius_mm": round(core_radius, 2),
            "oedema_mm": round(oedema_mm, 2),
            "mass_effect_mm": round(displaced, 2),
            "voxels": {str(label): int((seg == label).sum()) for label in (NECROTIC, OEDEMA, ENHANCING)},
        }

    # Bias field and Rician noise: one draw, shared by the subject and its healthy counterpart.
    half = np.array(FIELD_OF_VIEW_MM) / 2.0
    bias_coeffs = rng.standard_normal((4, 3, 3, 3)) * config.bias / 3.0
    bias = np.exp(_field_on_grid(bias_coeffs, axes, half))
    noise_seed = int(rng.integers(2**63))
    for c in range(4):
        noise = np.random.default_rng([noise_seed, c]).standard_normal((2,) + shape, dtype=np.float32) * config.noise
        for volume_c, brain in ((images[c], brain_s), (healthy[c], brain_h)):
            volume_c *= bias[c]
            np.sqrt((volume_c + noise[0]) ** 2 + noise[1] ** 2, out=volume_c)
            volume_c *= brain
    return PhantomCase(
        images=images,
        seg=seg,
        anatomy=_anatomy(tissue_s),
        healthy=healthy,
        healthy_anatomy=_anatomy(tissue_h),
        affine=affine,
        info=info,
    )


# --- a set of cases on disk -----------------------------------------------------------------

def _manifest_params(seed: int, config: PhantomConfig) -> dict:
    return {"generator_version": GENERATOR_VERSION, "seed": int(seed), "config": asdict(config),
            "shape": list(config.shape)}


def _write_case(case: PhantomCase, folder: Path, name: str, naming: str) -> None:
    scale = lambda v: np.clip(np.rint(v * INTENSITY_SCALE), 0, np.iinfo(np.int16).max).astype(np.int16)  # noqa: E731
    for c, contrast in enumerate(CONTRASTS):
        write_volume(folder, name, naming, contrast, scale(case.images[c]), case.affine)
        write_volume(folder, name, naming, "healthy_" + contrast, scale(case.healthy[c]), case.affine)
    write_volume(folder, name, naming, "seg", NAMINGS[naming].seg_to_file(case.seg), case.affine)
    write_volume(folder, name, naming, "anat", case.anatomy, case.affine)
    write_volume(folder, name, naming, "healthy_anat", case.healthy_anatomy, case.affine)


def _generate_one(job: tuple[int, int, PhantomConfig, str]) -> tuple[int, dict]:
    index, seed, config, root = job
    case = generate_case(index, seed, config)
    name = case_name(index, config.naming)
    final = Path(root) / name
    # Written beside the set and renamed into place, so that an interrupted run never leaves a
    # half-written case that a later run would take for a finished one.
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
    try:
        _write_case(case, staging, name, config.naming)
        staging = Path(shutil.move(str(staging), str(final)))
    finally:
        if staging.exists() and staging != final:
            shutil.rmtree(staging, ignore_errors=True)
    return index, {"case": name, **case.info}


def generate_phantoms(
    out: str | os.PathLike,
    cases: int,
    seed: int = 0,
    config: PhantomConfig = PhantomConfig(),
    workers: int | None = None,
    progress: bool | Callable[[Iterable], Iterable] = False,
) -> dict:
    """Writes ``cases`` phantoms under ``out`` in BraTS layout and returns the manifest.

    Re-running with the same seed and config reuses the cases already there (a cache); a folder made
    with other parameters raises instead of being mixed with new cases.
    """
    if isinstance(cases, bool) or not isinstance(cases, (int, np.integer)) or cases < 1:
        raise ValueError(f"cases: expected a positive int, got {cases!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed: expected a non-negative int, got {seed!r}")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    manifest_path = root / MANIFEST
    params = _manifest_params(seed, config)
    manifest = {"format": "hashindex-phantoms", **params, "cases": []}
    if manifest_path.exists():
        try:
            old = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{manifest_path}: unreadable phantom manifest ({exc}); delete the folder to regenerate") from exc
        if {k: old.get(k) for k in params} != params:
            raise FileExistsError(
                f"{root} holds phantoms made with other parameters ({ {k: old.get(k) for k in params} }); "
                f"asked for {params}. Use another --out or delete the folder."
            )
        manifest["cases"] = [c for c in old.get("cases", []) if (root / c["case"]).is_dir()]
    done = {c["case"] for c in manifest["cases"]}
    todo = [i for i in range(int(cases)) if case_name(i, config.naming) not in done]
    jobs = [(i, int(seed), config, str(root)) for i in todo]
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    results: dict[int, dict] = {}

    def record(index: int, info: dict) -> None:
        results[index] = info
        manifest["cases"] = sorted(manifest["cases"] + [info], key=lambda c: c["case"])
        _write_json(manifest_path, manifest)

    if jobs:
        if workers == 1:
            stream = map(_generate_one, jobs)
        else:
            pool = ProcessPoolExecutor(max_workers=workers, initializer=worker_allocator())
            stream = pool.map(_generate_one, jobs)
        if progress:
            stream = _progress(progress, stream, len(jobs))
        try:
            for index, info in stream:
                record(index, info)
        finally:
            if workers > 1:
                pool.shutdown(cancel_futures=True)
    _write_json(manifest_path, manifest)
    return manifest


def _progress(progress, stream, total):
    if callable(progress):
        return progress(stream)
    from tqdm import tqdm

    return tqdm(stream, total=total, desc="phantoms", unit="case")


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
