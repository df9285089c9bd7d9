"""MultiFieldIndex(mih=True) against the same index scanning and faiss.IndexBinaryFlat, same process.

    python benchmarks/bench_multi_field_mih.py --pool pool.npz          # encoder codes + 1M proxies
    python benchmarks/bench_multi_field_mih.py --quick                  # synthetic data only, 200k

Single queries (k = 10, p50 over --single queries, each alone, all threads; then the same queries
as one batch, median of --repeats; the methods take turns every 10 queries), three modes: the
normal field alone, the abnormal field alone, both at weight 1. faiss scans the mode's field, or the
concatenation of both fields (same ranking at equal weights). Every answer of the probing index is
checked equal to the scan's before anything is timed.

Datasets:
- ``encoder``: genuine encoder codes from benchmarks/encode_pool.py (--pool); queries are codes of
  held-out slices (every augmented copy of a held-out slice is left out of the index).
- ``encoder-seen``: the same codes, queries from the last augmentation round, whose slices the index
  holds in other augmentations (a slice scanned again, or a patient's own slices in the archive).
- ``resampled-p``: --n items made from the pool: a random pool code whose 16-bit cells (one per
  grid cell of the encoder) are each replaced, with probability p, by that cell of another random
  pool code, i.e. drawn from the cell's empirical distribution. p = 1 is independent sampling per
  cell; smaller p keeps more of the correlation between cells that makes neighbours near. Queries
  are held-out pool codes, as above.
- ``clustered``: synthetic encoder-like codes (bench_multi_field.encoder_like: clustered normal
  codes, 80 % of abnormal codes one near-constant "no tumour" code), queries drawn the same way:
  data whose neighbours are near, where probing can pay.

Besides the times, each row says what probing would have to do: the median k-th distance and the
share of items a probe forced to finish (no cost model) must verify to prove it. A mode is
sub-linear only where that share is small. The cost model's first pass over the queries is timed
too (it learns that probing does not pay from the first queries that give up).
"""
from __future__ import annotations

import os
import sys

import numpy as np  # noqa: E402
from harness import script_parser  # noqa: E402

import hashindex  # noqa: E402
from hashindex import _core  # noqa: E402
from hashindex.bench import import_faiss, machine_info, medians_interleaved, timed, write_json  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_multi_field import encoder_like  # noqa: E402

faiss = import_faiss()
if faiss is None:
    print("faiss-cpu is not installed: its rows are left out (pip install '.[bench]')")

MODES = {"normal": ("normal",), "abnormal": ("abnormal",), "both": ("normal", "abnormal")}
CELL_BYTES = 2  # the encoder's codes: a 16-bit signature per cell of its 8 x 8 grid


def split_pool(pool: dict, rng, held_share: float = 0.02):
    """(database codes, query codes): queries from held-out source slices, none of whose augmented
    copies stays in the database."""
    source = pool["source_row"]
    held = rng.random(source.max() + 1) < held_share
    return pick(pool, ~held[source], rng.permutation(np.flatnonzero(held[source])))


def split_round(pool: dict, rng):
    """(database codes, query codes): queries from the last augmentation round, whose slices the
    database holds in other augmentations (a slice scanned again: near neighbours exist)."""
    last = pool["round"] == pool["round"].max()
    return pick(pool, ~last, rng.permutation(np.flatnonzero(last)))


def pick(pool: dict, db, queries) -> tuple[dict, dict]:
    return ({f: pool[f][db] for f in ("normal", "abnormal")}, {f: pool[f][queries] for f in ("normal", "abnormal")})


def resample(base: dict, n: int, p: float, rng) -> dict:
    """n items: random base items with each cell replaced, with probability p, by the same cell of
    another random base item."""
    m = len(base["normal"])
    anchor = rng.integers(0, m, n)
    out = {}
    for f, codes in base.items():
        cells = codes.shape[1] // CELL_BYTES
        x = codes[anchor].reshape(n, cells, CELL_BYTES)
        swap = rng.random((n, cells)) < p
        donor = rng.integers(0, m, (n, cells))
        donors = codes.reshape(m, cells, CELL_BYTES)[donor, np.arange(cells)[None, :]]
        x[swap] = donors[swap]
        out[f] = x.reshape(n, -1)
    return out


