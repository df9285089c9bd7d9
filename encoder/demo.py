"""``hashindex demo``: phantoms -> shipped encoder -> codes -> MultiFieldIndex -> evaluation -> report.

Everything lands in a cache folder (phantoms, slices, codes) and a report folder (HTML page, PNG
galleries, the evaluation table as JSON, the index and its item table for ``hashindex query``).
Re-running reuses the cache.
"""
from __future__ import annotations

import html
import json
import os
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import hashindex

from .codes import CodeEncoder, Codes, encode_slices
from .data import PhantomConfig, SliceSet, generate_phantoms, load_slices
from .evaluate import ANATOMY_CLASSES, KS, TUMOUR_CLASSES, case_groups, dice, evaluate_model, write_table

ITEMS_FILE = "items.npz"
INDEX_FILE = "index.hx"


@dataclass(frozen=True)
class DemoConfig:
    cases: int = 24
    seed: int = 0
    spacing: float = 2.0  # 2 mm volumes; the small model sees 64 x 64 slices (3.75 mm pixels)
    examples: int = 4
    max_queries: int = 1000


def default_cache() -> Path:
    return Path(os.environ.get("HASHINDEX_CACHE", Path.home() / ".cache" / "hashindex"))


def demo_slices(cache: Path, cfg: DemoConfig, size: int, log: Callable[[str], None]) -> SliceSet:
    """The demo's phantom slices at the model's size, generated and sliced once, then read from the cache."""
    root = cache / f"phantoms-seed{cfg.seed}-{cfg.spacing:g}mm"
    start = time.perf_counter()
    generate_phantoms(root, cfg.cases, seed=cfg.seed, config=PhantomConfig(spacing=cfg.spacing), progress=True)
    path = cache / f"slices-seed{cfg.seed}-{cfg.spacing:g}mm-{cfg.cases}cases-{size}px.npz"
    if path.exists():
        slices = SliceSet.load(path)
    else:
        slices = load_slices(root, size=size, cases=sorted(_case_names(root, cfg.cases)), progress=True)
        slices.save(path)
    log(f"data: {cfg.cases} phantom cases, {len(slices)} slices ({int((slices.abnormal == 1).sum())} with tumour) "
        f"in {time.perf_counter() - start:.1f} s  [{root}]")
    return slices


def _case_names(root: Path, cases: int) -> list[str]:
    manifest = json.loads((root / "phantoms.json").read_text())
    return [c["case"] for c in manifest["cases"]][:cases]


def build_index(codes: Codes, slices: SliceSet) -> hashindex.MultiFieldIndex:
    index = hashindex.MultiFieldIndex({"normal": codes.normal_nbits, "abnormal": codes.abnormal_nbits})
    index.add({"normal": codes.normal_bits, "abnormal": codes.abnormal_bits}, groups=case_groups(slices.case_ids))
    return index


