"""MultiFieldIndex against FlatIndex and faiss.IndexBinaryFlat on the concatenated codes, same process.

    python benchmarks/bench_multi_field.py               # 200k and 2M items, two 1024-bit fields
    python benchmarks/bench_multi_field.py --quick       # 200k items

At equal weights the multi-field ranking (sum of the two fields' distances, ties by id) equals a
FlatIndex over the concatenation, so that is the bar; every answer is checked equal to it before
timing. Modes: both fields, the normal field alone (against FlatIndex / faiss on that field). Codes
are encoder-like: normal codes clustered (centres plus a few flipped bits), and 80 % of abnormal
codes the near-constant "no tumour" code, so ties abound. Batch (--nq queries, median of
--repeats) and single queries (p50 of --single, each alone). Prints a table and a JSON record.
"""
from __future__ import annotations

import sys

import numpy as np
from harness import script_parser

import hashindex
from hashindex.bench import import_faiss, machine_info, median_each, median_seconds, write_json

faiss = import_faiss()
if faiss is None:
    print("faiss-cpu is not installed: its rows are left out (pip install '.[bench]')")


def encoder_like(rng, n: int, nbytes: int, abnormal_share: float = 0.2) -> dict[str, np.ndarray]:
    centres = rng.integers(0, 256, (max(1, n // 200), nbytes), dtype=np.uint8)
    normal = centres[rng.integers(0, len(centres), n)]
    normal ^= (rng.random((n, nbytes)) < 0.02).astype(np.uint8) << rng.integers(0, 8, (n, nbytes)).astype(np.uint8)
    no_tumour = rng.integers(0, 256, nbytes, dtype=np.uint8)
    abnormal = np.repeat(no_tumour[None], n, axis=0)
    flip = rng.random((n, nbytes)) < 0.002
    abnormal ^= flip.astype(np.uint8)
    tumour = rng.random(n) < abnormal_share
    abnormal[tumour] = rng.integers(0, 256, (int(tumour.sum()), nbytes), dtype=np.uint8)
    return {"normal": normal, "abnormal": abnormal}


def run(args, n: int, rng, records: list) -> None:
    nbytes = args.nbits // 8
    data = encoder_like(rng, n, nbytes)
    queries = encoder_like(rng, max(args.nq, args.single), nbytes)
    concat = np.concatenate([data["normal"], data["abnormal"]], axis=1)
    qconcat = np.concatenate([queries["normal"], queries["abnormal"]], axis=1)
    multi = hashindex.MultiFieldIndex({"normal": args.nbits, "abnormal": args.nbits})
    multi.add(data)
    flats = {"both": hashindex.FlatIndex(2 * args.nbits), "normal": hashindex.FlatIndex(args.nbits)}
    flats["both"].add(concat)
    flats["normal"].add(data["normal"])
    refs = {}
    if faiss is not None:
        faiss.omp_set_num_threads(hashindex.available_threads())
        refs = {"both": faiss.IndexBinaryFlat(2 * args.nbits), "normal": faiss.IndexBinaryFlat(args.nbits)}
        refs["both"].add(concat)
        refs["normal"].add(data["normal"])
    for mode in ("both", "normal"):
        fields = ["normal", "abnormal"] if mode == "both" else ["normal"]
        q = {f: queries[f] for f in fields}
        flat_q = qconcat if mode == "both" else queries["normal"]
        want = flats[mode].search(flat_q[:args.nq], args.k)
        got = multi.search({f: v[:args.nq] for f, v in q.items()}, args.k)
        assert np.array_equal(got.ids, want.ids) and np.array_equal(got.distances, want.distances), mode
        row = {"n": n, "mode": mode}
        batch = {f: v[:args.nq] for f, v in q.items()}
        row["multi_batch_ms"] = median_seconds(lambda: multi.search(batch, args.k), args.repeats) / args.nq * 1e3
        row["flat_batch_ms"] = median_seconds(lambda: flats[mode].search(flat_q[:args.nq], args.k), args.repeats) / args.nq * 1e3
        row["multi_single_ms"] = median_each(lambda i: multi.search({f: v[i] for f, v in q.items()}, args.k), args.single) * 1e3
        row["flat_single_ms"] = median_each(lambda i: flats[mode].search(flat_q[i], args.k), args.single) * 1e3
        if refs:
            row["faiss_batch_ms"] = median_seconds(lambda: refs[mode].search(flat_q[:args.nq], args.k), args.repeats) / args.nq * 1e3
            row["faiss_single_ms"] = median_each(lambda i: refs[mode].search(flat_q[i:i + 1], args.k), args.single) * 1e3
        records.append(row)
        fa = row.get("faiss_batch_ms", float("nan"))
        fs = row.get("faiss_single_ms", float("nan"))
        print(f"{n:>9,} {mode:>7} | batch ms/q: multi {row['multi_batch_ms']:.4f} flat {row['flat_batch_ms']:.4f} "
              f"faiss {fa:.4f} | multi/flat {row['multi_batch_ms'] / row['flat_batch_ms']:.2f}x, faiss/multi "
              f"{fa / row['multi_batch_ms']:.1f}x | single ms: multi {row['multi_single_ms']:.3f} flat "
              f"{row['flat_single_ms']:.3f} faiss {fs:.3f} | multi/flat {row['multi_single_ms'] / row['flat_single_ms']:.2f}x")


def main(argv=None) -> int:
    p = script_parser(__doc__, n=[200_000, 2_000_000])
    p.add_argument("--nbits", type=int, default=1024, help="bits per field")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.repeats, args.single = [200_000], 3, 50
    info = machine_info()
    print(f"{info.get('cpu')}, {hashindex.available_threads()} threads, simd {hashindex.simd_level()}, "
          f"two fields of {args.nbits} bits, k={args.k}, batch {args.nq}")
    rng = np.random.default_rng(0)
    records: list = []
    for n in args.n:
        run(args, n, rng, records)
    write_json({"args": vars(args), "machine": info, "rows": records}, "multi-field", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
