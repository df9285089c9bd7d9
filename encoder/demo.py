"""``hashindex demo``: phantoms -> shipped encoder -> codes -> MultiFieldIndex -> evaluation -> report.

Everything lands in a cache folder (phantoms, slices, codes) and a report folder (HTML page, PNG
galleries, the evaluation table as JSON, the index and its item table for ``hashindex query``).
Re-running reuses the cache.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import hashindex
from hashindex._validate import int_arg

from .codes import CodeEncoder, Codes, encode_slices
from .data import PhantomConfig, SliceSet, find_cases, generate_phantoms, load_slices
from .evaluate import case_groups, evaluate_model, write_table
from .report import pick_examples, write_report

ITEMS_FILE = "items.npz"
INDEX_FILE = "index.hx"


@dataclass(frozen=True)
class DemoConfig:
    cases: int = 24
    seed: int = 0
    spacing: float = 2.0  # 2 mm volumes, seen by the base model as 128 x 128 slices (1.9 mm pixels)
    examples: int = 24  # example queries in the report (tumour and tumour-free slices, several patients)
    max_queries: int = 1000


def check_config(cfg: DemoConfig) -> None:
    """Refuses a configuration the demo cannot run, before it writes anything."""
    for name in ("cases", "examples", "max_queries"):
        int_arg(getattr(cfg, name), name, minimum=1)
    int_arg(cfg.seed, "seed", minimum=0)
    if not cfg.spacing > 0:
        raise ValueError(f"spacing: expected millimetres > 0, got {cfg.spacing!r}")


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
        slices = load_slices(root, size=size, cases=sorted(_case_names(root, cfg.cases)), progress=True,
                             workers=os.cpu_count() or 1)
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
    cache = Path(cache) if cache is not None else default_cache()
    check_config(config)
    if data is not None:
        find_cases(data)  # a folder without cases fails here, before any folder is made
    started = time.perf_counter()
    encoder = CodeEncoder.load(checkpoint)
    out.mkdir(parents=True, exist_ok=True)
    cache.mkdir(parents=True, exist_ok=True)
    if data is None:
        slices = demo_slices(cache, config, encoder.image_size, log)
    else:
        slices = load_slices(data, size=encoder.image_size, progress=True, workers=os.cpu_count() or 1)
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

    examples = pick_examples(slices, config.examples, config.seed)
    what = (f"{config.cases} glioma phantoms (seed {config.seed}, {config.spacing:g} mm)" if data is None
            else f"the cases in {Path(data).name}")
    page = write_report(out, encoder, index, slices, codes, table, examples,
                        f"hashindex demo: normal / abnormal anatomy retrieval on {what}", time.perf_counter() - started)
    log(f"report: {page}  ({time.perf_counter() - started:.1f} s in all)")
    return page
