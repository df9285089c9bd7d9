"""Does MIHIndex choose between probing and scanning well from its first query?

    python benchmarks/bench_mih_first_queries.py            # 1M x 64 bits, clustered and uniform
    python benchmarks/bench_mih_first_queries.py --quick    # 200k

For each data kind: a fresh MIHIndex is built and its first --first single 10-NN queries (near stored
codes: a stored code with 0-2 bits flipped) are timed one by one. Beside them, the same queries
answered by probing alone (budget raised so no query is handed to the scan) and by FlatIndex's scan
alone, both warmed by as many other such queries; "better" is the per-query minimum of the two. Target: the fresh index's queries cost within
1.3x of the better choice. The warm references also have their caches on their side, so the same
two run cold as well (a fresh index that always probes, a fresh FlatIndex; their first queries):
against that "better, cold", what remains is the cost model's own choice. Results are checked
equal to FlatIndex's. Prints a table and a JSON record.
"""
from __future__ import annotations

import argparse
import statistics
import sys

import numpy as np  # noqa: E402

import hashindex  # noqa: E402
from hashindex.bench import machine_info, make_codes, timed, write_json  # noqa: E402


def near(rng, xb: np.ndarray, count: int) -> np.ndarray:
    q = xb[rng.integers(0, len(xb), count)].copy()
    for row in q:
        for _ in range(int(rng.integers(0, 3))):
            bit = int(rng.integers(0, 8 * q.shape[1]))
            row[bit // 8] ^= np.uint8(1 << (bit % 8))
    return q


def per_query(fn, queries: np.ndarray, warm_with: np.ndarray | None = None) -> list[float]:
    """Seconds of each query, one by one; warm_with: other queries run first, untimed (for the
    references: their own first queries would flatter the fresh index, and repeating the timed
    queries would find their buckets in cache)."""
    for q in warm_with if warm_with is not None else []:
        fn(q)
    return [timed(lambda q=q: fn(q)) for q in queries]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--nbits", type=int, default=64)
    p.add_argument("--first", type=int, default=20)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.n = 200_000
    info = machine_info()
    print(f"{info.get('cpu')}, {hashindex.available_threads()} threads, n={args.n:,} x {args.nbits} bits, "
          f"first {args.first} single 10-NN queries of a fresh index")
    rng = np.random.default_rng(0)
    rows = []
    for kind in ("clustered", "uniform"):
        centres = rng.integers(0, 256, (max(1, args.n // 100), args.nbits // 8), dtype=np.uint8)
        xb = make_codes(rng, args.n, args.nbits, kind, centres)
        queries = near(rng, xb, args.first)
        others = near(rng, xb, args.first)
        flat = hashindex.FlatIndex(args.nbits)
        flat.add(xb)
        fresh = hashindex.MIHIndex(args.nbits)
        t_build = timed(lambda: fresh.add(xb))  # the rebuild calibrates the cost model
        first = per_query(lambda q: fresh.search(q, 10), queries)
        stats = fresh.last_search_stats
        probed, probed_cold = hashindex.MIHIndex(args.nbits), hashindex.MIHIndex(args.nbits)
        probed.add(xb)
        probed_cold.add(xb)  # its own index: the warm reference must not have seen these queries
        hashindex._core.set_mih_budget_scale(1e12)  # probe every query to the end
        try:
            probe_cold = per_query(lambda q: probed_cold.search(q, 10), queries)
            probe_t = per_query(lambda q: probed.search(q, 10), queries, warm_with=others)
        finally:
            hashindex._core.set_mih_budget_scale(1.0)
        flat_cold = hashindex.FlatIndex(args.nbits)
        flat_cold.add(xb)
        scan_cold = per_query(lambda q: flat_cold.search(q, 10), queries)
        scan_t = per_query(lambda q: flat.search(q, 10), queries, warm_with=others)
        for q in queries:
            want = flat.search(q, 10)
            got = fresh.search(q, 10)
            assert np.array_equal(got.ids, want.ids) and np.array_equal(got.distances, want.distances)
        better = [min(a, b) for a, b in zip(probe_t, scan_t)]
        better_cold = [min(a, b) for a, b in zip(probe_cold, scan_cold)]
        row = {"kind": kind, "build_s": t_build, "first_mean_ms": statistics.mean(first) * 1e3,
               "first_median_ms": statistics.median(first) * 1e3, "probe_mean_ms": statistics.mean(probe_t) * 1e3,
               "scan_mean_ms": statistics.mean(scan_t) * 1e3, "better_mean_ms": statistics.mean(better) * 1e3,
               "probe_cold_mean_ms": statistics.mean(probe_cold) * 1e3, "scan_cold_mean_ms": statistics.mean(scan_cold) * 1e3,
               "better_cold_mean_ms": statistics.mean(better_cold) * 1e3,
               "probe_scale": stats.get("probe_scale"), "scan_ns_per_word": stats.get("scan_ns_per_word")}
        row["first_over_better"] = row["first_mean_ms"] / row["better_mean_ms"]
        row["first_over_better_cold"] = row["first_mean_ms"] / row["better_cold_mean_ms"]
        rows.append(row)
        print(f"{kind:>9}: first {args.first} queries mean {row['first_mean_ms']:.3f} ms (median "
              f"{row['first_median_ms']:.3f}); probing alone {row['probe_mean_ms']:.3f}, scan alone "
              f"{row['scan_mean_ms']:.3f}, better per query {row['better_mean_ms']:.3f} -> "
              f"{row['first_over_better']:.2f}x the better (build {t_build:.2f} s); cold: probing "
              f"{row['probe_cold_mean_ms']:.3f}, scan {row['scan_cold_mean_ms']:.3f}, better "
              f"{row['better_cold_mean_ms']:.3f} -> {row['first_over_better_cold']:.2f}x")
    write_json({"args": vars(args), "machine": info, "rows": rows}, "mih-first-queries", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
