"""Patient-level retrieval: other patients ranked by how well their slices at corresponding levels
match a query's slices.

A patient's score is the mean, over the query slices, of the weighted Hamming distance of the
patient's best slice at the query slice's level (levels cut the brain's axial extent into ``levels``
bands; a slice corresponds when its band is within ``window`` bands of the query's). A query slice
the patient has no corresponding slice for counts as the largest distance; a patient with none at
all is not a match. The ranking is exact: each band's queries first fetch their best ``kp``
patients (one hit per group, inside the index's scan); every patient outside those lists scores at
least the mean of the lists' last distances, so once the k-th best candidate scores below that
bound the top k is proven, else ``kp`` grows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

MODES = {"normal": {"normal": 1.0}, "abnormal": {"abnormal": 1.0}, "both": {"normal": 1.0, "abnormal": 1.0},
         "synthetic": {"normal": 1.0, "abnormal": 1.0}}


@dataclass
class SliceMatch:
    query_z: int  # the query slice's axial index
    id: int  # the matching slice's index id
    z: int
    distance: float


@dataclass
class PatientHit:
    case: str
    score: float  # mean over the query slices (lower is closer)
    matched: int  # query slices this patient has a corresponding slice for
    slices: list[SliceMatch] = field(default_factory=list)  # its best slice per query slice, best first

    def as_dict(self) -> dict[str, Any]:
        return {"case": self.case, "score": self.score, "matched": self.matched,
                "slices": [m.__dict__ for m in self.slices]}


def bands(levels: np.ndarray, count: int) -> np.ndarray:
    if count <= 0:
        return np.zeros(len(levels), np.int64)
    return np.clip(np.floor(np.asarray(levels, np.float64) * count), 0, count - 1).astype(np.int64)


def rank_patients(snapshot: Any, queries: dict[str, np.ndarray], query_levels: np.ndarray, query_z: np.ndarray,
                  weights: dict[str, float], k: int, *, allow: np.ndarray | None = None,
                  exclude_case: int | None = None, levels: int = 10, window: int = 1,
                  fetch: int | None = None) -> list[PatientHit]:
    """The k best patients (see the module docstring) for ``queries`` (field -> (nq, code_size) uint8)
    at ``query_levels``; ``allow``: a boolean mask over the snapshot's slice columns (a where filter);
    ``exclude_case``: a case id (group) left out, the query's own; ``fetch``: patients fetched per
    query slice at first (default max(4k, 32); the answer is the same, only the work differs)."""
    columns, index = snapshot.columns, snapshot.index
    nq = len(query_levels)
    if nq == 0 or len(columns) == 0:
        return []
    fields = index.fields
    worst = float(sum(w * fields[f] for f, w in weights.items()))
    keep = np.ones(len(columns), bool) if allow is None else np.asarray(allow, bool).copy()
    if exclude_case is not None:
        keep &= columns["case"] != exclude_case
    slice_band = columns.bands(levels) if hasattr(columns, "bands") else bands(columns["level"], levels)
    query_band = bands(query_levels, levels)
    case_of = np.asarray(columns["case"])
    ncases = int(case_of.max()) + 1
    by_band = {}
    for b in np.unique(query_band):
        mask = keep & (np.abs(slice_band - b) <= window) if levels > 0 else keep
        patients = np.flatnonzero(np.bincount(case_of[mask], minlength=ncases))  # O(n), unlike np.unique
        by_band[int(b)] = (mask, patients, np.flatnonzero(query_band == b))
    kp = max(4 * k, 32) if fetch is None else max(1, fetch)
    while True:
        bound = np.full(nq, worst)
        candidates: set[int] = set()
        complete = True
        for mask, patients, rows in by_band.values():
            if not len(patients):
                continue
            take = min(kp, len(patients))
            res = _search(index, queries, rows, weights, take, columns["id"][mask])
            found = res.ids >= 0
            candidates.update(np.unique(index.groups(res.ids[found])).tolist())
            if take < len(patients):  # patients beyond the lists: at least their last distance
                bound[rows] = res.distances[:, take - 1]
                complete = False
        cand = np.array(sorted(candidates), np.int64)
        best, best_id = _best_slices(index, queries, columns, by_band, cand, weights, worst, nq, ncases)
        matched = (best_id >= 0).sum(axis=1)
        score = best.mean(axis=1)
        order = [c for c in np.lexsort((cand, score)) if matched[c]]
        if complete or (len(order) >= k and score[order[k - 1]] < bound.mean()):
            return _hits(snapshot, order[:k], cand, score, matched, best, best_id, query_z)
        kp *= 4


def _search(index: Any, queries: dict[str, np.ndarray], rows: np.ndarray, weights: dict[str, float], k: int,
            allow_ids: np.ndarray) -> Any:
    sub = {f: q[rows] for f, q in queries.items() if weights.get(f, 0)}
    return index.search(sub, k, weights=weights, one_per_group=True, allow=allow_ids)


def _best_slices(index: Any, queries: dict[str, np.ndarray], columns: np.ndarray, by_band: dict,
                 candidates: np.ndarray, weights: dict[str, float], worst: float, nq: int,
                 ncases: int) -> tuple[np.ndarray, np.ndarray]:
    """(candidate, query slice) -> the distance and id of the candidate's best corresponding slice
    (``worst`` and -1 where it has none): one search per band over the candidates' slices only."""
    best = np.full((len(candidates), nq), worst)
    best_id = np.full((len(candidates), nq), -1, np.int64)
    if not len(candidates):
        return best, best_id
    is_candidate = np.zeros(ncases, bool)
    is_candidate[candidates] = True
    for mask, patients, rows in by_band.values():
        mine = mask & is_candidate[columns["case"]]
        present = int(is_candidate[patients].sum())
        if not present:
            continue
        res = _search(index, queries, rows, weights, present, columns["id"][mine])
        q, j = np.nonzero(res.ids >= 0)
        at = np.searchsorted(candidates, index.groups(res.ids[q, j]))
        best[at, rows[q]], best_id[at, rows[q]] = res.distances[q, j], res.ids[q, j]
    return best, best_id


def _hits(snapshot: Any, top: list, candidates: np.ndarray, score: np.ndarray, matched: np.ndarray,
          best: np.ndarray, best_id: np.ndarray, query_z: np.ndarray) -> list[PatientHit]:
    columns, out = snapshot.columns, []
    names = snapshot.cases.names[snapshot.cases.rows_of(candidates[top])] if top else []
    for c, name in zip(top, names):
        ok = np.flatnonzero(best_id[c] >= 0)
        ok = ok[np.argsort(best[c, ok], kind="stable")]
        z = columns["z"][np.searchsorted(columns["id"], best_id[c, ok])]
        out.append(PatientHit(str(name), float(score[c]), int(matched[c]),
                              [SliceMatch(int(query_z[q]), int(best_id[c, q]), int(zz), float(best[c, q]))
                               for q, zz in zip(ok, z)]))
    return out
