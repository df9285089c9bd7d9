"""``hashindex query``: one slice of a user's case against an index written by ``hashindex demo``."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

import hashindex

from .codes import CodeEncoder
from .demo import ITEMS_FILE


def query(index_path: str | os.PathLike, case: str | os.PathLike, slice_index: int, mode: str = "both", k: int = 5,
          checkpoint: str | os.PathLike | None = None, include_own_case: bool = False, layout=None) -> list[dict]:
    """Searches a saved demo index with one axial slice of a user's case (any layout the loader knows).
    When the index holds the same case (by case id), its slices are left out unless ``include_own_case``."""
    from .data import load_case, slice_case

    index = hashindex.load(index_path)
    if not isinstance(index, hashindex.MultiFieldIndex) or set(index.fields) != {"normal", "abnormal"}:
        raise ValueError(f"{index_path}: expected the MultiFieldIndex written by `hashindex demo`")
    items_path = Path(index_path).with_name(ITEMS_FILE)
    items = np.load(items_path) if items_path.exists() else None
    encoder = CodeEncoder.load(checkpoint)
    loaded = load_case(case, layout=layout)
    slices = slice_case(loaded, size=encoder.image_size, drop_empty=False)
    if not 0 <= slice_index < len(slices):
        raise ValueError(f"slice_index: expected 0 <= index < {len(slices)}, got {slice_index}")
    codes = encoder.encode(slices.images[[slice_index]], present=slices.contrasts[[slice_index]])
    weights = {"normal": {"normal": 1.0}, "abnormal": {"abnormal": 1.0}, "both": {"normal": 1.0, "abnormal": 1.0}}
    if mode not in weights:
        raise ValueError(f"mode: expected one of {sorted(weights)}, got {mode!r}")
    exclude = None
    if not include_own_case and items is not None:
        own = np.flatnonzero(items["case_ids"] == loaded.case_id)
        if len(own):
            exclude = index.groups(items["ids"][own[:1]])
    res = index.search({"normal": codes.normal_bits, "abnormal": codes.abnormal_bits}, k, weights=weights[mode],
                       exclude_groups=exclude)
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
