"""How real MRI folders name their files, and which label scheme each uses.

A *layout* maps file-name patterns to the four contrasts (T1, T1CE, T2, FLAIR), the tumour
labels, an optional brain mask and, for phantoms, the anatomy and healthy-counterpart files. A case
is a folder; the layout is recognised from the names of the files in it, so folders are read as
they come, without renaming. Built in:

| layout       | files in ``<case>/``                                                          | labels in file |
|--------------|-------------------------------------------------------------------------------|----------------|
| brats2021    | ``<case>_{t1,t1ce,t2,flair,seg}.nii.gz`` (BraTS 2018-2021, our phantoms)      | 1, 2, 4        |
| brats2023    | ``<case>-{t1n,t1c,t2w,t2f,seg}.nii.gz``                                        | 1, 2, 3        |
| deepmedic    | ``T1_*``, ``T1c_*``, ``T2_*``, ``Flair_*``, ``OTMultiClass``, ``brainmask``   | 1-4 (BraTS 2013) |
| bet          | ``*_t1_bet``, ``*_t1c_bet``, ``*_t2_bet``, ``*_fla_bet``, ``*_seg_fused_mav`` | 1, 2, 4        |

Label schemes are explicit maps from the file's values to ours (0 none, 1 necrotic/non-enhancing
core, 2 oedema, 3 enhancing). BraTS 2013 has a separate non-enhancing class (3) that later releases
merged into the core: it maps to 1.

Your own naming: ``Layout.from_dict({"name": "mine", "contrasts": {"flair": "*FLAIR*.nii.gz",
"t1ce": "*T1post*.nii.gz"}, "seg": "*labels*.nii.gz", "labels": {"1": 1, "2": 2, "4": 3}})`` (or
the same as a JSON file for ``--layout``). Patterns are shell globs matched against the file names
of one case folder, case-insensitively; ``{case}`` stands for the folder's name.
"""
from __future__ import annotations

import fnmatch
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .labels import ENHANCING, NECROTIC, OEDEMA
from .naming import NAMINGS, Naming

CONTRASTS = ("t1", "t1ce", "t2", "flair")
NIFTI = (".nii.gz", ".nii")

BRATS2021_LABELS = {0: 0, 1: NECROTIC, 2: OEDEMA, 4: ENHANCING}
# BraTS 2013: 1 necrosis, 2 oedema, 3 non-enhancing tumour, 4 enhancing tumour (Menze et al. 2015).
BRATS2013_LABELS = {0: 0, 1: NECROTIC, 2: OEDEMA, 3: NECROTIC, 4: ENHANCING}


@dataclass(frozen=True)
class Layout:
    """File-name patterns of one case folder (see the module docstring)."""

    name: str
    contrasts: dict  # contrast ("t1", "t1ce", "t2", "flair") -> pattern
    labels: dict = field(default_factory=lambda: dict(BRATS2021_LABELS))  # file value -> internal label
    seg: str | None = None
    mask: str | None = None  # brain mask: voxels > 0.5 are brain
    anatomy: str | None = None  # phantoms: normal-anatomy labels
    healthy: dict | None = None  # phantoms: contrast -> pattern of the healthy counterpart
    healthy_anatomy: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.contrasts, dict) or not self.contrasts:
            raise ValueError(f"contrasts: expected a dict of contrast -> file pattern, got {self.contrasts!r}")
        unknown = set(self.contrasts) - set(CONTRASTS)
        if unknown:
            raise ValueError(f"contrasts: unknown contrast {sorted(unknown)}; expected some of {list(CONTRASTS)}")
        for key, value in self.labels.items():
            if not (isinstance(key, int) and isinstance(value, int) and 0 <= value <= ENHANCING):
                raise ValueError(f"labels: expected int file value -> label in 0..{ENHANCING}, got {key!r}: {value!r}")
        if self.labels.get(0, 0) != 0:
            raise ValueError("labels: file value 0 must stay 0 (no tumour)")

    @staticmethod
    def from_dict(data: dict) -> Layout:
        if not isinstance(data, dict) or "contrasts" not in data:
            raise ValueError(f"layout: expected a dict with 'name', 'contrasts' and optional 'seg', 'mask', "
                             f"'labels', got {data!r}")
        known = {"name", "contrasts", "labels", "seg", "mask", "anatomy", "healthy", "healthy_anatomy"}
        extra = set(data) - known
        if extra:
            raise ValueError(f"layout: unknown keys {sorted(extra)}; expected some of {sorted(known)}")
        labels = data.get("labels")
        try:
            labels = dict(BRATS2021_LABELS) if labels is None else {int(k): int(v) for k, v in labels.items()}
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"labels: expected a mapping of file value -> label, got {labels!r}") from exc
        return Layout(**{**data, "name": str(data.get("name", "custom")), "labels": labels})

    @staticmethod
    def from_json(path: str | os.PathLike) -> Layout:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: cannot read a layout JSON file ({exc})") from exc
        return Layout.from_dict(data)

    def match(self, folder: Path, names: list[str]) -> dict | None:
        """Files of this layout in ``folder`` (``names``: its file names): key -> Path, or None when
        no contrast matches. Two files matching one pattern is an error, not a guess."""
        found: dict = {}
        patterns = {f"image:{c}": p for c, p in self.contrasts.items()}
        patterns.update({k: getattr(self, k) for k in ("seg", "mask", "anatomy", "healthy_anatomy") if getattr(self, k)})
        patterns.update({f"healthy:{c}": p for c, p in (self.healthy or {}).items()})
        for key, pattern in patterns.items():
            hits = _matches(pattern.replace("{case}", folder.name), names)
            if len(hits) > 1:
                raise ValueError(f"{folder}: {len(hits)} files match the {key.split(':')[-1]} pattern "
                                 f"{pattern!r} of layout {self.name} ({', '.join(hits)}); rename or pass a layout")
            if hits:
                found[key] = folder / hits[0]
        return found if any(k.startswith("image:") for k in found) else None