def run_demo(out: str | os.PathLike = "hashindex-demo", cache: str | os.PathLike | None = None,
             config: DemoConfig = DemoConfig(), checkpoint: str | os.PathLike | None = None,
             log: Callable[[str], None] = print, data: str | os.PathLike | None = None) -> Path:
    """Runs the whole job and returns the report's HTML page. ``data``: a folder of real cases (any
    layout the loader knows) to index instead of the generated phantoms."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache) if cache is not None else default_cache()
    cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    encoder = CodeEncoder.load(checkpoint)
    if data is None:
        slices = demo_slices(cache, config, encoder.image_size, log)
    else:
        slices = load_slices(data, size=encoder.image_size, progress=True)
        log(f"data: {len(np.unique(slices.case_ids))} cases, {len(slices)} slices from {data}")
    codes, healthy = encode_slices(encoder, slices, log)

    start = time.perf_counter()
    index = build_index(codes, slices)
    index.save(out / INDEX_FILE)
    np.savez(out / ITEMS_FILE, case_ids=slices.case_ids, slice_index=slices.slice_index,
             abnormal=slices.abnormal, ids=np.arange(len(slices)))
    log(f"index: {len(index)} items, fields {index.fields}, built in {time.perf_counter() - start:.2f} s "
        f"[{out / INDEX_FILE}]")

    start = time.perf_counter()
    table = evaluate_model(encoder, slices, codes, healthy, config.max_queries, config.seed, index=index)
    log(f"evaluation: {time.perf_counter() - start:.1f} s")
    write_table(table, out / "evaluation.json", log)

    galleries = _galleries(encoder, index, slices, codes, out, config)
    page = _html(out, table, galleries, slices, codes, config, time.perf_counter() - started)
    log(f"report: {page}  ({time.perf_counter() - started:.1f} s in all)")
    return page




# --- example queries ------------------------------------------------------------------------

def _examples(slices: SliceSet, count: int, seed: int) -> np.ndarray:
    """Tumour slices of different cases, each near its case's largest tumour section."""
    area = (slices.seg > 0).sum((1, 2))
    picks = []
    for case in np.unique(slices.case_ids[slices.abnormal == 1]):
        rows = np.flatnonzero(slices.case_ids == case)
        picks.append(rows[np.argmax(area[rows])])
    rng = np.random.default_rng(seed)
    picks = np.array(picks)
    return np.sort(rng.choice(picks, min(count, len(picks)), replace=False)) if len(picks) else picks


def _galleries(encoder: CodeEncoder, index, slices: SliceSet, codes: Codes, out: Path, cfg: DemoConfig) -> list[dict]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _examples(slices, cfg.examples, cfg.seed)
    groups = case_groups(slices.case_ids)
    pseudo = encoder.pseudo_normal(slices.images[rows], present=slices.contrasts[rows]) if len(rows) else None
    predicted = encoder.segment(slices.images[rows], present=slices.contrasts[rows]) if len(rows) else None
    results = []
    for n, row in enumerate(rows):
        partner = rows[(n + 1) % len(rows)]
        modes = {
            "normal code": ({"normal": codes.normal_bits[[row]]}, {"normal": 1.0}, "anatomy"),
            "abnormal code": ({"abnormal": codes.abnormal_bits[[row]]}, {"abnormal": 1.0}, "tumour"),
            "both codes": ({"normal": codes.normal_bits[[row]], "abnormal": codes.abnormal_bits[[row]]},
                           {"normal": 1.0, "abnormal": 1.0}, "both"),
            f"synthetic: normal of this, abnormal of {slices.case_ids[partner]}":
                ({"normal": codes.normal_bits[[row]], "abnormal": codes.abnormal_bits[[partner]]},
                 {"normal": 1.0, "abnormal": 1.0}, "both"),
        }
        fig, axes = plt.subplots(len(modes) + 1, 6, figsize=(12, 2.4 * (len(modes) + 1)),
                                 gridspec_kw=dict(wspace=0.05, hspace=0.45, left=0.01, right=0.99, top=0.95, bottom=0.02))
        for ax in axes.ravel():
            ax.axis("off")
        head = [("query FLAIR", slices.images[row, 3], None), ("query T1CE", slices.images[row, 1], None),
                ("pseudo-normal FLAIR", np.where(slices.images[row, 3] == 0, 0.0, pseudo[n, 3]), None), ("true healthy FLAIR",
                 slices.healthy[row, 3] if slices.healthy is not None else np.zeros_like(slices.images[row, 3]), None),
                ("predicted tumour", slices.images[row, 3], predicted[n]), ("true tumour", slices.images[row, 3], slices.seg[row])]
        for ax, (title, image, labels) in zip(axes[0], head):
            _show(ax, image, labels, title)
        record = {"row": int(row), "case": str(slices.case_ids[row]), "slice": int(slices.slice_index[row]), "modes": {}}
        for r, (mode, (queries, weights, _score)) in enumerate(modes.items(), start=1):
            res = index.search(queries, 5, weights=weights, exclude_groups=groups[[row]])
            axes[r, 0].text(0.5, 0.5, textwrap.fill(mode, 22), fontsize=9, ha="center", va="center",
                            transform=axes[r, 0].transAxes)
            hits = []
            for c, (hit, dist) in enumerate(zip(res.ids[0], res.distances[0]), start=1):
                if hit < 0:
                    continue
                a = float(dice(slices.anatomy[row], slices.anatomy[hit], ANATOMY_CLASSES)) if slices.anatomy is not None else float("nan")
                t = float(dice(slices.seg[row], slices.seg[hit], TUMOUR_CLASSES))
                caption = f"{slices.case_ids[hit][-5:]} z{slices.slice_index[hit]}\nd={dist:g} anat {a:.2f} tum {t:.2f}"
                _show(axes[r, c], slices.images[hit, 3], slices.seg[hit], caption)
                hits.append({"id": int(hit), "case": str(slices.case_ids[hit]), "slice": int(slices.slice_index[hit]),
                             "distance": float(dist), "anatomy_dice": a, "tumour_dice": t})
            record["modes"][mode] = hits
        path = out / f"query_{n + 1}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        record["png"] = path.name
        results.append(record)
    (out / "examples.json").write_text(json.dumps(results, indent=1))
    return results


