"""Independent numpy brute force: what every index must return, computed without hashindex."""
from __future__ import annotations

import numpy as np

POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.int32)


def hamming_matrix(xq: np.ndarray, xb: np.ndarray) -> np.ndarray:
    if len(xq) == 0 or len(xb) == 0:
        return np.zeros((len(xq), len(xb)), dtype=np.int32)
    return POPCOUNT8[xq[:, None, :] ^ xb[None, :, :]].sum(-1, dtype=np.int32)


def knn(xq: np.ndarray, xb: np.ndarray, ids: np.ndarray, k: int, pad_distance: int):
    d = hamming_matrix(xq, xb)
    out_d = np.full((len(xq), k), pad_distance, dtype=np.int32)
    out_i = np.full((len(xq), k), -1, dtype=np.int64)
    for q in range(len(xq)):
        order = np.lexsort((ids, d[q]))[:k]
        out_d[q, : len(order)] = d[q, order]
        out_i[q, : len(order)] = ids[order]
    return out_d, out_i


def range_search(xq: np.ndarray, xb: np.ndarray, ids: np.ndarray, radius: int):
    d = hamming_matrix(xq, xb)
    lims, dist, out = [0], [], []
    for q in range(len(xq)):
        keep = np.flatnonzero(d[q] <= radius)
        order = keep[np.lexsort((ids[keep], d[q, keep]))]
        dist.append(d[q, order])
        out.append(ids[order])
        lims.append(lims[-1] + len(order))
    cat = lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.zeros(0, dt)  # noqa: E731
    return np.array(lims, dtype=np.int64), cat(dist, np.int32), cat(out, np.int64)


def random_codes(rng: np.random.Generator, n: int, code_size: int, *, pool: int | None = None) -> np.ndarray:
    """Uniform codes, or codes drawn from `pool` distinct rows so that ties and duplicates abound."""
    if pool is None:
        return rng.integers(0, 256, (n, code_size), dtype=np.uint8)
    base = rng.integers(0, 256, (max(pool, 1), code_size), dtype=np.uint8)
    return base[rng.integers(0, len(base), n)]


def multi_field_knn(queries: dict, database: dict, ids: np.ndarray, groups: np.ndarray, weights: dict, k: int,
                    exclude=None, one_per_group: bool = False):
    """Weighted sum of per-field distances (summed in field order, as float64), group rules, (d, id) order."""
    nq = len(next(iter(queries.values())))
    total = np.zeros((nq, len(ids)))
    for field, xb in database.items():
        w = weights.get(field, 0.0)
        if w > 0:
            total += w * hamming_matrix(queries[field], xb)
    out_d = np.full((nq, k), np.inf)
    out_i = np.full((nq, k), -1, dtype=np.int64)
    for q in range(nq):
        taken, seen = 0, set()
        for j in np.lexsort((ids, total[q])):
            g = groups[j]
            if exclude is not None and exclude[q] != -1 and g == exclude[q]:
                continue
            if one_per_group and g != -1:
                if g in seen:
                    continue
                seen.add(g)
            out_d[q, taken], out_i[q, taken] = total[q, j], ids[j]
            taken += 1
            if taken == k:
                break
    return out_d, out_i