def _matches(pattern: str, names: list[str]) -> list[str]:
    pattern = pattern.lower()
    out = []
    for name in names:
        low = name.lower()
        stem = next((low[: -len(ext)] for ext in NIFTI if low.endswith(ext)), None)
        if stem is None:
            continue
        if fnmatch.fnmatchcase(low, pattern) or fnmatch.fnmatchcase(stem, pattern):
            out.append(name)
    return sorted(out)


def _brats_layout(naming: Naming) -> Layout:
    """The reading side of a naming the phantoms are written in (naming.py): one source of file names."""
    def pattern(key: str) -> str:
        return naming.filename("{case}", key)[: -len(".nii.gz")]

    return Layout(
        name=naming.name,
        contrasts={c: pattern(c) for c in CONTRASTS},
        labels={0: 0, 1: NECROTIC, 2: OEDEMA, naming.enhancing_in_file: ENHANCING},
        seg=pattern("seg"),
        anatomy=pattern("anat"),
        healthy={c: pattern(f"healthy_{c}") for c in CONTRASTS},
        healthy_anatomy=pattern("healthy_anat"),
    )


LAYOUTS = {
    "brats2021": _brats_layout(NAMINGS["brats2021"]),
    "brats2023": _brats_layout(NAMINGS["brats2023"]),
    # DeepMedic's redistribution of BraTS 2013: Flair_subtrMeanDivStd.nii.gz, T1c_..., OTMultiClass, brainmask.
    "deepmedic": Layout(
        name="deepmedic",
        contrasts={"t1": "t1_*", "t1ce": "t1c_*", "t2": "t2_*", "flair": "flair*"},
        labels=BRATS2013_LABELS,
        seg="otmulticlass*",
        mask="brainmask*",
    ),
    # Skull-stripped TCGA/TCIA cases (BrainLesion tutorials): <case>_t1_bet, _t1c_bet, _t2_bet, _fla_bet.
    "bet": Layout(
        name="bet",
        contrasts={"t1": "*_t1_bet", "t1ce": "*_t1c_bet", "t2": "*_t2_bet", "flair": "*_fla_bet"},
        labels=BRATS2021_LABELS,
        seg="*_seg*",
    ),
}


def recognise(folder: Path, names: list[str], layouts: list[Layout]) -> tuple[Layout, dict] | None:
    """The layout that names the most contrasts of this folder (first listed wins a tie)."""
    best = None
    for layout in layouts:
        found = layout.match(folder, names)
        if found is None:
            continue
        count = sum(k.startswith("image:") for k in found)
        if best is None or count > best[0]:
            best = (count, layout, found)
    return None if best is None else (best[1], best[2])
