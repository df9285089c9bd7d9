"""A picture of one case, so that a person can judge whether the phantoms look like MRI."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .brats import default_slice
from .labels import ANATOMY_LABELS, TUMOUR_LABELS

CONTRAST_TITLES = ("T1", "T1CE", "T2", "FLAIR")
TUMOUR_COLOURS = {1: (0.9, 0.2, 0.2), 2: (0.2, 0.8, 0.2), 3: (1.0, 0.85, 0.1)}
ANATOMY_COLOURS = {1: (0.3, 0.5, 1.0), 2: (0.0, 0.2, 0.7), 3: (0.6, 0.6, 0.6), 4: (0.95, 0.95, 0.95)}


def _overlay(base: np.ndarray, labels: np.ndarray, colours: dict, alpha: float = 0.55) -> np.ndarray:
    grey = np.clip(base / max(float(np.percentile(base, 99.5)), 1e-6), 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    for value, colour in colours.items():
        hit = labels == value
        rgb[hit] = (1 - alpha) * rgb[hit] + alpha * np.array(colour)
    return rgb


def render_montage(case, out: str | os.PathLike, slice_index: int | None = None, title: str | None = None) -> Path:
    """Writes a PNG of one axial slice of a loaded :class:`~hashindex.encoder.data.Case`: the four
    contrasts, the tumour labels, the anatomy labels and, when the case has one, its healthy
    counterpart. ``slice_index`` defaults to the slice with the most tumour (else the middle one).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    depth = case.images.shape[-1]
    if slice_index is None:
        slice_index = default_slice(case)
    if not 0 <= slice_index < depth:
        raise ValueError(f"slice_index: expected 0 <= index < {depth}, got {slice_index}")
    show = lambda a: np.rot90(a[..., slice_index])  # noqa: E731  (radiological view: anterior up)
    rows = [("subject", case.images, case.seg, case.anatomy)]
    if case.healthy is not None:
        rows.append(("healthy counterpart", case.healthy, None, case.healthy_anatomy))
    fig, axes = plt.subplots(len(rows), 6, figsize=(15, 3.0 * len(rows) + 0.8), squeeze=False)
    for r, (name, images, seg, anatomy) in enumerate(rows):
        for c in range(4):
            ax = axes[r, c]
            ax.imshow(show(images[c]), cmap="gray", vmin=0, vmax=np.percentile(images[c], 99.7) or 1)
            ax.set_title(f"{name}: {CONTRAST_TITLES[c]}" if c == 0 else CONTRAST_TITLES[c], fontsize=9)
        seg_panel = seg if seg is not None else np.zeros(images.shape[1:], dtype=np.uint8)
        axes[r, 4].imshow(_overlay(show(images[3]), show(seg_panel), TUMOUR_COLOURS))
        axes[r, 4].set_title("tumour labels on FLAIR", fontsize=9)
        if anatomy is not None:
            axes[r, 5].imshow(_overlay(np.zeros(show(anatomy).shape), show(anatomy), ANATOMY_COLOURS, alpha=1.0))
        axes[r, 5].set_title("normal-anatomy labels", fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    legend = [Patch(color=TUMOUR_COLOURS[k], label=TUMOUR_LABELS[k]) for k in TUMOUR_COLOURS]
    legend += [Patch(color=ANATOMY_COLOURS[k], label=ANATOMY_LABELS[k]) for k in ANATOMY_COLOURS]
    fig.legend(handles=legend, loc="lower center", ncol=len(legend), fontsize=8, frameon=False)
    fig.suptitle(title or f"{case.case_id}, axial slice {slice_index}", fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
