"""The pseudo-normal figure of docs/encoder.md: for tumour slices, the query, the model's pseudo-normal image
and (phantoms) the true healthy counterpart, one contrast, every column of a row in one intensity
window, with the predicted and true tumour outlines.

    python -m hashindex.encoder.figures --data DIR --out docs/pseudo_normal.png [--cases ...]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from .data import SliceSet, load_slices
from .report import largest_sections, window

FLAIR = 3


def pick_rows(slices: SliceSet, count: int, seed: int = 0) -> np.ndarray:
    """One slice per case (its largest tumour section), from up to ``count`` cases."""
    picks = largest_sections(slices)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(picks, min(count, len(picks)), replace=False)) if picks else np.array([], int)


def pseudo_normal_figure(encoder, slices: SliceSet, rows: np.ndarray, path: str | os.PathLike,
                         contrast: int = FLAIR) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = slices.contrasts[rows]
    pseudo = encoder.pseudo_normal(slices.images[rows], present=present)
    predicted = encoder.segment(slices.images[rows], present=present)
    has_healthy = slices.healthy is not None and bool(slices.healthy_known[rows].all())
    columns = ["query", "pseudo-normal", "true healthy"] if has_healthy else ["query", "pseudo-normal"]
    height = 2.6 * len(rows) + 0.5  # room for the title above the first row
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(2.6 * len(columns), height), squeeze=False,
                             gridspec_kw=dict(wspace=0.03, hspace=0.25, left=0.01, right=0.99, top=1 - 0.55 / height,
                                              bottom=0.01))
    for r, row in enumerate(rows):
        brain = slices.images[row, contrast] != 0
        images = [slices.images[row, contrast], np.where(brain, pseudo[r, contrast], 0.0)]
        if has_healthy:
            images.append(slices.healthy[row, contrast])
        lo, hi = window(*images)  # one window for the whole row
        for c, (title, image) in enumerate(zip(columns, images)):
            ax = axes[r, c]
            ax.imshow(np.rot90(np.where(image == 0, np.nan, image)), cmap="gray", vmin=lo, vmax=hi)
            ax.set_facecolor("black")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.contour(np.rot90(slices.seg[row] > 0), levels=[0.5], colors="tab:red", linewidths=0.8)
                ax.contour(np.rot90(predicted[r] > 0), levels=[0.5], colors="tab:cyan", linewidths=0.8)
            ax.set_title(f"{slices.case_ids[row]} z{slices.slice_index[row]}" if c == 0 else title, fontsize=7)
    fig.suptitle("FLAIR: query (red: true tumour, cyan: predicted), " + ", ".join(columns[1:])
                 + "; one intensity window per row", fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    from .codes import CodeEncoder

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="folder of cases (any known layout) or slices .npz")
    p.add_argument("--out", required=True)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--cases", nargs="+", default=None)
    p.add_argument("--count", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    encoder = CodeEncoder.load(args.checkpoint)
    slices = (SliceSet.load(args.data) if args.data.endswith(".npz")
              else load_slices(args.data, size=encoder.image_size, cases=args.cases))
    print(pseudo_normal_figure(encoder, slices, pick_rows(slices, args.count, args.seed), args.out))


if __name__ == "__main__":
    from hashindex.allocator import tune_allocator_for_command

    tune_allocator_for_command()  # a command, like `hashindex`: torch's freed buffers are reused
    main()
