"""When a second thread pays: FlatIndex (and faiss.IndexBinaryFlat beside it) on small searches,
one thread against every available thread, by database size, code length and batch size.

The scan driver runs a search on one thread below a measured number of compared bytes and gives
small batches one task per thread (csrc/scan.h); this script is the measurement behind both.

    python benchmarks/bench_threads.py            # about a minute on 2 cores
"""
from __future__ import annotations

import numpy as np
from harness import script_parser

import hashindex
from hashindex.bench import import_faiss, machine_info, medians_interleaved, write_json


def main() -> None:
    p = script_parser(__doc__, n=[1_000, 10_000, 100_000], nq=256, single=0)
    p.add_argument("--nbits", type=int, nargs="+", default=[64, 256, 1024])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 64, 256])
    args = p.parse_args()
    faiss = import_faiss()
    threads = hashindex.available_threads()
    rng = np.random.default_rng(0)
    print(f"{hashindex.simd_level()}, {threads} threads, k = {args.k}; medians of 9-301 interleaved runs per cell")
    print(f"{'N':>8} {'bits':>5} {'nq':>4} {'KB cmp':>8} {'1 thread us':>12} {f'{threads} threads us':>13} "
          f"{'ratio':>6} {'faiss ratio':>11}")
    rows = []
    for nbits in args.nbits:
        for n in args.n:
            xb = rng.integers(0, 256, (n, nbits // 8), dtype=np.uint8)
            index = hashindex.FlatIndex(nbits)
            index.add(xb)
            ref = None
            if faiss is not None:
                ref = faiss.IndexBinaryFlat(nbits)
                ref.add(xb)
            for nq in args.batches:
                q = xb[:nq]
                count = max(9, min(301, int(4e7 / (xb.nbytes * nq + 1))))
                block = max(1, count // 9)
                # Each library's two thread counts take turns with each other only: interleaved with
                # faiss's OpenMP team, our second thread ran some cells 15x slower than alone.
                t = medians_interleaved({"ours1": lambda _, q=q: index.search(q, args.k, threads=1),
                                         "oursN": lambda _, q=q: index.search(q, args.k, threads=threads)},
                                        count, block)
                if ref is not None:
                    def faiss_at(t, q=q):
                        def run(_):
                            faiss.omp_set_num_threads(t)
                            ref.search(q, args.k)
                        return run
                    t.update(medians_interleaved({"faiss1": faiss_at(1), "faissN": faiss_at(threads)}, count, block))
                row = {"n": n, "nbits": nbits, "nq": nq, "compared_bytes": xb.nbytes * nq, "threads": threads,
                       "ours_1_us": t["ours1"] * 1e6, "ours_all_us": t["oursN"] * 1e6,
                       "ratio": t["oursN"] / t["ours1"]}
                if ref is not None:
                    row.update(faiss_1_us=t["faiss1"] * 1e6, faiss_all_us=t["faissN"] * 1e6,
                               faiss_ratio=t["faissN"] / t["faiss1"])
                rows.append(row)
                print(f"{n:>8} {nbits:>5} {nq:>4} {xb.nbytes * nq / 1024:>8.0f} {row['ours_1_us']:>12.1f} "
                      f"{row['ours_all_us']:>13.1f} {row['ratio']:>6.2f} {row.get('faiss_ratio', float('nan')):>11.2f}")
    write_json({"machine": machine_info(), "k": args.k, "rows": rows}, "threads", args.json)


if __name__ == "__main__":
    main()
