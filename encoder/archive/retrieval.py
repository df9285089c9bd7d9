"""Patient-level retrieval: other patients ranked by how well their slices at corresponding levels
match a query's slices.

A patient's score is the mean, over the query slices, of the weighted Hamming distance of the
patient's best slice at the query slice's level (levels cut the brain's axial extent into ``levels``
bands; a slice corresponds when its band is within ``window`` bands of the query's). A query slice
the patient has no corresponding slice for counts as the largest distance; a patient with none at
all is not a match. The ranking is exact: each band's queries first fetch their best ``kp``
patients (one hit per group, inside the index's scan); a patient outside those lists scores at
least the mean, over the query slices, of the list's last distance where it has a slice at that
level and of the largest distance where it has none, so once the k-th best candidate scores below
every such bound the top k is proven, else ``kp`` grows.
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
    columns = snapshot.columns
    nq = len(query_levels)
    if nq == 0 or len(columns) == 0:
        return []
    fields = snapshot.index.fields
    worst = float(sum(w * fields[f] for f, w in weights.items()))
    keep = np.ones(len(columns), bool) if allow is None else np.asarray(allow, bool).copy()
    if exclude_case is not None:
        keep &= columns["case"] != exclude_case
    slice_band = columns.bands(levels)
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
            distances, ids = _search(snapshot, queries, rows, weights, take, mask)
            found = ids >= 0
            candidates.update(np.unique(columns["case"][columns.rows(ids[found])]).tolist())
            if take < len(patients):  # patients beyond the lists: at least their last distance
                bound[rows] = distances[:, take - 1]
                complete = False
        cand = np.array(sorted(candidates), np.int64)
        best, best_id = _best_slices(snapshot, queries, by_band, cand, weights, worst, nq, ncases)
        matched = (best_id >= 0).sum(axis=1)
        score = best.mean(axis=1)
        order = [c for c in np.lexsort((cand, score)) if matched[c]]
        if complete or (len(order) >= k and score[order[k - 1]] < _lowest_outside(by_band, bound, worst, cand,
                                                                                   ncases, nq)):
            return _hits(snapshot, order[:k], cand, score, matched, best, best_id, query_z)
        kp *= 4


def _lowest_outside(by_band: dict, bound: np.ndarray, worst: float, candidates: np.ndarray, ncases: int,
                    nq: int) -> float:
    """The lowest score a patient outside the candidates can have: per query slice its list's last
    distance where the patient has a slice at that level, else the largest distance; patients with
    no slice at any query level are no match and do not count."""
    total = np.full(ncases, worst * nq)
    present = np.zeros(ncases, bool)
    for _, patients, rows in by_band.values():
        total[patients] -= (worst - bound[rows]).sum()
        present[patients] = True
    present[candidates] = False
    return float(total[present].min() / nq) if present.any() else np.inf


def _search(snapshot: Any, queries: dict[str, np.ndarray], rows: np.ndarray, weights: dict[str, float], k: int,
            mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The k best (distance, id) of these query rows, one per patient, among the slices ``mask``
    lets through: each band of the index searched with its share of them, the lists merged."""
    columns = snapshot.columns
    sub = {f: q[rows] for f, q in queries.items() if weights.get(f, 0)}
    allowed = []
    for band_rows in columns.rows_of_band:
        keep = band_rows[mask[band_rows]]
        allowed.append(columns["id"][keep] if len(keep) else None)
    distances, ids = snapshot.index.search(sub, k, weights, allowed)
    if distances.shape[1] == k and sum(a is not None for a in allowed) <= 1:
        return distances, ids
    return _merge_per_patient(distances, ids, columns, k)


def _merge_per_patient(distances: np.ndarray, ids: np.ndarray, columns: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best (distance, id) per patient, the k best of them, by (distance, id) as one
    index ranks them; padded with inf and -1."""
    out_d, out_i = np.full((len(ids), k), np.inf), np.full((len(ids), k), -1, np.int64)
    for r in range(len(ids)):
        ok = ids[r] >= 0
        d, i = distances[r][ok], ids[r][ok]
        order = np.lexsort((i, d))
        d, i = d[order], i[order]
        _, first = np.unique(columns["case"][columns.rows(i)], return_index=True)
        first = np.sort(first)[:k]
        out_d[r, :len(first)], out_i[r, :len(first)] = d[first], i[first]
    return out_d, out_i


def _best_slices(snapshot: Any, queries: dict[str, np.ndarray], by_band: dict, candidates: np.ndarray,
                 weights: dict[str, float], worst: float, nq: int, ncases: int) -> tuple[np.ndarray, np.ndarray]:
    """(candidate, query slice) -> the distance and id of the candidate's best corresponding slice
    (``worst`` and -1 where it has none): one search per band over the candidates' slices only."""
    best = np.full((len(candidates), nq), worst)
    best_id = np.full((len(candidates), nq), -1, np.int64)
    if not len(candidates):
        return best, best_id
    columns = snapshot.columns
    is_candidate = np.zeros(ncases, bool)
    is_candidate[candidates] = True
    for mask, patients, rows in by_band.values():
        mine = mask & is_candidate[columns["case"]]
        present = int(is_candidate[patients].sum())
        if not present:
            continue
        distances, ids = _search(snapshot, queries, rows, weights, present, mine)
        q, j = np.nonzero(ids >= 0)
        at = np.searchsorted(candidates, columns["case"][columns.rows(ids[q, j])])
        best[at, rows[q]], best_id[at, rows[q]] = distances[q, j], ids[q, j]
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
