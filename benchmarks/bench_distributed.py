"""ShardedIndex on a local Ray against FlatIndex and faiss.IndexBinaryFlat in this process, same codes.

    python benchmarks/bench_distributed.py            # 1M x 256-bit codes, 4 shard actors
    python benchmarks/bench_distributed.py --quick    # 200k codes, a minute

Measures, per batch size: batch throughput (queries/s, median of --repeats) of faiss, FlatIndex and
ShardedIndex (every answer checked equal to FlatIndex's); single-query latency (p50/p90 of --single
queries, each alone). Then the parts of the distributed cost, for the scale-out model: a Ray round
trip to an actor (no work), a shard's own scan time (timed inside the actor), the driver's merge of S
shard answers (S = 4 .. 256, timed here), and the single-thread scan rate of FlatIndex at 256 and 2048
bits. From those it prints a table of N machines x cores x code length -> QPS and latency (see
benchmarks/RESULTS.md). Prints a table and writes a JSON record.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np

import hashindex
from hashindex.bench import import_faiss, machine_info, median_seconds, timed, write_json

try:
    import ray

    from hashindex import distributed as hd
except ImportError:  # pragma: no cover
    sys.exit("Ray is required: pip install '.[distributed]'")
faiss = import_faiss()
if faiss is None:
    print("faiss-cpu is not installed: its rows are left out (pip install '.[bench]')")


def latencies(fn, queries: np.ndarray) -> tuple[float, float]:
    fn(queries[:1])
    times = sorted(timed(lambda q=q: fn(q[None])) for q in queries)
    return times[len(times) // 2], times[int(len(times) * 0.9)]


def scan_rate(nbits: int, n: int, rng) -> float:
    """Codes per second one thread compares (FlatIndex, batch of 256 queries)."""
    index = hashindex.FlatIndex(nbits)
    index.add(rng.integers(0, 256, (n, nbits // 8), dtype=np.uint8))
    q = rng.integers(0, 256, (256, nbits // 8), dtype=np.uint8)
    t = median_seconds(lambda: index.search(q, 10, threads=1), 3)
    return n * len(q) / t


def merge_cost(shards: int, k: int, nq: int, rng) -> float:
    """Seconds per query the driver spends merging S answers of (nq, k)."""
    d = [np.sort(rng.integers(0, 100, (nq, k)).astype(np.int32), axis=1) for _ in range(shards)]
    i = [rng.integers(0, 1 << 40, (nq, k)) for _ in range(shards)]
    return median_seconds(lambda: hd.merge_knn(d, i, k), 5) / nq


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--nbits", type=int, default=256)
    p.add_argument("--shards", type=int, default=4)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16, 256, 4096])
    p.add_argument("--single", type=int, default=200, help="queries timed alone for latency")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--shard-threads", type=int, default=None, help="search threads per shard (default: all)")
    p.add_argument("--quick", action="store_true", help="200k codes, fewer repeats")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.repeats, args.single = 200_000, 3, 100
    rng = np.random.default_rng(0)
    xb = rng.integers(0, 256, (args.n, args.nbits // 8), dtype=np.uint8)
    xq = rng.integers(0, 256, (max(args.batches + [args.single]), args.nbits // 8), dtype=np.uint8)
    threads = hashindex.available_threads()
    info = machine_info()
    print(f"{info.get('cpu')}, {threads} threads, n={args.n:,} x {args.nbits} bits, {args.shards} shard actors, k={args.k}")

    flat = hashindex.FlatIndex(args.nbits)
    flat.add(xb)
    ref = None
    if faiss is not None:
        faiss.omp_set_num_threads(threads)
        ref = faiss.IndexBinaryFlat(args.nbits)
        ref.add(xb)
    hd.start_local_ray(num_cpus=threads, _node_ip_address="127.0.0.1")
    t0 = time.perf_counter()
    sharded = hd.ShardedIndex(args.nbits, shards=args.shards, threads=args.shard_threads)
    t_start = time.perf_counter() - t0
    t_add = timed(lambda: sharded.add(xb))
    print(f"start {args.shards} actors: {t_start:.2f} s; add {args.n:,} codes (logged, fsync): {t_add:.2f} s")

    rows = []
    for nq in args.batches:
        q = xq[:nq]
        want = flat.search(q, args.k)
        got = sharded.search(q, args.k)
        assert np.array_equal(got.ids, want.ids) and np.array_equal(got.distances, want.distances), "sharded != flat"
        row = {"batch": nq,
               "flat_qps": nq / median_seconds(lambda: flat.search(q, args.k), args.repeats),
               "sharded_qps": nq / median_seconds(lambda: sharded.search(q, args.k), args.repeats)}
        if ref is not None:
            row["faiss_qps"] = nq / median_seconds(lambda: ref.search(q, args.k), args.repeats)
        row["sharded_over_flat"] = row["sharded_qps"] / row["flat_qps"]
        rows.append(row)

    single = xq[:args.single]
    lat = {"flat": latencies(lambda q: flat.search(q, args.k), single),
           "sharded": latencies(lambda q: sharded.search(q, args.k), single)}
    if ref is not None:
        lat["faiss"] = latencies(lambda q: ref.search(q, args.k), single)

    # The parts: a Ray round trip, a shard's own scan, the driver's merge.
    actor = sharded.shard_actors[0]
    rtt = statistics.median(timed(lambda: ray.get(actor.ping.remote())) for _ in range(200))
    q1 = ray.put(xq[:1])
    shard_call = statistics.median(timed(lambda: ray.get(actor.search.remote(q1, args.k, args.shard_threads, {})))
                                   for _ in range(50))
    merges = {s: merge_cost(s, args.k, 4096, rng) for s in (4, 16, 64, 256)}
    rates = {bits: scan_rate(bits, 200_000, rng) for bits in (256, 2048)}
    sharded.close()
    ray.shutdown()

    print(f"\n{'batch':>6} {'faiss q/s':>11} {'Flat q/s':>11} {'Sharded q/s':>12} {'Sharded/Flat':>13} {'Flat/faiss':>11}")
    for r in rows:
        fa = r.get("faiss_qps")
        print(f"{r['batch']:>6} {fa or float('nan'):>11,.0f} {r['flat_qps']:>11,.0f} {r['sharded_qps']:>12,.0f} "
              f"{r['sharded_over_flat']:>12.2f}x {(r['flat_qps'] / fa) if fa else float('nan'):>10.2f}x")
    print("\nsingle query, ms (p50 / p90):")
    for name, (p50, p90) in lat.items():
        print(f"  {name:<8} {p50 * 1e3:8.3f} / {p90 * 1e3:8.3f}")
    overhead = lat["sharded"][0] - lat["flat"][0]
    print(f"  sharded overhead at p50: {overhead * 1e3:.3f} ms")
    print(f"\nRay round trip (ping, no work): {rtt * 1e6:.0f} us; one shard's search of 1 query "
          f"({args.n // args.shards:,} codes) seen from the driver: {shard_call * 1e3:.3f} ms")
    print(f"driver merge per query (k={args.k}): " + ", ".join(f"S={s}: {t * 1e6:.2f} us" for s, t in merges.items()))
    print("scan rate, one thread: " + ", ".join(f"{b} bits: {r / 1e6:,.0f} M codes/s" for b, r in rates.items()))

    # Scale-out on paper: n codes over N machines x c cores, one shard per machine using all cores.
    # batch QPS = min(scan bound N*c*rate/n, driver bound D/merge(N)) with D drivers (read-only
    # copies of the index in Ray tasks, each merging its own batches); latency = rtt + scan + merge.
    sizes = sorted(merges)
    merge_at = lambda shards: float(np.interp(np.log2(shards), np.log2(sizes), [merges[s] for s in sizes])) \
        if shards <= sizes[-1] else merges[sizes[-1]] * shards / sizes[-1]
    model = []
    print(f"\nscale-out model (n codes, one shard per machine, batch of 4096; RTT {rtt * 1e6:.0f} us measured here):")
    print(f"{'n':>9} {'bits':>5} {'N':>4} {'cores':>5} {'scan QPS':>10} {'1-driver QPS':>13} {'QPS':>10} "
          f"{'latency ms':>11}  bound (drivers to lift it)")
    for n in (10**9, 15 * 10**9):
        for bits in (256, 2048):
            for machines in (1, 4, 16, 64, 256, 1024):
                for cores in (16, 64):
                    scan_qps = machines * cores * rates[bits] / n
                    merge = merge_at(max(machines, 2))
                    driver_qps = 1 / merge
                    drivers = int(np.ceil(scan_qps / driver_qps))
                    latency = rtt + n / (machines * cores * rates[bits]) + merge
                    bound = "scan" if drivers <= 1 else f"driver merge ({drivers} drivers)"
                    model.append(dict(n=n, bits=bits, machines=machines, cores=cores, scan_qps=scan_qps,
                                      driver_qps=driver_qps, qps_one_driver=min(scan_qps, driver_qps),
                                      drivers_needed=drivers, latency_s=latency, bound=bound))
                    if cores == 64:
                        print(f"{n:>9.0e} {bits:>5} {machines:>4} {cores:>5} {scan_qps:>10,.1f} {driver_qps:>13,.0f} "
                              f"{min(scan_qps, driver_qps):>10,.1f} {latency * 1e3:>11,.1f}  {bound}")
    write_json({"args": vars(args), "machine": info, "start_s": t_start, "add_s": t_add, "batches": rows,
                "latency_p50_p90_s": lat, "ray_rtt_s": rtt, "shard_call_s": shard_call,
                "merge_s_per_query": merges, "scan_codes_per_s_one_thread": rates, "model": model},
               "distributed", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
