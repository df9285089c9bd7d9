"""An archive of 1M slices: how long it takes to open, and to answer patient-level queries with a
metadata filter, against faiss doing the same ranking exactly.

    python benchmarks/bench_archive.py            # 10,000 patients x 100 slices, 1024 + 1024 bits
    python benchmarks/bench_archive.py --quick    # 1,000 patients

The archive is written through the archive's own commit (index file, slice columns, catalogue rows
in one transaction) with synthetic codes, since encoding 1M slices takes hours: anatomy codes are a
prototype per level band and kind of anatomy (--anatomy-types) with 8 % of bits flipped per slice; a third of the patients have a tumour
(the middle 40 % of their levels), its code one of --lesion-types kinds with 10 % flipped. Timed, each the median of --repeats in this process:

- open: ``Archive.open`` and its first ``snapshot()`` (index and columns mapped, cases read);
- slice query: one slice's patients (``search_slice``, mode abnormal, ``where="t1ce AND abnormal"``);
- case query: 16 query slices of a case (the ranking ``search_case`` runs once the slices are
  encoded; encoding is bench_codes.py's), mode both, the same filter;
- the filter alone: mapped columns (numpy) against the same filter in SQL over the catalogue;
- faiss: the same exact ranking with ``IndexBinaryFlat`` over the concatenated codes, every allowed
  slice of the band ranked (``IDSelectorBatch``, k = all of them), per-patient minima by numpy.
"""
from __future__ import annotations

import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np
from harness import script_parser

import hashindex
from hashindex.bench import import_faiss, machine_info, median_seconds, write_json
from hashindex.encoder.archive import Archive
from hashindex.encoder.archive import columns as cols
from hashindex.encoder.archive.banded import BANDS, BandedIndex
from hashindex.encoder.archive.retrieval import MODES, bands

faiss = import_faiss(required=True)
WHERE = "t1ce AND abnormal"
IDENTITY = {"sha256": "synthetic", "checkpoint": None, "hashing": "synthetic", "bits": 16, "image_size": 128,
            "normal_nbits": 1024, "abnormal_nbits": 1024}


class _Synthetic:
    image_size = 128

    def identity(self) -> dict:
        return IDENTITY


def flip(rng, codes: np.ndarray, p: float) -> np.ndarray:
    bits = np.unpackbits(codes, axis=-1)
    bits ^= (rng.random(bits.shape) < p).astype(np.uint8)
    return np.packbits(bits, axis=-1)


