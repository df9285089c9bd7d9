"""FlatIndex vs faiss.IndexBinaryFlat (and numpy / numba brute force) on the same codes, same process.

    python benchmarks/bench_flat.py              # the full run: N = 1M, nbits 64/256/1024
    python benchmarks/bench_flat.py --quick      # N = 200k, fewer repeats (a minute)

For each code length: a batch of queries and single queries, k = 10, 1 and 2 threads.
Every timing is the median of --repeats runs, ours and faiss interleaved so that both see the
same machine noise. Prints a table (ms/query, codes compared per second, GB/s of codes, ratio
faiss_time / our_time) and writes a JSON record. Single-query bandwidth is put beside the
machine's own read bandwidth over a buffer as large as the database, measured in the same run.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from harness import numba_distances, numpy_distances

import hashindex
from hashindex import _core
from hashindex.bench import import_faiss, machine_info, timed, write_json

faiss = import_faiss(required=True)


def numpy_knn(xb: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    d = numpy_distances(xb, q)
    top = np.argpartition(d, k)[:k]
    return top[np.lexsort((top, d[top]))]


def make_numba_knn():
    """What a Python user writes with numba: a distance loop, then numpy's partial sort."""
    distances = numba_distances()
    if distances is None:
        return None

    def knn(xb64: np.ndarray, q64: np.ndarray, k: int) -> np.ndarray:
        d = distances(xb64, q64)
        top = np.argpartition(d, k)[:k]
        return top[np.lexsort((top, d[top]))]

    return knn


def single_query_times(search, xq: np.ndarray, count: int) -> float:
    """Median latency of `count` single-query searches."""
    times = []
    for i in range(count):
        q = xq[i % len(xq)][None, :]
        t = time.perf_counter()
        search(q)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run(args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(args.seed)
    numba_knn = make_numba_knn()
    rows, records = [], []
    for nbits in args.nbits:
        code_size = nbits // 8
        n = args.n
        xb = rng.integers(0, 256, (n, code_size), dtype=np.uint8)
        xq = rng.integers(0, 256, (args.nq, code_size), dtype=np.uint8)
        ours = hashindex.FlatIndex(nbits)
        ours.add(xb)
        ref = faiss.IndexBinaryFlat(nbits)
        ref.add(xb)
        db_bytes = n * code_size

        # Same answers first: a benchmark of wrong results measures nothing.
        check_q = xq[: min(50, len(xq))]
        d_ours, _ = ours.search(check_q, args.k)
        d_ref, _ = ref.search(check_q, args.k)
        assert np.array_equal(d_ours, d_ref), f"distances differ from faiss at nbits={nbits}"

        bandwidth = {t: _core.read_bandwidth(db_bytes, t, 51) for t in (1, 2)}
        for threads in args.threads:
            faiss.omp_set_num_threads(threads)
            t_ours, t_ref = [], []
            for _ in range(args.repeats):  # interleaved: both see the same noise
                t_ours.append(timed(lambda: ours.search(xq, args.k, threads=threads)))
                t_ref.append(timed(lambda: ref.search(xq, args.k)))
            batch = (statistics.median(t_ours) / len(xq), statistics.median(t_ref) / len(xq))
            s_ours = single_query_times(lambda q: ours.search(q, args.k, threads=threads), xq, args.single)
            s_ref = single_query_times(lambda q: ref.search(q, args.k), xq, args.single)
            for mode, (a, b) in (("batch", batch), ("single", (s_ours, s_ref))):
                for engine, t in (("hashindex", a), ("faiss", b)):
                    rec = {
                        "nbits": nbits, "n": n, "mode": mode, "nq": len(xq) if mode == "batch" else 1,
                        "threads": threads, "engine": engine, "ms_per_query": t * 1e3,
                        "gcodes_per_s": n / t / 1e9, "gb_per_s": db_bytes / t / 1e9,
                        "speedup_vs_faiss": b / t,
                    }
                    if mode == "single":
                        rec["fraction_of_2thread_read_bandwidth"] = rec["gb_per_s"] / bandwidth[2]
                    records.append(rec)
        faiss.omp_set_num_threads(max(args.threads))
        for engine, fn, count in (
            ("numpy", lambda q: numpy_knn(xb, q, args.k), args.baseline_queries),
            ("numba", (lambda q: numba_knn(xb64, q, args.k)) if numba_knn else None, args.baseline_queries),
        ):
            if fn is None or code_size % 8 and engine == "numba":
                continue
            if engine == "numba":
                xb64 = xb.view(np.uint64)
                xq64 = xq.view(np.uint64)
                fn(xq64[0])  # compile outside the timing
                t = statistics.median(
                    [timed(lambda i=i: fn(xq64[i])) for i in range(count)])
            else:
                t = statistics.median([timed(lambda i=i: fn(xq[i])) for i in range(count)])
            s_ref = next(r["ms_per_query"] for r in records
                         if r["nbits"] == nbits and r["mode"] == "single" and r["threads"] == 1 and r["engine"] == "faiss")
            records.append({"nbits": nbits, "n": n, "mode": "single", "nq": 1, "threads": 1, "engine": engine,
                            "ms_per_query": t * 1e3, "gcodes_per_s": n / t / 1e9, "gb_per_s": db_bytes / t / 1e9,
                            "speedup_vs_faiss": s_ref / (t * 1e3)})
        rows.append({"nbits": nbits, "read_bandwidth_gb_per_s": bandwidth})
        ours = ref = xb = None  # free the database before the next size (not del: lambdas above name them)
    return {"records": records, "bandwidth": rows}


def print_table(result: dict) -> None:
    print(f"{'nbits':>5} {'mode':>6} {'thr':>3} {'engine':>9} {'ms/query':>10} {'Gcodes/s':>9} "
          f"{'GB/s':>7} {'x faiss':>8} {'%2T-BW':>7}")
    for r in result["records"]:
        bw = r.get("fraction_of_2thread_read_bandwidth")
        print(f"{r['nbits']:>5} {r['mode']:>6} {r['threads']:>3} {r['engine']:>9} {r['ms_per_query']:>10.4f} "
              f"{r['gcodes_per_s']:>9.2f} {r['gb_per_s']:>7.1f} {r['speedup_vs_faiss']:>8.2f} "
              f"{'' if bw is None else f'{100 * bw:6.0f}%':>7}")
    for b in result["bandwidth"]:
        bw = b["read_bandwidth_gb_per_s"]
        print(f"read bandwidth over a {b['nbits']}-bit database-sized buffer: "
              f"1 thread {bw[1]:.1f} GB/s, 2 threads {bw[2]:.1f} GB/s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--nbits", type=int, nargs="+", default=[64, 256, 1024])
    p.add_argument("--nq", type=int, default=1000)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--single", type=int, default=200, help="single-query searches timed per engine")
    p.add_argument("--baseline-queries", type=int, default=3, help="queries for numpy/numba baselines")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="N = 200k, 200 queries, 3 repeats")
    p.add_argument("--json", default=None, help="output path (default benchmark-results/flat-<time>.json)")
    args = p.parse_args()
    if args.quick:
        args.n, args.nq, args.repeats, args.single = 200_000, 200, 3, 50
    result = run(args)
    result["machine"] = machine_info()
    result["args"] = vars(args)
    print_table(result)
    write_json(result, "flat", args.json)

if __name__ == "__main__":
    main()
