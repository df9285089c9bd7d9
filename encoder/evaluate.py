"""Retrieval evaluation as in the paper: label overlap (Dice) between each query slice and the slices
it retrieves, with normal-anatomy labels for normal-code retrieval and tumour labels for
abnormal-code retrieval; hits from the query's own case are excluded.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

import hashindex

from .data import SliceSet, load_slices

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


class ClassMasks:
    """Each slice's pixels of each class as packed bits, so that the Dice of many (query, hit) pairs
    is an AND and a popcount per 64 pixels instead of comparisons of whole label maps. Gives
    ``dice``'s values exactly (the same integer counts)."""

    def __init__(self, labels: np.ndarray, classes):
        flat = np.asarray(labels).reshape(len(labels), -1)
        words = -(-flat.shape[1] // 64)
        self.masks = np.zeros((len(flat), len(classes), words * 8), dtype=np.uint8)
        for j, c in enumerate(classes):
            self.masks[:, j, : -(-flat.shape[1] // 8)] = np.packbits(flat == c, axis=1)
        self.masks = self.masks.view(np.uint64)
        self.counts = _popcount(self.masks).sum(-1)  # (N, C) pixels of each class

    def dice(self, rows_a: np.ndarray, rows_b: np.ndarray, chunk: int = 64) -> np.ndarray:
        """``dice(labels[rows_a], labels[rows_b], classes)`` for broadcastable row arrays whose
        first axis is the query (e.g. (Q, 1) against (Q, K)), ``chunk`` queries at a time."""
        rows_a, rows_b = np.broadcast_arrays(np.asarray(rows_a), np.asarray(rows_b))
        out = np.empty(rows_a.shape)
        for i in range(0, len(rows_a), chunk):
            a, b = rows_a[i:i + chunk], rows_b[i:i + chunk]
            both = _popcount(self.masks[a] & self.masks[b]).sum(-1)
            total = self.counts[a] + self.counts[b]
            has = total > 0
            per_class = np.where(has, 2.0 * both / np.maximum(total, 1), 0.0)
            present = has.sum(-1)
            out[i:i + chunk] = np.where(present > 0, per_class.sum(-1) / np.maximum(present, 1), 1.0)
        return out


_BYTE_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount(words: np.ndarray) -> np.ndarray:
    """Set bits per uint64 word (numpy >= 2 has it built in; older numpy counts bytes by table)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    return _BYTE_POPCOUNT[words.view(np.uint8)].reshape(words.shape + (8,)).sum(-1, dtype=np.uint8)


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


def segmentation_scores(pred: np.ndarray, true: np.ndarray, case_ids: np.ndarray) -> dict:
    """BraTS regions' Dice of predicted against true tumour labels, per case over all its slices
    (as BraTS scores volumes), then the mean over cases: ``whole`` (any tumour label), ``core``
    (necrotic/non-enhancing + enhancing) and ``enhancing``. A case without the region in either map
    is left out of that region's mean."""
    regions = {"whole": lambda s: s > 0, "core": lambda s: (s == 1) | (s == 3), "enhancing": lambda s: s == 3}
    per_case: dict = {}
    for case in np.unique(case_ids):
        rows = case_ids == case
        scores = {}
        for name, region in regions.items():
            p, t = region(pred[rows]), region(true[rows])
            total = int(p.sum() + t.sum())
            if total:
                scores[name] = 2.0 * float((p & t).sum()) / total
        per_case[str(case)] = scores
    out: dict = {}
    for name in regions:
        values = [v[name] for v in per_case.values() if name in v]
        out[name] = float(np.mean(values)) if values else float("nan")
    out["cases"] = per_case
    return out


def tumour_box(seg: np.ndarray, margin: int = 2) -> tuple[slice, slice] | None:
    """The bounding box of the tumour labels of one slice, ``margin`` pixels wider on every side."""
    ys, xs = np.nonzero(seg > 0)
    if not len(ys):
        return None
    h, w = seg.shape
    return (slice(max(ys.min() - margin, 0), min(ys.max() + margin + 1, h)),
            slice(max(xs.min() - margin, 0), min(xs.max() + margin + 1, w)))


def pseudo_normal_scores(pseudo: np.ndarray, healthy: np.ndarray, seg: np.ndarray, contrasts: np.ndarray,
                         reference: np.ndarray | None = None) -> dict:
    """The pseudo-normal images of tumour slices against their true healthy counterparts (phantoms):
    MSE and SSIM (11x11 Gaussian window, as the training loss) inside each slice's tumour bounding
    box, and MSE outside it, over the contrasts the slice has; means over slices. ``reference``: the
    model's reconstruction of the healthy counterparts themselves, scored the same way (keys
    ``*_reference``): what the decoder reaches when it sees the healthy image, the ceiling for a
    pseudo-normal image that has to imagine it."""
    out = _image_scores(pseudo, healthy, seg, contrasts)
    if reference is not None and out:
        out.update({f"{k}_reference": v for k, v in _image_scores(reference, healthy, seg, contrasts).items()
                    if k != "slices"})
    return out


def _image_scores(pseudo: np.ndarray, healthy: np.ndarray, seg: np.ndarray, contrasts: np.ndarray) -> dict:
    import torch

    from .losses import ssim_map

    mse_in, ssim_in, mse_out = [], [], []
    boxes = [tumour_box(s) for s in seg]
    rows = [i for i, box in enumerate(boxes) if box is not None]
    # SSIM of a chunk of slices at once, every contrast (each is filtered alone); those a slice lacks
    # are dropped below.
    chunk, maps = 32, {}
    for at in range(0, len(rows), chunk):
        part = rows[at:at + chunk]
        ssim = ssim_map(torch.from_numpy(np.ascontiguousarray(pseudo[part], dtype=np.float32)),
                        torch.from_numpy(np.ascontiguousarray(healthy[part], dtype=np.float32)), per_channel=True).numpy()
        maps.update(zip(part, ssim))
    for i in rows:
        c = contrasts[i]
        p, h, ssim = pseudo[i][c], healthy[i][c], maps[i][c]
        inside = np.zeros(seg[i].shape, dtype=bool)
        inside[boxes[i]] = True
        brain = (h != 0).any(0)
        mse_in.append(float(((p - h) ** 2)[:, inside].mean()))
        ssim_in.append(float(ssim[:, inside].mean()))
        if (brain & ~inside).any():
            mse_out.append(float(((p - h) ** 2)[:, brain & ~inside].mean()))
    if not mse_in:
        return {}
    return {"slices": len(mse_in), "mse_in_tumour": float(np.mean(mse_in)), "ssim_in_tumour": float(np.mean(ssim_in)),
            "mse_outside_tumour": float(np.mean(mse_out)) if mse_out else float("nan")}


@dataclass
class RetrievalTable:
    rows: dict = field(default_factory=dict)  # method -> metrics
    pseudo_normal: dict = field(default_factory=dict)
    segmentation: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    seconds: dict = field(default_factory=dict)  # wall time of each part of the evaluation

    def to_dict(self) -> dict:
        out = {"rows": self.rows, "pseudo_normal": self.pseudo_normal, "notes": self.notes, "seconds": self.seconds}
        if self.segmentation:
            out["segmentation"] = self.segmentation
        return out

    def format(self) -> str:
        head = ("method", *[f"anat@{k}" for k in KS], *[f"tumour@{k}" for k in KS], "|dz|@10")
        lines = ["  ".join(f"{h:>10}" if i else f"{h:<28}" for i, h in enumerate(head))]
        for method, m in self.rows.items():
            cells = [m[f"anatomy_dice@{k}"] for k in KS] + [m[f"tumour_dice@{k}"] for k in KS] + [m["level_error@10"]]
            lines.append("  ".join([f"{method:<28}"] + [f"{v:>10.3f}" for v in cells]))
        if "queries" in self.pseudo_normal:
            p = self.pseudo_normal
            lines.append("")
            lines.append(f"pseudo-normal check on {p['queries']} tumour slices (normal-code retrieval, top 10):")
            lines.append(f"  anatomy Dice: tumour slice {p['anatomy_dice_tumour_query']:.3f}, "
                         f"its healthy counterpart {p['anatomy_dice_healthy_query']:.3f}")
            lines.append(f"  |slice level error|: tumour slice {p['level_error_tumour_query']:.3f}, "
                         f"its healthy counterpart {p['level_error_healthy_query']:.3f}")
            lines.append(f"  normal-code cells equal to the healthy counterpart's: {p['cells_equal_to_healthy']:.1%} "
                         f"(two random slices of the same level: {p['cells_equal_random_same_level']:.1%})")
        if self.segmentation:
            g = self.segmentation
            lines.append("")
            lines.append(f"segmentation Dice (per case, mean of {len(g['cases'])} cases): whole {g['whole']:.3f}, "
                         f"core {g['core']:.3f}, enhancing {g['enhancing']:.3f}")
        if "mse_in_tumour" in self.pseudo_normal:
            p = self.pseudo_normal
            lines.append(f"pseudo-normal vs true healthy counterpart, {p['slices']} tumour slices: inside the tumour "
                         f"box MSE {p['mse_in_tumour']:.3f}, SSIM {p['ssim_in_tumour']:.3f}; outside it MSE "
                         f"{p['mse_outside_tumour']:.3f}")
            if "ssim_in_tumour_reference" in p:
                lines.append(f"  the model's reconstruction of the healthy counterpart itself, same boxes: MSE "
                             f"{p['mse_in_tumour_reference']:.3f}, SSIM {p['ssim_in_tumour_reference']:.3f}")
        lines.extend(self.notes)
        if self.seconds:
            lines.append("evaluation time: " + ", ".join(f"{part} {t:.1f} s" for part, t in self.seconds.items()))
        return "\n".join(lines)


class _Scorer:
    """Mean Dice@k and level error of retrieved rows, with the slices' label masks packed once."""

    def __init__(self, slices: SliceSet, tumour_rows: np.ndarray):
        self.level = slices.slice_index / np.maximum(slices.depth - 1, 1)
        self.tumour_rows = tumour_rows
        self.anatomy = ClassMasks(slices.anatomy, ANATOMY_CLASSES) if slices.anatomy is not None else None
        self.tumour = ClassMasks(slices.seg, TUMOUR_CLASSES)

    def __call__(self, query_rows: np.ndarray, found: np.ndarray) -> dict:
        """found: (len(query_rows), >= 10) retrieved rows per query (-1 = none)."""
        out = {}
        valid = found >= 0
        safe = np.where(valid, found, 0)
        anat = self.anatomy.dice(query_rows[:, None], safe) if self.anatomy is not None else None
        tum = self.tumour.dice(query_rows[:, None], safe)
        is_tumour_query = np.isin(query_rows, self.tumour_rows)
        for k in KS:
            if anat is not None:
                out[f"anatomy_dice@{k}"] = float(np.mean(np.where(valid[:, :k], anat[:, :k], 0.0)))
            else:
                out[f"anatomy_dice@{k}"] = float("nan")
            out[f"tumour_dice@{k}"] = float(np.mean(np.where(valid[is_tumour_query, :k], tum[is_tumour_query, :k], 0.0)))
        out["level_error@10"] = float(np.mean(np.abs(self.level[query_rows][:, None] - self.level[safe[:, :10]])))
        return out


def evaluate_retrieval(slices: SliceSet, normal_bits: np.ndarray, abnormal_bits: np.ndarray, nbits: tuple[int, int],
                       latents: tuple[np.ndarray, np.ndarray] | None = None, healthy_normal_bits: np.ndarray | None = None,
                       healthy_normal_indices: np.ndarray | None = None, normal_indices: np.ndarray | None = None,
                       max_queries: int = 1000, seed: int = 0,
                       index: hashindex.MultiFieldIndex | None = None,
                       query_cases=None) -> RetrievalTable:
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
    if query_cases is not None:  # e.g. cases held out from training, searched against every case
        askable = np.isin(slices.case_ids, list(query_cases))
        if not askable.any():
            raise ValueError(f"query_cases: none of {list(query_cases)} is in the slices")
        tumour_rows, healthy_rows = tumour_rows[askable[tumour_rows]], healthy_rows[askable[healthy_rows]]
    half = max_queries // 2
    pick = lambda rows, m: np.sort(rng.choice(rows, min(m, len(rows)), replace=False)) if len(rows) else rows  # noqa: E731
    query_rows = np.sort(np.r_[pick(tumour_rows, half), pick(healthy_rows, max_queries - min(half, len(tumour_rows)))])
    k = max(KS)
    score = _Scorer(slices, tumour_rows)
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
        table.rows[name] = score(query_rows, found)
    if latents is not None:
        for name, z in (("normal latent (Euclidean)", latents[0]), ("abnormal latent (Euclidean)", latents[1])):
            found = euclidean_topk(z[query_rows], z, k, exclude, groups)
            table.rows[name] = score(query_rows, found)
    small = _downsample(slices.images, 16)
    table.rows["raw pixels 16x16 (Euclidean)"] = score(
        query_rows, euclidean_topk(small[query_rows], small, k, exclude, groups))
    random_found = np.stack([rng.choice(np.flatnonzero(groups != g), k, replace=False) for g in exclude])
    table.rows["random"] = score(query_rows, random_found)
    table.notes.append("(no single-code model without the decomposition is trained here, so none is compared)")

    if healthy_normal_bits is not None and slices.anatomy is not None:
        tq = query_rows[np.isin(query_rows, tumour_rows)]
        if len(tq):
            ex = groups[tq]
            own = index.search({"normal": normal_bits[tq]}, k, exclude_groups=ex).ids
            healthy = index.search({"normal": healthy_normal_bits[tq]}, k, exclude_groups=ex).ids
            s_own = score(tq, own)
            s_healthy = score(tq, healthy)
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


def evaluate_model(encoder, slices: SliceSet, codes, healthy=None, max_queries: int = 1000, seed: int = 0,
                   index: hashindex.MultiFieldIndex | None = None, query_cases=None) -> RetrievalTable:
    """Everything measured of a model on slices it has encoded (``codes``, and ``healthy``: the
    codes of the phantoms' counterparts): the retrieval rows, the segmentation Dice where labels
    exist and, for phantoms, the pseudo-normal images against the true counterparts. The decoders
    read the codes already computed: no slice goes through the encoder again. ``table.seconds``
    says what each part took."""
    start = time.perf_counter()
    table = evaluate_retrieval(
        slices, codes.normal_bits, codes.abnormal_bits, (codes.normal_nbits, codes.abnormal_nbits), codes.latents,
        healthy_normal_bits=None if healthy is None else healthy.normal_bits,
        healthy_normal_indices=None if healthy is None else healthy.normal_indices,
        normal_indices=codes.normal_indices, max_queries=max_queries, seed=seed, index=index,
        query_cases=query_cases)
    table.seconds["retrieval"] = time.perf_counter() - start
    labelled = slices.abnormal >= 0
    if query_cases is not None:
        labelled &= np.isin(slices.case_ids, list(query_cases))
    start = time.perf_counter()
    if labelled.any():
        rows = np.flatnonzero(labelled)
        predicted = encoder.decode(abnormal_indices=codes.abnormal_indices[rows], outputs=("segment",))["segment"]
        table.segmentation = segmentation_scores(predicted, slices.seg[rows], slices.case_ids[rows])
        table.seconds["segmentation"] = time.perf_counter() - start
    else:
        table.notes.append("segmentation: skipped, no case here has tumour labels")
    start = time.perf_counter()
    if slices.healthy is not None and slices.healthy_known.any():
        rows = np.flatnonzero(slices.healthy_known & (slices.abnormal == 1))
        if healthy is None:  # the caller did not encode the counterparts with the slices
            counterpart = encoder.encode(slices.healthy[rows], present=slices.contrasts[rows])
        else:
            counterpart = healthy.select(rows)
        pseudo = encoder.decode(codes.normal_indices[rows], outputs=("pseudo_normal",))["pseudo_normal"]
        reference = encoder.decode(counterpart.normal_indices, counterpart.abnormal_indices,
                                   outputs=("reconstruct",))["reconstruct"]
        table.pseudo_normal.update(pseudo_normal_scores(pseudo, slices.healthy[rows], slices.seg[rows],
                                                        slices.contrasts[rows], reference))
        table.seconds["pseudo-normal"] = time.perf_counter() - start
    else:
        table.notes.append("pseudo_normal: skipped, real scans have no true healthy counterpart")
    return table


def keep_contrasts(slices: SliceSet, contrasts) -> SliceSet:
    """The slices as if only ``contrasts`` (names from MODALITIES) had been acquired: the others are
    zeroed and flagged absent, in the images and their healthy counterparts alike."""
    from .data import MODALITIES

    unknown = set(contrasts) - set(MODALITIES)
    if unknown or not contrasts:
        raise ValueError(f"contrasts: expected a non-empty subset of {list(MODALITIES)}, got {list(contrasts)}")
    keep = np.array([m in contrasts for m in MODALITIES])
    out = slices.select(slice(None))
    out.images = np.where(keep[None, :, None, None], slices.images, 0).astype(np.float32)
    out.contrasts = slices.contrasts & keep[None]
    if slices.healthy is not None:
        out.healthy = np.where(keep[None, :, None, None], slices.healthy, 0).astype(np.float32)
    if not out.contrasts.any(1).all():
        raise ValueError(f"contrasts: some slices have none of {list(contrasts)}")
    return out


def write_table(table: RetrievalTable, path: str | os.PathLike, log: Callable[[str], None] = print) -> None:
    log("mean Dice of the top k with the query, other cases only:\n" + table.format())
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(table.to_dict(), indent=1))
    log(f"table: {path}")


def evaluate_dataset(data: str | os.PathLike, out_json: str | os.PathLike, checkpoint: str | os.PathLike | None = None,
                     max_queries: int = 1000, seed: int = 0, log: Callable[[str], None] = print,
                     cases=None, query_cases=None, layout=None, contrasts=None) -> RetrievalTable:
    """``hashindex evaluate``: a model on a folder of cases in any layout the loader knows (or a
    slices .npz); queries from ``query_cases`` if given (e.g. cases held out from training), hits
    from other cases only. Writes the table as JSON to ``out_json``."""
    from .codes import CodeEncoder, encode_slices  # torch: only when a model runs

    encoder = CodeEncoder.load(checkpoint)
    data = Path(data)
    slices = (SliceSet.load(data) if data.suffix == ".npz"
              else load_slices(data, size=encoder.image_size, cases=cases, progress=True, layout=layout,
                                workers=os.cpu_count() or 1))
    if slices.size != encoder.image_size:
        raise ValueError(f"data: slices are {slices.size} px, the model takes {encoder.image_size}")
    if contrasts is not None:
        slices = keep_contrasts(slices, contrasts)
    codes, healthy = encode_slices(encoder, slices, log)
    table = evaluate_model(encoder, slices, codes, healthy, max_queries, seed, query_cases=query_cases)
    write_table(table, out_json, log)
    return table