def build(path: Path, patients: int, per: int, rng, lesion_types: int = 20, anatomy_types: int = 50) -> Archive:
    n = patients * per
    archive = Archive.create(path, _Synthetic())
    levels = np.tile(np.linspace(0, 1, per, dtype=np.float32), patients)
    band = bands(levels, 10)
    prototypes = rng.integers(0, 256, (max(1, anatomy_types), 10, 128), dtype=np.uint8)
    anatomy = rng.integers(0, max(1, anatomy_types), patients)
    normal = np.empty((n, 128), np.uint8)
    for p in range(patients):
        rows = slice(p * per, (p + 1) * per)
        normal[rows] = flip(rng, prototypes[anatomy[p], band[rows]], 0.08)
    tumour = rng.random(patients) < 1 / 3
    healthy = rng.integers(0, 256, 128, dtype=np.uint8)
    if lesion_types:  # tumours of a few kinds, each patient's its kind's code with 10 % of bits flipped
        kinds = rng.integers(0, 256, (lesion_types, 128), dtype=np.uint8)
        lesions = flip(rng, kinds[rng.integers(0, lesion_types, patients)], 0.10)
    else:  # every tumour unlike every other: all patients nearly equidistant, the hardest ranking
        lesions = rng.integers(0, 256, (patients, 128), dtype=np.uint8)
    in_tumour = np.repeat(tumour, per) & (np.abs(levels - 0.5) < 0.2)
    abnormal = np.where(in_tumour[:, None], lesions[np.repeat(np.arange(patients), per)], healthy)
    abnormal = flip(rng, abnormal, 0.05)
    index = BandedIndex.empty(IDENTITY)
    case_of = np.repeat(np.arange(patients), per).astype(np.int64)
    index.add({"normal": normal, "abnormal": abnormal}, np.arange(n), case_of, bands(levels, BANDS))
    columns = np.zeros(n, cols.SLICE_DTYPE)
    columns["id"], columns["case"], columns["level"] = np.arange(n), case_of, levels
    columns["z"] = np.tile(np.arange(per), patients)
    columns["abnormal"], columns["labelled"] = in_tumour, -1
    columns["tumour_mm2"] = np.where(in_tumour, 400.0, 0.0)
    t1ce = rng.random(patients) < 0.7

    def rows(db) -> None:
        db.executemany("INSERT INTO cases (id, name, source, layout, t1, t1ce, t2, flair, slices, added) "
                       "VALUES (?, ?, '', 'synthetic', 1, ?, 1, 1, ?, '')",
                       [(p, f"P{p:05d}", int(t1ce[p]), per) for p in range(patients)])
        db.executemany("INSERT INTO slices VALUES (?, ?, ?, ?, ?, ?, ?)",
                       [(int(i), int(c), int(z), float(lv), int(a), float(t), None) for i, c, z, lv, a, t in
                        zip(columns["id"], columns["case"], columns["z"], columns["level"], columns["abnormal"],
                            columns["tumour_mm2"])])

    archive._commit(index, columns, rows, next_id=n, next_case=patients)
    archive.close()
    return Archive.open(path)


def faiss_rank(snap, queries: np.ndarray, q_levels: np.ndarray, allow: np.ndarray, k: int, xb_index) -> list:
    """The same exact patient ranking, from faiss distances to every allowed slice of the band."""
    columns = snap.columns
    npat = int(columns["case"].max()) + 1
    sb, qb = bands(columns["level"], 10), bands(q_levels, 10)
    best = np.full((npat, len(queries)), 2048.0)
    for j, q in enumerate(queries):
        ok = np.flatnonzero(allow & (np.abs(sb - qb[j]) <= 1))
        if not len(ok):
            continue
        params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(ok.astype(np.int64)))
        d, i = xb_index.search(q[None], len(ok), params=params)
        cases = columns["case"][i[0]]
        np.minimum.at(best[:, j], cases, d[0].astype(np.float64))
    score = best.mean(axis=1)
    matched = (best < 2048).any(axis=1)
    order = np.lexsort((np.arange(npat), score))
    return [int(p) for p in order if matched[p]][:k]


