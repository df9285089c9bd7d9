"""``hashindex query``: one slice of a user's case against an index written by ``hashindex demo``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

import hashindex
from hashindex._validate import int_arg, k_arg

from .codes import CodeEncoder
from .demo import ITEMS_FILE


def query(index_path: str | os.PathLike, case: str | os.PathLike, slice_index: int | None = None, mode: str = "both",
          k: int = 5, checkpoint: str | os.PathLike | None = None, include_own_case: bool = False, layout=None,
          per_patient: int = 1, log: Callable[[str], None] | None = None) -> list[dict]:
    """Searches a saved demo index with one axial slice of a user's case (any layout the loader knows).
    When the index holds the same case (by case id), its slices are left out unless ``include_own_case``.
    ``slice_index``: default the case's largest tumour section where it has labels, else its middle
    slice. ``per_patient``: at most this many hits from one patient (case), as the report shows them
    (1, the default); 0 for no limit. ``log`` hears which slice was chosen when none was given."""
    from .data import default_slice, load_case, slice_case

    weights = {"normal": {"normal": 1.0}, "abnormal": {"abnormal": 1.0}, "both": {"normal": 1.0, "abnormal": 1.0}}
    if mode not in weights:
        raise ValueError(f"mode: expected one of {sorted(weights)}, got {mode!r}")
    k = k_arg(k)
    per_patient = int_arg(per_patient, "per_patient", minimum=0)
    index = hashindex.load(index_path)
    if not isinstance(index, hashindex.MultiFieldIndex) or set(index.fields) != {"normal", "abnormal"}:
        raise ValueError(f"{index_path}: expected the MultiFieldIndex written by `hashindex demo`")
    items_path = Path(index_path).with_name(ITEMS_FILE)
    items = np.load(items_path) if items_path.exists() else None
    encoder = CodeEncoder.load(checkpoint)
    loaded = load_case(case, layout=layout)
    slices = slice_case(loaded, size=encoder.image_size, drop_empty=False)
    if slice_index is None:
        slice_index = default_slice(loaded)
        if log is not None:
            log(f"query: slice {slice_index} of {loaded.case_id} (its largest tumour section, or the middle one "
                "without labels)")
    if isinstance(slice_index, bool) or not isinstance(slice_index, (int, np.integer)) or not 0 <= slice_index < len(slices):
        raise ValueError(f"slice_index: expected 0 <= index < {len(slices)} (this case has {len(slices)} axial "
                         f"slices), got {slice_index!r}")
    codes = encoder.encode(slices.images[[slice_index]], present=slices.contrasts[[slice_index]])
    exclude = None
    if not include_own_case and items is not None:
        own = np.flatnonzero(items["case_ids"] == loaded.case_id)
        if len(own):
            exclude = index.groups(items["ids"][own[:1]])
    queries = {"normal": codes.normal_bits, "abnormal": codes.abnormal_bits}
    ids, distances = _search_per_patient(index, queries, k, weights[mode], exclude, per_patient)
    hits = []
    for hit, dist in zip(ids, distances):
        entry = {"id": int(hit), "distance": float(dist)}
        if items is not None:
            entry.update(case=str(items["case_ids"][hit]), slice=int(items["slice_index"][hit]),
                         abnormal=int(items["abnormal"][hit]))
        hits.append(entry)
    return hits


def _search_per_patient(index: hashindex.MultiFieldIndex, queries: dict, k: int, weights: dict, exclude,
                        per_patient: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best hits with at most ``per_patient`` from one group, exactly: one per group is the
    index's own rule; more is read off a growing prefix of the plain ranking, which holds the capped
    top k as soon as it yields k hits (or is the whole index)."""
    if per_patient <= 1:
        res = index.search(queries, k, weights=weights, exclude_groups=exclude, one_per_group=per_patient == 1)
        keep = res.ids[0] >= 0
        return res.ids[0][keep], res.distances[0][keep]
    fetch = k * per_patient
    while True:
        res = index.search(queries, fetch, weights=weights, exclude_groups=exclude)
        ids, distances = res.ids[0], res.distances[0]
        ids, distances = ids[ids >= 0], distances[ids >= 0]
        groups = index.groups(ids)
        rank_in_group = np.zeros(len(ids), dtype=np.int64)
        for g in np.unique(groups):
            rows = np.flatnonzero(groups == g)
            rank_in_group[rows] = np.arange(len(rows))
        keep = np.flatnonzero(rank_in_group < per_patient)[:k]
        if len(keep) == k or fetch >= len(index):
            return ids[keep], distances[keep]
        fetch = min(4 * fetch, len(index))
