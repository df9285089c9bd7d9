"""What MultiFieldIndex(mih=True) pays per candidate it verifies: probing forced (the cost model's
budget never runs out) on codes whose substrings collide everywhere, so every item is a candidate
and the time is the verification's (a random access to each field's row and its popcount).

    python benchmarks/bench_mih_verify.py            # 100k items x (1024 + 1024) bits, 50 queries

Run it under two builds to compare them; ``HASHINDEX_SIMD`` picks the level (the verification goes
through the level's filter kernel).
"""
from __future__ import annotations

import numpy as np
from harness import script_parser

import hashindex
from hashindex import _core
from hashindex.bench import machine_info, median_seconds, write_json

FIELDS = {"normal": 1024, "abnormal": 1024}


def cell_codes(rng: np.random.Generator, n: int, values: int = 6) -> np.ndarray:
    """1024-bit codes whose 64 cells of 16 bits each take one of ``values`` values per cell (the
    encoder's layout, with far fewer values): every table's buckets hold a sixth of the items."""
    base = rng.integers(0, 1 << 16, (values, 64), dtype=np.uint32)
    pick = rng.integers(0, values, (n, 64))
    return base[pick, np.arange(64)].astype("<u2").view(np.uint8).reshape(n, 128)


def main() -> None:
    p = script_parser(__doc__, n=100_000, nq=50, single=0, repeats=7)
    args = p.parse_args()
    rng = np.random.default_rng(0)
    codes = {f: cell_codes(rng, args.n + args.nq) for f in FIELDS}
    index = hashindex.MultiFieldIndex(FIELDS, mih=True)
    index.add({f: c[:args.n] for f, c in codes.items()})
    queries = {f: c[args.n:] for f, c in codes.items()}
    rows = []
    _core.set_mih_budget_scale(1e6)
    try:
        print(f"{hashindex.simd_level()}, one thread, k = {args.k}, {args.n:,} items, median of {args.repeats}")
        for mode, fields in (("both", ("normal", "abnormal")), ("normal", ("normal",))):
            q = {f: queries[f] for f in fields}
            index.search({f: v[:2] for f, v in q.items()}, args.k, threads=1)
            seconds = median_seconds(lambda q=q: index.search(q, args.k, threads=1), args.repeats)
            stats = index.last_search_stats
            assert stats["by_mih"] == args.nq, stats
            per_candidate = seconds / stats["candidates"] * 1e9
            rows.append({"mode": mode, "ms_per_query": seconds / args.nq * 1e3,
                         "candidates_per_query": stats["candidates"] / args.nq, "ns_per_candidate": per_candidate})
            print(f"{mode:<7} {rows[-1]['ms_per_query']:8.3f} ms/query  {rows[-1]['candidates_per_query']:>9,.0f} "
                  f"candidates/query  {per_candidate:6.1f} ns/candidate")
    finally:
        _core.set_mih_budget_scale(1.0)
    write_json({"machine": machine_info(), "n": args.n, "nq": args.nq, "k": args.k, "rows": rows}, "mih_verify",
               args.json)


if __name__ == "__main__":
    main()