def _show(ax, image, labels, title):
    # z-scored slices: background is exactly 0 and would show as mid-grey; draw it black instead
    shown = np.where(image == 0, np.nan, image)
    ax.set_facecolor("black")
    ax.imshow(np.rot90(shown), cmap="gray", vmin=np.nanpercentile(shown, 1) if np.isfinite(shown).any() else 0,
              vmax=np.nanpercentile(shown, 99.5) if np.isfinite(shown).any() else 1)
    if labels is not None:
        overlay = np.ma.masked_equal(np.rot90(labels), 0)
        ax.imshow(overlay, cmap="autumn", alpha=0.45, vmin=1, vmax=3)
    ax.set_title(title, fontsize=7)


def _html(out: Path, table, galleries: list[dict], slices: SliceSet, codes: Codes, cfg: DemoConfig, seconds: float) -> Path:
    rows = "".join(
        "<tr><td>" + html.escape(name) + "</td>" + "".join(
            f"<td>{m[f'anatomy_dice@{k}']:.3f}</td>" for k in KS) + "".join(
            f"<td>{m[f'tumour_dice@{k}']:.3f}</td>" for k in KS) + f"<td>{m['level_error@10']:.3f}</td></tr>"
        for name, m in table.rows.items())
    figures = "".join(
        f"<h3>Query {i + 1}: {html.escape(g['case'])}, slice {g['slice']}</h3><img src='{g['png']}' width='100%'>"
        for i, g in enumerate(galleries))
    pseudo = html.escape(table.format().split("\n\n", 1)[1]) if "\n\n" in table.format() else ""
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>hashindex demo</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto}}td,th{{padding:2px 8px;text-align:right}}
td:first-child{{text-align:left}}</style></head><body>
<h1>hashindex demo: normal / abnormal anatomy retrieval on glioma phantoms</h1>
<p>{len(slices)} axial slices of {cfg.cases} synthetic cases (seed {cfg.seed}, {cfg.spacing:g} mm), encoded by the
shipped base model into a normal-anatomy code ({codes.normal_nbits} bits) and an abnormal-anatomy code
({codes.abnormal_nbits} bits), indexed in a hashindex.MultiFieldIndex with one group per case. Run time {seconds:.0f} s.</p>
<h2>Evaluation</h2><p>Mean Dice between the query's labels and those of its top-k results from other cases:
normal-anatomy labels (CSF, ventricles, grey and white matter) and tumour labels (tumour Dice over tumour queries);
|dz|: mean difference in relative slice level.</p>
<table><tr><th>method</th>{''.join(f'<th>anatomy@{k}</th>' for k in KS)}{''.join(f'<th>tumour@{k}</th>' for k in KS)}<th>|dz|@10</th></tr>
{rows}</table><pre>{pseudo}</pre>
<h2>Example queries</h2><p>Row 1: the query, its pseudo-normal image (normal code decoded without tumour), the
predicted and true tumour labels. Then the top 5 of each search mode (other cases only), with distance and
Dice.</p>{figures}</body></html>"""
    path = out / "index.html"
    path.write_text(page)
    return path
