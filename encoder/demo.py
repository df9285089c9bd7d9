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

from .codes import CodeEncoder, Codes
from .data import PhantomConfig, SliceSet, generate_phantoms, load_slices
from .evaluate import KS, case_groups, dice, evaluate_retrieval, ANATOMY_CLASSES, TUMOUR_CLASSES

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


def _encode(encoder: CodeEncoder, slices: SliceSet, log) -> tuple[Codes, Codes | None]:
    """Codes (with their continuous latents, from the same forward pass) of every slice and, for
    phantoms, of its healthy counterpart."""
    from tqdm import tqdm

    start = time.perf_counter()
    parts, healthy_parts = [], []
    step = 256
    for i in tqdm(range(0, len(slices), step), desc="encoding", unit="batch"):
        parts.append(encoder.encode(slices.images[i:i + step], keep_latents=True))
        if slices.healthy is not None:
            healthy_parts.append(encoder.encode(slices.healthy[i:i + step]))
    elapsed = time.perf_counter() - start
    codes = _concat_codes(parts)
    healthy = _concat_codes(healthy_parts) if healthy_parts else None
    log(f"encoded {len(slices)} slices (and their healthy counterparts) in {elapsed:.1f} s: "
        f"normal code {codes.normal_nbits} bits, abnormal code {codes.abnormal_nbits} bits")
    return codes, healthy


def _concat_codes(parts: list[Codes]) -> Codes:
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
    latents = None
    if parts[0].latents is not None:
        latents = tuple(np.concatenate([p.latents[j] for p in parts]) for j in (0, 1))
    return Codes(cat("normal_indices"), cat("abnormal_indices"), cat("normal_bits"), cat("abnormal_bits"),
                 parts[0].normal_nbits, parts[0].abnormal_nbits, latents)


def build_index(codes: Codes, slices: SliceSet) -> hashindex.MultiFieldIndex:
    index = hashindex.MultiFieldIndex({"normal": codes.normal_nbits, "abnormal": codes.abnormal_nbits})
    index.add({"normal": codes.normal_bits, "abnormal": codes.abnormal_bits}, groups=case_groups(slices.case_ids))
    return index


def run_demo(out: str | os.PathLike = "hashindex-demo", cache: str | os.PathLike | None = None,
             config: DemoConfig = DemoConfig(), checkpoint: str | os.PathLike | None = None,
             log: Callable[[str], None] = print) -> Path:
    """Runs the whole job and returns the report's HTML page."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(cache) if cache is not None else default_cache()
    cache.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    encoder = CodeEncoder.load(checkpoint)
    slices = demo_slices(cache, config, encoder.image_size, log)
    codes, healthy = _encode(encoder, slices, log)

    start = time.perf_counter()
    index = build_index(codes, slices)
    index.save(out / INDEX_FILE)
    np.savez(out / ITEMS_FILE, case_ids=slices.case_ids, slice_index=slices.slice_index,
             abnormal=slices.abnormal, ids=np.arange(len(slices)))
    log(f"index: {len(index)} items, fields {index.fields}, built in {time.perf_counter() - start:.2f} s "
        f"[{out / INDEX_FILE}]")

    table = _evaluate(slices, codes, healthy, config.max_queries, config.seed, out / "evaluation.json", log,
                      index=index)

    galleries = _galleries(encoder, index, slices, codes, out, config)
    page = _html(out, table, galleries, slices, codes, config, time.perf_counter() - started)
    log(f"report: {page}  ({time.perf_counter() - started:.1f} s in all)")
    return page


def _evaluate(slices, codes, healthy, max_queries, seed, json_path: Path, log, index=None):
    start = time.perf_counter()
    table = evaluate_retrieval(
        slices, codes.normal_bits, codes.abnormal_bits, (codes.normal_nbits, codes.abnormal_nbits), codes.latents,
        healthy_normal_bits=None if healthy is None else healthy.normal_bits,
        healthy_normal_indices=None if healthy is None else healthy.normal_indices,
        normal_indices=codes.normal_indices, max_queries=max_queries, seed=seed, index=index)
    log(f"evaluation ({time.perf_counter() - start:.1f} s), mean Dice of the top k with the query, "
        "other cases only:\n" + table.format())
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(table.to_dict(), indent=1))
    log(f"table: {json_path}")
    return table


def evaluate_dataset(data: str | os.PathLike, out_json: str | os.PathLike, checkpoint: str | os.PathLike | None = None,
                     max_queries: int = 1000, seed: int = 0, log: Callable[[str], None] = print):
    """``hashindex evaluate``: the retrieval table of a model on a BraTS/phantom folder (or slices .npz)."""
    encoder = CodeEncoder.load(checkpoint)
    data = Path(data)
    slices = SliceSet.load(data) if data.suffix == ".npz" else load_slices(data, size=encoder.image_size, progress=True)
    if slices.size != encoder.image_size:
        raise ValueError(f"data: slices are {slices.size} px, the model takes {encoder.image_size}")
    codes, healthy = _encode(encoder, slices, log)
    return _evaluate(slices, codes, healthy, max_queries, seed, Path(out_json), log)


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
    pseudo = encoder.pseudo_normal(slices.images[rows]) if len(rows) else None
    predicted = encoder.segment(slices.images[rows]) if len(rows) else None
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
        for r, (mode, (queries, weights, score)) in enumerate(modes.items(), start=1):
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
shipped small model into a normal-anatomy code ({codes.normal_nbits} bits) and an abnormal-anatomy code
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


def query(index_path: str | os.PathLike, case: str | os.PathLike, slice_index: int, mode: str = "both", k: int = 5,
          checkpoint: str | os.PathLike | None = None) -> list[dict]:
    """Searches a saved demo index with one axial slice of a user's BraTS-layout case."""
    from .data import load_case, slice_case

    index = hashindex.load(index_path)
    if not isinstance(index, hashindex.MultiFieldIndex) or set(index.fields) != {"normal", "abnormal"}:
        raise ValueError(f"{index_path}: expected the MultiFieldIndex written by `hashindex demo`")
    items_path = Path(index_path).with_name(ITEMS_FILE)
    items = np.load(items_path) if items_path.exists() else None
    encoder = CodeEncoder.load(checkpoint)
    slices = slice_case(load_case(case), size=encoder.image_size, drop_empty=False)
    if not 0 <= slice_index < len(slices):
        raise ValueError(f"slice_index: expected 0 <= index < {len(slices)}, got {slice_index}")
    codes = encoder.encode(slices.images[[slice_index]])
    weights = {"normal": {"normal": 1.0}, "abnormal": {"abnormal": 1.0}, "both": {"normal": 1.0, "abnormal": 1.0}}
    if mode not in weights:
        raise ValueError(f"mode: expected one of {sorted(weights)}, got {mode!r}")
    res = index.search({"normal": codes.normal_bits, "abnormal": codes.abnormal_bits}, k, weights=weights[mode])
    hits = []
    for hit, dist in zip(res.ids[0], res.distances[0]):
        if hit < 0:
            continue
        entry = {"id": int(hit), "distance": float(dist)}
        if items is not None:
            entry.update(case=str(items["case_ids"][hit]), slice=int(items["slice_index"][hit]),
                         abnormal=int(items["abnormal"][hit]))
        hits.append(entry)
    return hits
