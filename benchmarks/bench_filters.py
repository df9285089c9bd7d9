"""Filtered search (allow / deny) against faiss's IDSelectors, same codes, same process.

    python benchmarks/bench_filters.py            # 1M x 64-bit and 200k x 2 x 1024-bit items
    python benchmarks/bench_filters.py --quick

For FlatIndex, MIHIndex and MultiFieldIndex: batch ms/query and single-query p50 with no filter, an
allow list of 0.1 %, 1 %, 10 % and 50 % of the ids, and a deny list of 10 %; beside them faiss's
IndexBinaryFlat with IDSelectorBatch / IDSelectorNot on the same ids, and (the ideal a filter can
reach) FlatIndex over only the allowed items. Every filtered answer is checked equal to the
sub-index's first. Prints a table and a JSON record.
"""
from __future__ import annotations

import sys

import numpy as np
from harness import script_parser

import hashindex
from hashindex.bench import (
    import_faiss,
    machine_info,
    make_codes,
    median_each,
    median_seconds,
    write_json,
)

faiss = import_faiss()
if faiss is None:
    print("faiss-cpu is not installed: its rows are left out (pip install '.[bench]')")


def main(argv=None) -> int:
    args = script_parser(__doc__, n=1_000_000, single=50).parse_args(argv)
    if args.quick:
        args.n, args.repeats, args.single = 200_000, 3, 20
    rng = np.random.default_rng(0)
    info = machine_info()
    threads = hashindex.available_threads()
    print(f"{info.get('cpu')}, {threads} threads, n={args.n:,} x 64 bits (clustered), k={args.k}, batch {args.nq}")
    centres = rng.integers(0, 256, (args.n // 100, 8), dtype=np.uint8)
    xb = make_codes(rng, args.n, 64, "clustered", centres)
    xq = make_codes(rng, max(args.nq, args.single), 64, "clustered", centres)
    flat, mih = hashindex.FlatIndex(64), hashindex.MIHIndex(64)
    flat.add(xb)
    mih.add(xb)
    ref = None
    if faiss is not None:
        faiss.omp_set_num_threads(threads)
        ref = faiss.IndexBinaryFlat(64)
        ref.add(xb)
    rows = []
    cases = [("none", None)] + [(f"allow {f:g} %", f / 100) for f in (0.1, 1, 10, 50)] + [("deny 10 %", -0.1)]
    for label, share in cases:
        kw, keep = {}, np.ones(args.n, bool)
        if share is not None:
            chosen = rng.choice(args.n, int(abs(share) * args.n), replace=False).astype(np.int64)
            kw = {"allow": chosen} if share > 0 else {"deny": chosen}
            keep = np.isin(np.arange(args.n), chosen) if share > 0 else ~np.isin(np.arange(args.n), chosen)
        sub = hashindex.FlatIndex(64)
        sub.add(xb[keep], np.flatnonzero(keep))
        want = sub.search(xq[:args.nq], args.k)
        row = {"filter": label}
        for name, index in (("flat", flat), ("mih", mih)):
            got = index.search(xq[:args.nq], args.k, **kw)
            assert np.array_equal(got.ids, want.ids) and np.array_equal(got.distances, want.distances), (name, label)
            row[f"{name}_batch_ms"] = median_seconds(lambda index=index: index.search(xq[:args.nq], args.k, **kw), args.repeats) / args.nq * 1e3
            row[f"{name}_single_ms"] = median_each(lambda i, index=index: index.search(xq[i], args.k, **kw), args.single) * 1e3
        row["subindex_batch_ms"] = median_seconds(lambda: sub.search(xq[:args.nq], args.k), args.repeats) / args.nq * 1e3
        if ref is not None:
            params = None
            if share is not None:
                sel = faiss.IDSelectorBatch(kw.get("allow", kw.get("deny")))
                params = faiss.SearchParameters(sel=sel if share > 0 else faiss.IDSelectorNot(sel))
            row["faiss_batch_ms"] = median_seconds(lambda: ref.search(xq[:args.nq], args.k, params=params), args.repeats) / args.nq * 1e3
            row["faiss_single_ms"] = median_each(lambda i: ref.search(xq[i:i + 1], args.k, params=params), args.single) * 1e3
        rows.append(row)
        print(f"{label:>12} | batch ms/q: flat {row['flat_batch_ms']:.4f} mih {row['mih_batch_ms']:.4f} "
              f"sub-index {row['subindex_batch_ms']:.4f} faiss {row.get('faiss_batch_ms', float('nan')):.4f} | "
              f"single ms: flat {row['flat_single_ms']:.3f} mih {row['mih_single_ms']:.3f} "
              f"faiss {row.get('faiss_single_ms', float('nan')):.3f}")
    write_json({"args": vars(args), "machine": info, "rows": rows}, "filters", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