def run(args, name: str, data: dict, queries: dict, records: list) -> None:
    n = len(data["normal"])
    nq = min(args.single, len(queries["normal"]))
    queries = {f: q[:nq] for f, q in queries.items()}
    scan = hashindex.MultiFieldIndex({"normal": data["normal"].shape[1] * 8, "abnormal": data["abnormal"].shape[1] * 8})
    scan.add(data)
    probing = hashindex.MultiFieldIndex(scan.fields, mih=True)
    build_s = timed(lambda: probing.add(data))
    # A copy that always probes to the end: what probing must do to prove the answers (not timed; a
    # copy, so that the timed index's cost model learns nothing from it).
    forced = hashindex.MultiFieldIndex.from_bytes(probing.to_bytes())
    for mode, fields in MODES.items():
        q = {f: queries[f] for f in fields}
        want = scan.search(q, args.k)
        _core.set_mih_budget_scale(1e6)
        got = forced.search(q, args.k)
        stats = forced.last_search_stats
        _core.set_mih_budget_scale(1.0)
        assert np.array_equal(got.ids, want.ids) and np.array_equal(got.distances, want.distances), (name, mode)
        row = {"dataset": name, "n": n, "mode": mode, "queries": nq, "build_s": build_s,
               "kth_distance_p50": float(np.median(want.distances[:, -1])),
               "forced_probe_verified_share": stats["candidates"] / (nq * n),
               "forced_probe_buckets_per_query": stats["buckets"] / nq}
        first = timed(lambda: [probing.search({f: v[i] for f, v in q.items()}, args.k) for i in range(nq)])
        row["mih_first_pass_ms"] = first / nq * 1e3
        got = probing.search(q, args.k)
        assert np.array_equal(got.ids, want.ids) and np.array_equal(got.distances, want.distances), (name, mode)
        probed = []

        def mih_one(i):
            probing.search({f: v[i] for f, v in q.items()}, args.k)
            probed.append(probing.last_search_stats["by_mih"])  # each call's stats are its own

        single = {"mih": mih_one, "scan": lambda i: scan.search({f: v[i] for f, v in q.items()}, args.k)}
        batch = {"mih": lambda: probing.search(q, args.k), "scan": lambda: scan.search(q, args.k)}
        if faiss is not None:
            flat = faiss.IndexBinaryFlat(8 * sum(data[f].shape[1] for f in fields))
            flat.add(np.ascontiguousarray(np.concatenate([data[f] for f in fields], axis=1)))
            fq = np.ascontiguousarray(np.concatenate([q[f] for f in fields], axis=1))
            single["faiss"] = lambda i: flat.search(fq[i:i + 1], args.k)
            batch["faiss"] = lambda: flat.search(fq, args.k)
        for method, sec in medians_interleaved(single, nq).items():
            row[f"{method}_single_ms"] = sec * 1e3
        row["probed_share"] = float(np.mean(probed[1:]))
        # The same queries as one batch (per query): probing and the batched scan share the threads.
        for method, sec in medians_interleaved({k: lambda i, fn=fn: fn() for k, fn in batch.items()}, args.repeats, block=1).items():
            row[f"{method}_batch_ms"] = sec / nq * 1e3
        records.append(row)
        fs = row.get("faiss_single_ms", float("nan"))
        print(f"{name:>16} {n:>9,} {mode:>8} | k-th {row['kth_distance_p50']:6.1f}, forced probe verifies "
              f"{100 * row['forced_probe_verified_share']:5.1f} % | ms: mih {row['mih_single_ms']:.3f} "
              f"(first pass {row['mih_first_pass_ms']:.3f}, probed {100 * row['probed_share']:.0f} %) scan "
              f"{row['scan_single_ms']:.3f} faiss {fs:.3f} | faiss/mih {fs / row['mih_single_ms']:.1f}x, "
              f"mih/scan {row['mih_single_ms'] / row['scan_single_ms']:.2f}x | batch ms/q: mih {row['mih_batch_ms']:.3f} "
              f"scan {row['scan_batch_ms']:.3f} faiss {row.get('faiss_batch_ms', float('nan')):.3f}", flush=True)


def main(argv=None) -> int:
    p = script_parser(__doc__, n=1_000_000, single=50)
    p.add_argument("--pool", help="codes from benchmarks/encode_pool.py (encoder and resampled datasets)")
    p.add_argument("--p", type=float, nargs="+", default=[1.0, 0.25], help="resampling shares")
    p.add_argument("--nbits", type=int, default=1024, help="bits per field of the synthetic data")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.single = 200_000, 30
    info = machine_info()
    print(f"{info.get('cpu')}, {hashindex.available_threads()} threads, simd {hashindex.simd_level()}, k={args.k}, "
          f"{args.single} single queries")
    rng = np.random.default_rng(0)
    records: list = []
    if args.pool and not args.quick:
        with np.load(args.pool) as z:
            pool = {k: z[k] for k in ("normal", "abnormal", "source_row", "round")}
        run(args, "encoder-seen", *split_round(pool, rng), records)
        base, held = split_pool(pool, rng)
        run(args, "encoder", base, held, records)
        for share in args.p:
            run(args, f"resampled-{share:g}", resample(base, args.n, share, rng), held, records)
    both = encoder_like(rng, args.n + args.single, args.nbits // 8)
    run(args, "clustered", {f: c[:args.n] for f, c in both.items()}, {f: c[args.n:] for f, c in both.items()}, records)
    write_json({"args": vars(args), "machine": info, "rows": records}, "multi-field-mih", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
