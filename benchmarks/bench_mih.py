"""MIHIndex vs FlatIndex, faiss.IndexBinaryFlat and faiss.IndexBinaryMultiHash, same codes, same process.

    python benchmarks/bench_mih.py                  # N = 1M and 10M, 64/128 bits, uniform and clustered
    python benchmarks/bench_mih.py --quick          # N = 200k, a minute

Data: uniform random codes (MIH's worst case) and clustered codes (centres plus 0-4 flipped
bits, as real hashes are). Queries come from the same distribution. For each k, single
queries (median latency of --single queries, each timed alone, in runs per engine,
--repeats rounds) and a batch (--batch queries, median of --repeats). MIH results are checked equal to FlatIndex's (ties
included); IndexBinaryMultiHash is approximate, so its recall@k against the exact answer is
reported for several nflip. Prints a table and writes a JSON record.
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np

import hashindex
from hashindex.bench import import_faiss, machine_info, make_codes, recall_at_k, timed, write_json

faiss = import_faiss(required=True)


def run_case(args, rng, n: int, nbits: int, kind: str, records: list) -> None:
    centres = rng.integers(0, 256, (max(1, n // 100), nbits // 8), dtype=np.uint8)
    xb = make_codes(rng, n, nbits, kind, centres)
    xq = make_codes(rng, max(args.batch, args.single), nbits, kind, centres)
    t_build = {}
    t_build["mih"] = timed(lambda: None)
    mih = hashindex.MIHIndex(nbits)
    t_build["mih"] = timed(lambda: mih.add(xb))
    flat = hashindex.FlatIndex(nbits)
    flat.add(xb)
    ref = faiss.IndexBinaryFlat(nbits)
    ref.add(xb)
    nhash = mih.m
    multi = faiss.IndexBinaryMultiHash(nbits, nhash, nbits // nhash)
    t_build["faiss_multihash"] = timed(lambda: multi.add(xb))
    faiss.omp_set_num_threads(args.threads)

    for k in args.k:
        batch = xq[: args.batch]
        exact = flat.search(batch, k)
        got = mih.search(batch, k)
        assert np.array_equal(got.distances, exact.distances) and np.array_equal(got.ids, exact.ids), \
            f"MIH differs from FlatIndex: n={n} nbits={nbits} {kind} k={k}"
        batch_stats = mih.last_search_stats
        engines = {
            "mih": lambda q: mih.search(q, k, threads=args.threads),
            "flat": lambda q: flat.search(q, k, threads=args.threads),
            "faiss_flat": lambda q: ref.search(q, k),
        }
        for nflip in args.nflip:
            engines[f"faiss_multihash_nflip{nflip}"] = (lambda q, f=nflip: (setattr(multi, "nflip", f), multi.search(q, k))[1])
        single = {name: [] for name in engines}
        mih_single_stats = []
        # Each engine answers a run of single queries back to back, as a server would
        # (interleaving engines per query measured mostly their caches being flushed
        # by the other engines' scans); rounds alternate so that drift hits all alike.
        for _ in range(args.repeats):
            for name, fn in engines.items():
                for i in range(args.single):
                    q = xq[i : i + 1]
                    single[name].append(timed(lambda: fn(q)))
                    if name == "mih":
                        mih_single_stats.append(mih.last_search_stats)
        batch_t = {name: statistics.median(timed(lambda: fn(batch)) for _ in range(args.repeats)) / len(batch)
                   for name, fn in engines.items()}
        base_single = statistics.median(single["faiss_flat"])
        base_batch = batch_t["faiss_flat"]
        for name in engines:
            r = 1.0
            if name.startswith("faiss_multihash"):
                multi.nflip = int(name.rsplit("nflip", 1)[1])
                found, _ = multi.search(batch, k)
                r = recall_at_k(found, exact.distances)
            for mode, t, base in (("single", statistics.median(single[name]), base_single),
                                  ("batch", batch_t[name], base_batch)):
                rec = {"n": n, "nbits": nbits, "data": kind, "k": k, "mode": mode, "engine": name,
                       "threads": args.threads, "ms_per_query": 1e3 * t, "speedup_vs_faiss_flat": base / t,
                       "recall": r}
                if name == "mih":
                    st = mih_single_stats if mode == "single" else [batch_stats]
                    q = sum(s["queries"] for s in st)
                    rec.update(m=mih.m, probed_share=sum(s["by_mih"] for s in st) / q,
                               candidates_per_query=sum(s["candidates"] for s in st) / q,
                               buckets_per_query=sum(s["buckets"] for s in st) / q)
                records.append(rec)
                print_row(rec)
    print(f"  build: MIHIndex {t_build['mih']:.2f} s, faiss IndexBinaryMultiHash {t_build['faiss_multihash']:.2f} s",
          flush=True)


HEADER = (f"{'n':>9} {'nbits':>5} {'data':>9} {'k':>4} {'mode':>6} {'engine':>26} {'ms/query':>9} "
          f"{'x faiss':>8} {'recall':>6} {'probed':>6} {'cand/q':>9}")


def print_row(r: dict) -> None:
    probed = f"{100 * r['probed_share']:5.0f}%" if "probed_share" in r else ""
    cand = f"{r['candidates_per_query']:9.0f}" if "candidates_per_query" in r else ""
    print(f"{r['n']:>9} {r['nbits']:>5} {r['data']:>9} {r['k']:>4} {r['mode']:>6} {r['engine']:>26} "
          f"{r['ms_per_query']:>9.4f} {r['speedup_vs_faiss_flat']:>8.2f} {r['recall']:>6.3f} {probed:>6} {cand:>9}",
          flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, nargs="+", default=[1_000_000, 10_000_000])
    p.add_argument("--nbits", type=int, nargs="+", default=[64, 128])
    p.add_argument("--data", nargs="+", default=["clustered", "uniform"])
    p.add_argument("--k", type=int, nargs="+", default=[1, 10, 100])
    p.add_argument("--single", type=int, default=50, help="single queries timed per engine")
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--nflip", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=hashindex.available_threads())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--skip", nargs="*", default=["10000000:128"], help="n:nbits cases to skip (memory/time)")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    if args.quick:
        args.n, args.single, args.batch, args.k, args.repeats = [200_000], 20, 100, [10], 2
    rng = np.random.default_rng(args.seed)
    records: list = []
    print(HEADER)
    for n in args.n:
        for nbits in args.nbits:
            if f"{n}:{nbits}" in args.skip:
                continue
            for kind in args.data:
                run_case(args, rng, n, nbits, kind, records)
    write_json({"records": records, "args": vars(args), "machine": machine_info()}, "mih", args.json)

if __name__ == "__main__":
    main()
