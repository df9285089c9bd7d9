"""The HTML page of one archive query (``hashindex archive query ... --report DIR``): the query's
slices and, beside each, the matching slice of every patient found, read again from the cases'
files (the archive stores codes, not pictures). Opens from disk: no server, no script."""
from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..report import CONTRAST_NAMES, DISPLAY_PX, MODES, _legend, _rgb, _save, display_channel, window
from .ingest import read_case

ROWS = 4  # query slices shown: the best-matched ones of the first patient


def _case_slices(folder: str | os.PathLike, name: str | None, size: int) -> Any:
    from ..data import find_cases

    found = [f for f in find_cases(folder) if name is None or f.case_id == name]
    if not found:
        raise FileNotFoundError(f"{folder}: case {name} is no longer there (the report draws from the cases' files)")
    case = read_case(found[0], size)
    if case.error is not None:
        raise ValueError(f"{folder}: {case.error}")
    return case.slices


def write_query_report(archive: Any, out: str | os.PathLike, hits: list, *, volume: Any = None,
                       case: str | None = None, z: int | None = None, mode: str = "both",
                       where: str | None = None, encoder: Any = None) -> Path:
    """Writes ``out/index.html``, ``out/img/*.png`` and ``out/hits.json``; returns the page. With the
    archive's ``encoder``, each query slice also shows the model's tumour and its pseudo-normal
    image (the anatomy without the tumour), as the demo's report does."""
    out = Path(out)
    size = archive.meta["encoder"]["image_size"]
    sources = {c["name"]: c["source"] for c in archive.cases()}
    query = _case_slices(volume, None, size) if volume is not None else _case_slices(sources[case], case, size)
    query_name = str(query.case_ids[0])
    rows = [m.query_z for m in hits[0].slices[:ROWS]] if hits else ([z] if z is not None else [])
    rows = sorted(set(rows))
    at = np.array([int(np.flatnonzero(query.slice_index == qz)[0]) for qz in rows], np.int64)
    model = None
    if encoder is not None and len(at):
        model = (encoder.segment(query.images[at], present=query.contrasts[at]),
                 encoder.pseudo_normal(query.images[at], present=query.contrasts[at]))
    loaded: dict[str, Any] = {}
    table = []
    for n, (qz, r) in enumerate(zip(rows, at)):
        show = display_channel(query, r)
        win = window(query.images[r, show])
        cells = [(f"query: {html.escape(query_name)}, slice {qz}",
                  _save(out / "img" / f"q{qz}.png", _rgb(query.images[r, show], win,
                                                        None if query.seg is None else query.seg[r])))]
        if model is not None:
            cells.append(("the model's tumour", _save(out / "img" / f"q{qz}_pred.png",
                                                      _rgb(query.images[r, show], win, model[0][n]))))
            pseudo = np.where(query.images[r, show] != 0, model[1][n, show], 0.0)
            cells.append(("pseudo-normal (no tumour)", _save(out / "img" / f"q{qz}_pseudo.png", _rgb(pseudo, win))))
        for rank, hit in enumerate(hits, start=1):
            match = next((m for m in hit.slices if m.query_z == qz), None)
            if match is None:
                cells.append((f"{rank}. {html.escape(hit.case)}: no slice at this level", None))
                continue
            if hit.case not in loaded:
                loaded[hit.case] = _case_slices(sources[hit.case], hit.case, size)
            s = loaded[hit.case]
            h = int(np.flatnonzero(s.slice_index == match.z)[0])
            hc = display_channel(s, h)
            img = _save(out / "img" / f"q{qz}_{rank}.png",
                        _rgb(s.images[h, hc], window(s.images[h, hc]), None if s.seg is None else s.seg[h]))
            cells.append((f"{rank}. {html.escape(hit.case)}, slice {match.z}<br>distance {match.distance:g}", img))
        table.append(cells)
    (out / "hits.json").parent.mkdir(parents=True, exist_ok=True)
    (out / "hits.json").write_text(json.dumps([h.as_dict() for h in hits], indent=1))
    heading, sentence = MODES.get(mode, (mode, ""))
    ranking = "".join(f"<tr><td>{n}. {html.escape(h.case)}</td><td>{h.score:.2f}</td><td>{h.matched}</td></tr>"
                      for n, h in enumerate(hits, start=1))
    body = "".join(
        '<div class="row">' + "".join(
            f'<figure><img src="{src}" alt=""><figcaption>{cap}</figcaption></figure>' if src else
            f'<figure class="absent"><div></div><figcaption>{cap}</figcaption></figure>' for cap, src in cells)
        + "</div>" for cells in table)
    page = _PAGE.format(title=html.escape(f"Archive query: {query_name} ({heading.lower()})"), sentence=sentence,
                        where=html.escape(where or "none"), archive=html.escape(str(archive.path)),
                        ranking=ranking, body=body, legend=_legend(), px=DISPLAY_PX,
                        shown=html.escape(CONTRAST_NAMES["flair"]))
    path = out / "index.html"
    path.write_text(page)
    return path


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body{{font-family:sans-serif;max-width:1320px;margin:auto;padding:0 12px;color:#222}}
.row{{display:flex;flex-wrap:wrap;gap:8px;margin-bottom:12px}} figure{{margin:0;width:{px}px;font-size:11px}}
figure img{{width:{px}px;height:{px}px;background:#000;display:block}}
figure.absent div{{width:{px}px;height:{px}px;background:#333}}
.swatch{{display:inline-block;width:12px;height:12px;margin:0 4px 0 10px;vertical-align:middle}}
td,th{{padding:2px 8px;text-align:right}} td:first-child,th:first-child{{text-align:left}}
</style></head><body>
<h1>{title}</h1>
<p>{sentence}</p>
<p>Archive <code>{archive}</code>; metadata filter: <code>{where}</code>. Patients are ranked by the mean, over the
query slices, of the distance of their best slice at the same level (<a href="hits.json">hits.json</a>).</p>
<table><tr><th>patient</th><th>score</th><th>query slices matched</th></tr>{ranking}</table>
{legend}
<p>Each row: a query slice ({shown} where the scan has it; with the model's tumour and pseudo-normal image when
the page was drawn with the model), then every patient's best slice at its level.</p>
{body}
</body></html>
"""
