"""Binary HNSW: faiss.IndexBinaryHNSW against USearch's b1 HNSW, same codes, same process, beside
hashindex's exact scan: should ``hashindex.compat.faiss.IndexBinaryHNSW`` be USearch's graph?

    python benchmarks/bench_hnsw.py             # 200k x 256-bit clustered codes, M 32
    python benchmarks/bench_hnsw.py --quick     # 50k codes

Both graphs have M neighbours per node (USearch's ``connectivity``) and efConstruction 40 (its
``expansion_add``); ``--ef`` sweeps efSearch (``expansion_search``). For each: recall@k against the
exact answer (ties at the k-th distance count), batch ms/query (median of --repeats), single-query ms
(median of --single, each alone), and faiss's time over USearch's. Needs ``pip install usearch``.
"""
from __future__ import annotations

import sys
import time

import numpy as np
from harness import script_parser

import hashindex
from hashindex.bench import import_faiss, machine_info, make_codes, median_each, median_seconds, recall_at_k, write_json

faiss = import_faiss(required=True)


def main(argv=None) -> int:
    p = script_parser(__doc__, n=200_000, nq=200, single=100, repeats=5)
    p.add_argument("--nbits", type=int, default=256)
    p.add_argument("--m", type=int, default=32)
    p.add_argument("--ef", type=int, nargs="+", default=[16, 32, 64, 128, 256])
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.single, args.repeats = 50_000, 50, 3
    try:
        from usearch.index import Index
    except ImportError:
        print("bench_hnsw needs USearch: pip install usearch", file=sys.stderr)
        return 2
    threads = hashindex.available_threads()
    faiss.omp_set_num_threads(threads)
    rng = np.random.default_rng(0)
    centres = rng.integers(0, 256, (max(1, args.n // 100), args.nbits // 8), dtype=np.uint8)
    xb = make_codes(rng, args.n, args.nbits, "clustered", centres)
    xq = make_codes(rng, max(args.nq, args.single), args.nbits, "clustered", centres)
    q = xq[:args.nq]

    exact = hashindex.FlatIndex(args.nbits)
    exact.add(xb)
    truth = exact.search(q, args.k).distances
    flat_ms = median_seconds(lambda: exact.search(q, args.k), args.repeats) / args.nq * 1e3

    started = time.perf_counter()
    theirs = faiss.IndexBinaryHNSW(args.nbits, args.m)
    theirs.hnsw.efConstruction = 40
    theirs.add(xb)
    build = [time.perf_counter() - started]
    started = time.perf_counter()
    graph = Index(ndim=args.nbits, metric="hamming", dtype="b1", connectivity=args.m, expansion_add=40)
    graph.add(np.arange(args.n, dtype=np.uint64), xb, threads=threads)
    build.append(time.perf_counter() - started)

    def usearch(x: np.ndarray, ef: int) -> np.ndarray:
        graph.expansion_search = ef
        return np.atleast_2d(graph.search(x, args.k, threads=threads).distances)

    info = machine_info()
    print(f"{info.get('cpu')}, {threads} threads, simd {hashindex.simd_level()}, {args.n:,} x {args.nbits} bits "
          f"clustered, M {args.m}, k {args.k}; build s faiss {build[0]:.1f} / usearch {build[1]:.1f}; "
          f"exact FlatIndex batch {flat_ms:.4f} ms/query")
    print(f"{'ef':>5} | {'recall faiss / usearch':>22} | {'batch ms/q faiss / usearch':>27} {'x':>5} | "
          f"{'single ms faiss / usearch':>26} {'x':>5}")
    rows = []
    for ef in args.ef:
        theirs.hnsw.efSearch = ef
        recall = [recall_at_k(theirs.search(q, args.k)[0].astype(np.float64), truth),
                  recall_at_k(usearch(q, ef), truth)]
        batch = [median_seconds(f, args.repeats) / args.nq * 1e3
                 for f in (lambda: theirs.search(q, args.k), lambda: usearch(q, ef))]
        single = [median_each(f, args.single) * 1e3
                  for f in (lambda i: theirs.search(xq[i:i + 1], args.k), lambda i: usearch(xq[i], ef))]
        rows.append({"ef": ef, "recall_faiss": recall[0], "recall_usearch": recall[1], "batch_ms_faiss": batch[0],
                     "batch_ms_usearch": batch[1], "single_ms_faiss": single[0], "single_ms_usearch": single[1],
                     "exact_batch_ms": flat_ms})
        print(f"{ef:>5} | {recall[0]:>13.3f} / {recall[1]:.3f} | {batch[0]:>17.4f} / {batch[1]:.4f} "
              f"{batch[0] / batch[1]:>5.2f} | {single[0]:>16.4f} / {single[1]:.4f} {single[0] / single[1]:>5.2f}")
    write_json({"args": vars(args), "machine": info, "build_seconds": {"faiss": build[0], "usearch": build[1]},
                "rows": rows}, "hnsw", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