def main(argv=None) -> int:
    p = script_parser(__doc__, n=10_000, repeats=5)
    p.add_argument("--per", type=int, default=100, help="slices per patient")
    p.add_argument("--anatomy-types", type=int, default=50,
                   help="kinds of anatomy (1: every brain alike at a level, the worst case)")
    p.add_argument("--lesion-types", type=int, default=20,
                   help="kinds of tumour codes (0: each patient's own random one, the worst case)")
    args = p.parse_args(argv)
    if args.quick:
        args.n = 1_000
    rng = np.random.default_rng(0)
    tmp = Path(tempfile.mkdtemp(prefix="bench-archive-"))
    try:
        t = time.perf_counter()
        archive = build(tmp / "archive", args.n, args.per, rng, args.lesion_types, args.anatomy_types)
        built = time.perf_counter() - t
        n = args.n * args.per
        size = sum(f.stat().st_size for f in (tmp / "archive").iterdir())

        def open_once():
            with Archive.open(tmp / "archive") as a:
                a.snapshot()

        open_s = median_seconds(open_once, args.repeats)
        snap = archive.snapshot()
        tumour_rows = np.flatnonzero(snap.columns["abnormal"] == 1)
        query_case = int(snap.columns["case"][tumour_rows[0]])
        qz = int(snap.columns["z"][tumour_rows[len(tumour_rows) // 2]])
        name = f"P{query_case:05d}"
        slice_q = median_seconds(lambda: archive.search_slice(name, qz, mode="abnormal", k=args.k, where=WHERE),
                                 args.repeats)
        rows = np.flatnonzero(snap.columns["case"] == query_case)[:: max(1, args.per // 16)][:16]
        codes = snap.index.get(snap.columns["id"][rows], snap.columns.stored_band_of(snap.columns["id"][rows]))
        z = snap.columns["z"][rows]
        levels_q = np.asarray(snap.columns["level"][rows], np.float64)
        rank = lambda: archive._rank(snap, codes, levels_q, z, "both", args.k, WHERE, None, query_case, 10, 1)  # noqa: E731
        case_q = median_seconds(rank, args.repeats)
        mask_s = median_seconds(lambda: cols.evaluate(hashindex.encoder.archive.parse_where(WHERE), snap.columns,
                                                      snap.cases), args.repeats)
        db = sqlite3.connect(tmp / "archive" / "catalogue.sqlite")
        sql = "SELECT s.id FROM slices s JOIN cases c ON c.id = s.case_id WHERE c.t1ce = 1 AND s.abnormal = 1"
        sql_s = median_seconds(lambda: np.array(db.execute(sql).fetchall(), np.int64), args.repeats)
        # faiss: both codes concatenated (weights 1 and 1 = the concatenation's Hamming distance)
        flat = faiss.IndexBinaryFlat(2048)
        every = snap.columns["id"]
        flat.add(np.ascontiguousarray(np.concatenate([snap.index.get(every, snap.columns.stored_band_of(every), f)
                                                      for f in MODES["both"]], axis=1)))
        allow = cols.evaluate(hashindex.encoder.archive.parse_where(WHERE), snap.columns, snap.cases)
        allow &= snap.columns["case"] != query_case
        qcat = np.concatenate([codes["normal"], codes["abnormal"]], axis=1)
        theirs = faiss_rank(snap, qcat, levels_q, allow, args.k, flat)
        ours = [int(snap.cases.ids[np.flatnonzero(snap.cases.names == h.case)[0]]) for h in rank()]
        assert ours == theirs, (ours, theirs)
        faiss_s = median_seconds(lambda: faiss_rank(snap, qcat, levels_q, allow, args.k, flat), max(1, args.repeats // 2))
        archive.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"machine": machine_info(), "slices": n, "patients": args.n, "lesion_types": args.lesion_types,
              "anatomy_types": args.anatomy_types,
              "archive_bytes": size,
              "build_seconds": built, "open_ms": open_s * 1e3, "slice_query_ms": slice_q * 1e3,
              "case_query_ms": case_q * 1e3, "faiss_case_query_ms": faiss_s * 1e3,
              "filter_columns_ms": mask_s * 1e3, "filter_sqlite_ms": sql_s * 1e3, "where": WHERE, "k": args.k}
    print(f"archive of {n:,} slices ({args.n:,} patients, {args.anatomy_types} kinds of anatomy, "
          f"{args.lesion_types or 'no'} kinds of tumour, "
          f"{size / 2**20:.0f} MiB), built in {built:.1f} s")
    print(f"| step | ms | note |\n|---|---:|---|\n| open + first snapshot | {open_s * 1e3:.1f} | mmap |")
    print(f"| slice query, abnormal, where {WHERE!r} | {slice_q * 1e3:.1f} | k={args.k} patients |")
    print(f"| case query, 16 slices, both, same filter | {case_q * 1e3:.1f} | faiss {faiss_s * 1e3:.0f} ms: "
          f"{faiss_s / case_q:.1f}x ours |")
    print(f"| filter alone: mapped columns / SQLite | {mask_s * 1e3:.1f} / {sql_s * 1e3:.1f} | "
          f"{sql_s / mask_s:.0f}x |")
    print("json:", write_json(result, "archive", args.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
