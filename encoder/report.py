"""The demo's report: one HTML page that opens from disk (no server, no CDN, no script from elsewhere),
with a query picker over example slices of several patients, what the model makes of each query, its
hits in every search mode, and the evaluation table.

Images are small PNG files beside the page (``img/``), drawn with numpy and saved by matplotlib's
``imsave``: every column of one contrast shares one intensity window, label colours follow the
legend. ``#selftest`` at the end of the page's address makes it walk through every query and write
the outcome into the page title (the browser test reads it).
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import MODALITIES, SliceSet
from .evaluate import ANATOMY_CLASSES, KS, TUMOUR_CLASSES, case_groups, dice

CONTRAST_NAMES = {"t1": "T1", "t1ce": "T1CE", "t2": "T2", "flair": "FLAIR"}
FLAIR = MODALITIES.index("flair")
# Tumour label colours (RGB), the same in every picture and in the legend.
LABEL_COLOURS = {1: (230, 60, 50), 2: (255, 205, 40), 3: (40, 200, 255)}
LABEL_NAMES = {1: "necrotic / non-enhancing core", 2: "oedema", 3: "enhancing tumour"}
DISPLAY_PX = 130  # pictures are saved at the slice size; the page scales them
HITS = 5

MODES = {
    "normal": ("Same anatomy, no tumour",
               "Searches the normal-anatomy code alone: slices of other patients at the same level with the same "
               "anatomy, whatever tumour they carry, so the tumour-free ones show what this brain looked like "
               "before the tumour — the comparison a radiologist makes when reading a lesion against normal anatomy."),
    "abnormal": ("Similar tumour, any anatomy",
                 "Searches the abnormal-anatomy code alone: tumours of similar appearance, size and make-up "
                 "(necrotic core, oedema, enhancement), wherever they sit, for a differential diagnosis from cases "
                 "whose diagnosis and course are known."),
    "both": ("Same anatomy and similar tumour",
             "Sums both codes' distances: the closest overall match, the same level and a similar lesion."),
    "synthetic": ("This anatomy with another patient's tumour",
                  "A query that exists in no scan: the normal code of this slice with the abnormal code of another "
                  "example query (named in the heading). It asks what this tumour would look like in this brain's "
                  "anatomy, or which patients had it there."),
}


@dataclass
class Example:
    row: int
    partner: int  # the row whose abnormal code the synthetic mode borrows


def largest_sections(slices: SliceSet) -> list[int]:
    """For every case with tumour, the row of its largest tumour section."""
    area = (slices.seg > 0).sum((1, 2)) if slices.seg is not None else np.zeros(len(slices))
    picks = []
    for case in np.unique(slices.case_ids[slices.abnormal == 1]):
        rows = np.flatnonzero((slices.case_ids == case) & (slices.abnormal == 1))
        picks.append(int(rows[np.argmax(area[rows])]))
    return picks


def pick_examples(slices: SliceSet, count: int, seed: int = 0) -> list[Example]:
    """Tumour slices of as many patients as possible (each case's largest tumour section, then other
    levels) and about a quarter tumour-free slices, ``count`` in all, in case order."""
    rng = np.random.default_rng(seed)
    want_healthy = max(1, count // 4) if (slices.abnormal == 0).any() else 0
    picks = largest_sections(slices)  # the largest section of each case first, cases in random order
    rng.shuffle(picks)
    picks = picks[: count - want_healthy]
    spare = np.setdiff1d(np.flatnonzero(slices.abnormal == 1), picks)
    while len(picks) < count - want_healthy and len(spare):
        extra = int(rng.choice(spare))
        picks.append(extra)
        spare = spare[spare != extra]
    healthy = np.flatnonzero(slices.abnormal == 0)
    if want_healthy:
        # tumour-free slices near the middle of the head, from several cases
        level = slices.slice_index / np.maximum(slices.depth - 1, 1)
        middle = healthy[np.abs(level[healthy] - 0.55) < 0.15]
        pool = middle if len(middle) >= want_healthy else healthy
        picks += [int(r) for r in rng.choice(pool, min(want_healthy, len(pool)), replace=False)]
    picks = sorted(set(picks), key=lambda r: (str(slices.case_ids[r]), int(slices.slice_index[r])))
    tumour_picks = [r for r in picks if slices.abnormal[r] == 1]
    out = []
    for r in picks:
        others = [t for t in tumour_picks if slices.case_ids[t] != slices.case_ids[r]]
        out.append(Example(r, int(rng.choice(others)) if others else r))
    return out


# --- pictures -------------------------------------------------------------------------------

def window(*images: np.ndarray) -> tuple[float, float]:
    """One intensity window (1st-99.5th percentile of the brain) for pictures shown side by side."""
    inside = np.concatenate([im[im != 0] for im in images]) if any((im != 0).any() for im in images) else np.zeros(1)
    lo, hi = np.percentile(inside, [1, 99.5])
    return float(lo), float(hi if hi > lo else lo + 1)


def _rgb(image: np.ndarray, win: tuple[float, float], labels: np.ndarray | None = None) -> np.ndarray:
    lo, hi = win
    grey = np.clip((image - lo) / (hi - lo), 0, 1)
    grey[image == 0] = 0  # background black, not mid-grey
    rgb = np.repeat(np.rot90(grey)[..., None], 3, axis=2)
    if labels is not None:
        lab = np.rot90(labels)
        for value, colour in LABEL_COLOURS.items():
            mask = lab == value
            rgb[mask] = 0.45 * rgb[mask] + 0.55 * np.array(colour) / 255.0
    return rgb


def _save(path: Path, rgb: np.ndarray) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    plt.imsave(path, np.clip(rgb, 0, 1))
    return f"{path.parent.name}/{path.name}"


def display_channel(slices: SliceSet, row: int) -> int:
    """FLAIR where the scan has it (tumour and oedema show best there), else its first contrast."""
    if slices.contrasts[row, FLAIR]:
        return FLAIR
    return int(np.argmax(slices.contrasts[row]))


# --- the page -------------------------------------------------------------------------------

def _dice_words(value: float, what: str) -> str:
    if np.isnan(value):
        return f"no {what} labels"
    word = "strong" if value >= 0.6 else "partial" if value >= 0.3 else "little" if value > 0 else "no"
    return f"{word} {what} overlap (Dice {value:.2f})"


def _tumour_words(query_seg: np.ndarray | None, hit_seg: np.ndarray | None, value: float) -> str:
    """The tumour overlap of a hit in words; ``value``: its Dice, computed once by the caller."""
    if query_seg is None or hit_seg is None:
        return "no tumour labels"
    q, h = (query_seg > 0).any(), (hit_seg > 0).any()
    if not q and not h:
        return "no tumour in either (a match)"
    if not h:
        return "no tumour in the hit (Dice 0)"
    if not q:
        return "the hit has a tumour, the query none (Dice 0)"
    if not (np.asarray(query_seg > 0) & np.asarray(hit_seg > 0)).any():
        return "tumours in both, in different places (Dice 0)"
    return _dice_words(value, "tumour")


def write_report(out: Path, encoder, index, slices: SliceSet, codes, table, examples: list[Example],
                 title: str, seconds: float) -> Path:
    """Writes ``out/index.html``, ``out/img/*.png`` and ``out/examples.json``; returns the page."""
    out = Path(out)
    rows = np.array([e.row for e in examples], dtype=np.int64)
    present = slices.contrasts[rows]
    pseudo = encoder.pseudo_normal(slices.images[rows], present=present) if len(rows) else None
    predicted = encoder.segment(slices.images[rows], present=present) if len(rows) else None
    groups = case_groups(slices.case_ids)
    has_healthy = slices.healthy is not None
    has_anatomy = slices.anatomy is not None
    records, sections, options = [], [], []
    for n, ex in enumerate(examples):
        r = ex.row
        case, z = str(slices.case_ids[r]), int(slices.slice_index[r])
        known = has_healthy and bool(slices.healthy_known[r])
        show = display_channel(slices, r)
        shown_name = CONTRAST_NAMES[MODALITIES[show]]
        main_cols = [slices.images[r, show], np.where(slices.images[r, show] != 0, pseudo[n, show], 0.0)]
        if known:
            main_cols.append(slices.healthy[r, show])
        win = window(*main_cols)
        head = []
        for c, name in enumerate(MODALITIES):
            if c == show:
                continue
            if slices.contrasts[r, c]:
                head.append((CONTRAST_NAMES[name], _save(out / "img" / f"q{n}_{name}.png",
                                                         _rgb(slices.images[r, c], window(slices.images[r, c])))))
            else:
                head.append((f"{CONTRAST_NAMES[name]} (not acquired)", None))
        head.append((shown_name, _save(out / "img" / f"q{n}_query.png", _rgb(main_cols[0], win))))
        head.append((f"pseudo-normal {shown_name}", _save(out / "img" / f"q{n}_pseudo.png", _rgb(main_cols[1], win))))
        if known:
            head.append((f"true healthy {shown_name}",
                         _save(out / "img" / f"q{n}_healthy.png", _rgb(main_cols[2], win))))
        head.append(("predicted tumour", _save(out / "img" / f"q{n}_pred.png", _rgb(main_cols[0], win, predicted[n]))))
        if slices.seg is not None and slices.abnormal[r] >= 0:
            head.append(("true tumour", _save(out / "img" / f"q{n}_true.png", _rgb(main_cols[0], win, slices.seg[r]))))
        record = {"query": n, "row": int(r), "case": case, "slice": z, "tumour": int(slices.abnormal[r]),
                  "partner": {"case": str(slices.case_ids[ex.partner]), "slice": int(slices.slice_index[ex.partner])},
                  "modes": {}}
        blocks = []
        queries = {
            "normal": ({"normal": codes.normal_bits[[r]]}, {"normal": 1.0}),
            "abnormal": ({"abnormal": codes.abnormal_bits[[r]]}, {"abnormal": 1.0}),
            "both": ({"normal": codes.normal_bits[[r]], "abnormal": codes.abnormal_bits[[r]]},
                     {"normal": 1.0, "abnormal": 1.0}),
            "synthetic": ({"normal": codes.normal_bits[[r]], "abnormal": codes.abnormal_bits[[ex.partner]]},
                          {"normal": 1.0, "abnormal": 1.0}),
        }
        for mode, (q, w) in queries.items():
            res = index.search(q, HITS, weights=w, exclude_groups=groups[[r]], one_per_group=True)
            hits, cells = [], []
            for rank, (hit, dist) in enumerate(zip(res.ids[0], res.distances[0]), start=1):
                if hit < 0:
                    continue
                a = float(dice(slices.anatomy[r], slices.anatomy[hit], ANATOMY_CLASSES)) if has_anatomy else float("nan")
                t = float(dice(slices.seg[r], slices.seg[hit], TUMOUR_CLASSES)) if slices.seg is not None else float("nan")
                hc = display_channel(slices, int(hit))
                img = _save(out / "img" / f"q{n}_{mode}_{rank}.png",
                            _rgb(slices.images[hit, hc], window(slices.images[hit, hc]),
                                 None if slices.seg is None else slices.seg[hit]))
                words = (f"{html.escape(str(slices.case_ids[hit]))}, slice {int(slices.slice_index[hit])}<br>"
                         f"distance {dist:g}<br>{_dice_words(a, 'anatomy')}"
                         + ("" if hc == FLAIR else f" ({CONTRAST_NAMES[MODALITIES[hc]]})") + "<br>"
                         f"{_tumour_words(None if slices.seg is None else slices.seg[r], None if slices.seg is None else slices.seg[hit], t)}")
                cells.append(f'<figure><img src="{img}" alt="hit {rank}"><figcaption>{rank}. {words}</figcaption></figure>')
                hits.append({"id": int(hit), "case": str(slices.case_ids[hit]), "slice": int(slices.slice_index[hit]),
                             "distance": float(dist), "anatomy_dice": a, "tumour_dice": t})
            record["modes"][mode] = hits
            heading, sentence = MODES[mode]
            if mode == "synthetic":
                heading += f" (tumour of {html.escape(record['partner']['case'])}, slice {record['partner']['slice']})"
            blocks.append(f'<h4>{heading}</h4><p class="why">{sentence}</p><div class="row">{"".join(cells)}</div>')
        records.append(record)
        head_html = "".join(
            f'<figure><img src="{src}" alt="{html.escape(name)}"><figcaption>{html.escape(name)}</figcaption></figure>'
            if src else f'<figure class="absent"><div></div><figcaption>{html.escape(name)}</figcaption></figure>'
            for name, src in head)
        kind = "tumour" if slices.abnormal[r] == 1 else "no tumour" if slices.abnormal[r] == 0 else "unlabelled"
        label = f"{n + 1}. {case}, slice {z} ({kind})"
        options.append(f'<option value="{n}">{html.escape(label)}</option>')
        sections.append(f'<section class="query" data-query="{n}"{"" if n == 0 else " hidden"}>'
                        f'<h3>{html.escape(label)}</h3><div class="row head">{head_html}</div>{"".join(blocks)}</section>')
    (out / "examples.json").write_text(json.dumps(records, indent=1))
    page = _PAGE.format(
        title=html.escape(title), seconds=f"{seconds:.0f}", n_slices=len(slices),
        n_cases=len(np.unique(slices.case_ids)), nbits_n=codes.normal_nbits, nbits_a=codes.abnormal_nbits,
        options="".join(options), sections="".join(sections), legend=_legend(), table=_table(table),
        extra=html.escape(table.format().split("\n\n", 1)[1]) if "\n\n" in table.format() else "",
        count=len(examples), px=DISPLAY_PX)
    path = out / "index.html"
    path.write_text(page)
    return path


def _legend() -> str:
    swatches = "".join(
        f'<span class="swatch" style="background:rgb{LABEL_COLOURS[v]}"></span>{html.escape(LABEL_NAMES[v])} '
        for v in sorted(LABEL_COLOURS))
    return (f"<p class=\"legend\">Tumour labels: {swatches}. Pictures are axial FLAIR slices (nose up) unless the "
            "caption names another contrast; every FLAIR picture of a query's row shares one intensity window. "
            "Each hit is the best slice of one other patient (<code>one_per_group</code>); <em>distance</em> is the "
            "Hamming distance of the code(s) searched (lower is nearer); <em>anatomy overlap</em> compares the "
            "normal-anatomy labels (CSF, ventricles, grey and white matter; phantoms only) and <em>tumour "
            "overlap</em> the tumour labels, as Dice: 1 is identical, 0 nothing in common.</p>")


def _table(table) -> str:
    head = "".join(f"<th>anatomy@{k}</th>" for k in KS) + "".join(f"<th>tumour@{k}</th>" for k in KS)
    body = "".join(
        "<tr><td>" + html.escape(name) + "</td>"
        + "".join(f"<td>{m[f'anatomy_dice@{k}']:.3f}</td>" for k in KS)
        + "".join(f"<td>{m[f'tumour_dice@{k}']:.3f}</td>" for k in KS)
        + f"<td>{m['level_error@10']:.3f}</td></tr>"
        for name, m in table.rows.items())
    return f"<table><tr><th>method</th>{head}<th>|dz|@10</th></tr>{body}</table>"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:sans-serif;max-width:1320px;margin:auto;padding:0 12px;color:#222}}
.row{{display:flex;flex-wrap:wrap;gap:8px}} figure{{margin:0;width:{px}px;font-size:11px}}
figure img{{width:{px}px;height:{px}px;background:#000;display:block;image-rendering:auto}}
figure.absent div{{width:{px}px;height:{px}px;background:#333}}
.why{{margin:2px 0 6px;color:#444;font-size:13px}} h4{{margin:14px 0 0}}
.swatch{{display:inline-block;width:12px;height:12px;margin:0 4px 0 10px;vertical-align:middle}}
td,th{{padding:2px 8px;text-align:right}} td:first-child{{text-align:left}} select{{font-size:15px}}
</style></head><body>
<h1>{title}</h1>
<p>{n_slices} axial slices of {n_cases} patients, each encoded by the shipped model into a normal-anatomy code
({nbits_n} bits) and an abnormal-anatomy code ({nbits_a} bits), indexed in a <code>hashindex.MultiFieldIndex</code>
with one group per patient; run time {seconds} s. Below, {count} example queries: pick one.</p>
<p><label for="picker">Query: </label><select id="picker">{options}</select></p>
{legend}
{sections}
<h2>Evaluation</h2>
<p>Mean Dice between the query's labels and those of its top-k results from other patients (tumour Dice over tumour
queries), for every search mode and the baselines; |dz|: mean difference in relative slice level. Full numbers:
<a href="evaluation.json">evaluation.json</a>; the example queries and their hits: <a href="examples.json">examples.json</a>.</p>
{table}<pre>{extra}</pre>
<script>
(function () {{
  var errors = [];
  window.addEventListener("error", function (e) {{
    errors.push(e.target && e.target.src ? "missing image " + e.target.src : String(e.message));
  }}, true);
  var picker = document.getElementById("picker");
  var sections = document.querySelectorAll("section.query");
  function show(n) {{
    for (var i = 0; i < sections.length; i++) sections[i].hidden = sections[i].dataset.query !== String(n);
  }}
  picker.addEventListener("change", function () {{ show(picker.value); }});
  if (location.hash === "#selftest") {{
    window.addEventListener("load", function () {{
      var shown = 0;
      for (var i = 0; i < picker.options.length; i++) {{
        picker.value = picker.options[i].value;
        picker.dispatchEvent(new Event("change"));
        var visible = document.querySelectorAll("section.query:not([hidden])");
        if (visible.length === 1 && visible[0].dataset.query === picker.value) shown++;
      }}
      var imgs = document.images, broken = 0;
      for (var j = 0; j < imgs.length; j++) if (!imgs[j].complete || imgs[j].naturalWidth === 0) broken++;
      picker.value = picker.options[0].value; picker.dispatchEvent(new Event("change"));
      document.title = "SELFTEST " + (errors.length || broken || shown !== picker.options.length ? "FAIL" : "OK") +
        " queries=" + picker.options.length + " shown=" + shown + " images=" + imgs.length + " broken=" + broken +
        " errors=" + errors.length + (errors.length ? " " + errors.join("; ") : "");
    }});
  }}
}})();
</script>
</body></html>
"""
