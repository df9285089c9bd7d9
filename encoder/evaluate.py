"""Retrieval evaluation as in the paper: label overlap (Dice) between each query slice and the slices
it retrieves, with normal-anatomy labels for normal-code retrieval and tumour labels for
abnormal-code retrieval; hits from the query's own case are excluded.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import hashindex

from .data import SliceSet

KS = (1, 5, 10)
ANATOMY_CLASSES = (1, 2, 3, 4)
TUMOUR_CLASSES = (1, 2, 3)


def dice(a: np.ndarray, b: np.ndarray, classes) -> np.ndarray:
    """Mean Dice over the classes present in either map, for pairs of label maps (..., H, W).

    Two maps without any of the classes agree perfectly (1.0): a healthy slice retrieved for a
    healthy query is a correct tumour retrieval.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    total = np.zeros(np.broadcast_shapes(a.shape, b.shape)[:-2])
    present = np.zeros_like(total)
    for c in classes:
        in_a = (a == c).sum((-2, -1))
        in_b = (b == c).sum((-2, -1))
        both = ((a == c) & (b == c)).sum((-2, -1))
        has = (in_a + in_b) > 0
        total += np.where(has, 2.0 * both / np.maximum(in_a + in_b, 1), 0.0)
        present += has
    return np.where(present > 0, total / np.maximum(present, 1), 1.0)


def case_groups(case_ids: np.ndarray) -> np.ndarray:
    """One int64 group per case (its rank among the sorted case ids)."""
    return np.unique(case_ids, return_inverse=True)[1].astype(np.int64)


def euclidean_topk(queries: np.ndarray, database: np.ndarray, k: int, exclude_group: np.ndarray,
                   groups: np.ndarray) -> np.ndarray:
    """Exact k nearest rows by Euclidean distance, skipping the query's own group; ties by row."""
    q = queries.reshape(len(queries), -1).astype(np.float64)
    d = database.reshape(len(database), -1).astype(np.float64)
    dist = (q**2).sum(1)[:, None] - 2 * q @ d.T + (d**2).sum(1)[None]
    dist[exclude_group[:, None] == groups[None, :]] = np.inf
    return np.argsort(dist, axis=1, kind="stable")[:, :k]


@dataclass
class RetrievalTable:
    rows: dict = field(default_factory=dict)  # method -> metrics
    pseudo_normal: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"rows": self.rows, "pseudo_normal": self.pseudo_normal, "notes": self.notes}

    def format(self) -> str:
        head = ("method", *[f"anat@{k}" for k in KS], *[f"tumour@{k}" for k in KS], "|dz|@10")
        lines = ["  ".join(f"{h:>10}" if i else f"{h:<28}" for i, h in enumerate(head))]
        for method, m in self.rows.items():
            cells = [m[f"anatomy_dice@{k}"] for k in KS] + [m[f"tumour_dice@{k}"] for k in KS] + [m["level_error@10"]]
            lines.append("  ".join([f"{method:<28}"] + [f"{v:>10.3f}" for v in cells]))
        if self.pseudo_normal:
            p = self.pseudo_normal
            lines.append("")
            lines.append(f"pseudo-normal check on {p['queries']} tumour slices (normal-code retrieval, top 10):")
            lines.append(f"  anatomy Dice: tumour slice {p['anatomy_dice_tumour_query']:.3f}, "
                         f"its healthy counterpart {p['anatomy_dice_healthy_query']:.3f}")
            lines.append(f"  |slice level error|: tumour slice {p['level_error_tumour_query']:.3f}, "
                         f"its healthy counterpart {p['level_error_healthy_query']:.3f}")
            lines.append(f"  normal-code cells equal to the healthy counterpart's: {p['cells_equal_to_healthy']:.1%} "
                         f"(two random slices of the same level: {p['cells_equal_random_same_level']:.1%})")
        lines.extend(self.notes)
        return "\n".join(lines)


def _scores(slices: SliceSet, query_rows: np.ndarray, tumour_rows: np.ndarray, found: np.ndarray) -> dict:
    """found: (len(query_rows), >= 10) retrieved rows per query (-1 = none)."""
    level = slices.slice_index / np.maximum(slices.depth - 1, 1)
    out = {}
    valid = found >= 0
    safe = np.where(valid, found, 0)
    anat = dice(slices.anatomy[query_rows][:, None], slices.anatomy[safe], ANATOMY_CLASSES) if slices.anatomy is not None else None
    tum = dice(slices.seg[query_rows][:, None], slices.seg[safe], TUMOUR_CLASSES)
    is_tumour_query = np.isin(query_rows, tumour_rows)
    for k in KS:
        if anat is not None:
            out[f"anatomy_dice@{k}"] = float(np.mean(np.where(valid[:, :k], anat[:, :k], 0.0)))
        else:
            out[f"anatomy_dice@{k}"] = float("nan")
        out[f"tumour_dice@{k}"] = float(np.mean(np.where(valid[is_tumour_query, :k], tum[is_tumour_query, :k], 0.0)))
    out["level_error@10"] = float(np.mean(np.abs(level[query_rows][:, None] - level[safe[:, :10]])))
    return out


def evaluate_retrieval(slices: SliceSet, normal_bits: np.ndarray, abnormal_bits: np.ndarray, nbits: tuple[int, int],
                       latents: tuple[np.ndarray, np.ndarray] | None = None, healthy_normal_bits: np.ndarray | None = None,
                       healthy_normal_indices: np.ndarray | None = None, normal_indices: np.ndarray | None = None,
                       max_queries: int = 1000, seed: int = 0,
                       index: hashindex.MultiFieldIndex | None = None) -> RetrievalTable:
    """Mean Dice@k of every retrieval mode and baseline, on the same queries and database.

    The database is every slice; queries are up to ``max_queries`` slices (seeded sample), half
    with tumour where possible; the query's own case never counts. ``index``: the MultiFieldIndex of
    these codes with one group per case (``case_groups``), if the caller has built it already.
    """
    if slices.seg is None:
        raise ValueError("slices: evaluation needs tumour labels")
    rng = np.random.default_rng(seed)
    groups = case_groups(slices.case_ids)
    tumour_rows = np.flatnonzero(slices.abnormal == 1)
    healthy_rows = np.flatnonzero(slices.abnormal == 0)
    half = max_queries // 2
    pick = lambda rows, m: np.sort(rng.choice(rows, min(m, len(rows)), replace=False)) if len(rows) else rows  # noqa: E731
    query_rows = np.sort(np.r_[pick(tumour_rows, half), pick(healthy_rows, max_queries - min(half, len(tumour_rows)))])
    k = max(KS)
    if index is None:
        index = hashindex.MultiFieldIndex({"normal": nbits[0], "abnormal": nbits[1]})
        index.add({"normal": normal_bits, "abnormal": abnormal_bits}, groups=groups)
    elif len(index) != len(slices):
        raise ValueError(f"index: expected the {len(slices)} slices' codes, it holds {len(index)} items")
    qn, qa = normal_bits[query_rows], abnormal_bits[query_rows]
    exclude = groups[query_rows]
    table = RetrievalTable()
    modes = {
        "normal code (Hamming)": ({"normal": qn}, {"normal": 1.0}),
        "abnormal code (Hamming)": ({"abnormal": qa}, {"abnormal": 1.0}),
        "both codes (Hamming sum)": ({"normal": qn, "abnormal": qa}, {"normal": 1.0, "abnormal": 1.0}),
    }
    for name, (queries, weights) in modes.items():
        found = index.search(queries, k, weights=weights, exclude_groups=exclude).ids
        table.rows[name] = _scores(slices, query_rows, tumour_rows, found)
    if latents is not None:
        for name, z in (("normal latent (Euclidean)", latents[0]), ("abnormal latent (Euclidean)", latents[1])):
            found = euclidean_topk(z[query_rows], z, k, exclude, groups)
            table.rows[name] = _scores(slices, query_rows, tumour_rows, found)
    small = _downsample(slices.images, 16)
    table.rows["raw pixels 16x16 (Euclidean)"] = _scores(
        slices, query_rows, tumour_rows, euclidean_topk(small[query_rows], small, k, exclude, groups))
    random_found = np.stack([rng.choice(np.flatnonzero(groups != g), k, replace=False) for g in exclude])
    table.rows["random"] = _scores(slices, query_rows, tumour_rows, random_found)
    table.notes.append("(no single-code model without the decomposition is trained here, so none is compared)")

    if healthy_normal_bits is not None and slices.anatomy is not None:
        tq = query_rows[np.isin(query_rows, tumour_rows)]
        if len(tq):
            ex = groups[tq]
            own = index.search({"normal": normal_bits[tq]}, k, exclude_groups=ex).ids
            healthy = index.search({"normal": healthy_normal_bits[tq]}, k, exclude_groups=ex).ids
            s_own = _scores(slices, tq, tumour_rows, own)
            s_healthy = _scores(slices, tq, tumour_rows, healthy)
            table.pseudo_normal = {
                "queries": int(len(tq)),
                "anatomy_dice_tumour_query": s_own["anatomy_dice@10"],
                "anatomy_dice_healthy_query": s_healthy["anatomy_dice@10"],
                "level_error_tumour_query": s_own["level_error@10"],
                "level_error_healthy_query": s_healthy["level_error@10"],
            }
            if normal_indices is not None and healthy_normal_indices is not None:
                same = (normal_indices[tq] == healthy_normal_indices[tq]).mean()
                partner = _same_level_other_case(slices, tq, groups, rng)
                table.pseudo_normal["cells_equal_to_healthy"] = float(same)
                table.pseudo_normal["cells_equal_random_same_level"] = float(
                    (normal_indices[tq] == normal_indices[partner]).mean())
    return table


def _same_level_other_case(slices: SliceSet, rows: np.ndarray, groups: np.ndarray, rng) -> np.ndarray:
    level = np.round(100 * slices.slice_index / np.maximum(slices.depth - 1, 1)).astype(int)
    out = []
    for r in rows:
        cand = np.flatnonzero((groups != groups[r]) & (np.abs(level - level[r]) <= 1))
        out.append(rng.choice(cand) if len(cand) else r)
    return np.array(out)


def _downsample(images: np.ndarray, size: int) -> np.ndarray:
    n, c, h, w = images.shape
    f = h // size
    return images[:, :, : size * f, : size * f].reshape(n, c, size, f, size, f).mean((3, 5))
