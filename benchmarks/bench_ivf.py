"""IVFIndex against faiss.IndexBinaryIVF and hashindex's exact scan, same codes, same process.

    python benchmarks/bench_ivf.py            # 1M x 256-bit clustered codes, nlist 1024
    python benchmarks/bench_ivf.py --quick    # 200k codes, nlist 256
    python benchmarks/bench_ivf.py --codes codes.npy --nlist 64   # your codes (uint8 rows, or an
                                              # index file: --field names a MultiFieldIndex's field)
    python benchmarks/bench_ivf.py --plot ivf.png                  # recall@k against ms/query

With --codes, --nq rows (seeded) are held out as queries and the rest indexed (the stream and the
single queries then cycle through them).

Each index trains its own centroids (hashindex by k-majority, faiss by k-means on the bits as
floats) from the same 100k codes; a second faiss index is given hashindex's centroids, so that the
same lists are probed. For each nprobe: recall@k against the exact answer; batch ms/query, the same
--nq queries searched --repeats times (median), their lists in cache after the first; stream
ms/query, --stream batches of --nq queries never searched before, each timed once (median), the
caches evicted before each index's turn; single-query ms over --single queries never searched
before, each alone (median), the caches evicted before each index's turn; faiss's time over ours.
faiss runs at OpenMP's default wait policy unless OMP_WAIT_POLICY says otherwise (PASSIVE: as the
other scripts run it); the record says which.
"""
from __future__ import annotations

import os
import sys

import numpy as np
from harness import evict_caches, median_stream, script_parser

import hashindex
from hashindex.bench import (
    import_faiss,
    let_faiss_sleep,
    machine_info,
    make_codes,
    median_each,
    median_seconds,
    recall_at_k,
    write_json,
)

# faiss at OpenMP's default wait policy, as a process of its own runs it (its threads spin between
# parallel regions instead of waking for each: most of a search at nprobe 1-4); ours is timed after
# they have gone to sleep. OMP_WAIT_POLICY=PASSIVE times faiss as the other scripts do.
faiss = import_faiss(required=True, wait_policy=None)
FAISS_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY") or "default"  # as OpenMP read it, at faiss's import


def main(argv=None) -> int:
    p = script_parser(__doc__, n=1_000_000, nq=200, single=100, repeats=5)
    p.add_argument("--nbits", type=int, default=256)
    p.add_argument("--nlist", type=int, default=1024)
    p.add_argument("--nprobe", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    p.add_argument("--codes", default=None, help="codes to index: a .npy of uint8 rows, or a hashindex index file")
    p.add_argument("--field", default=None, help="with --codes naming a MultiFieldIndex file: the field")
    p.add_argument("--plot", default=None, help="write recall@k against batch ms/query to this image")
    p.add_argument("--stream", type=int, default=10, help="batches of --nq new queries, each timed once")
    args = p.parse_args(argv)
    if args.stream < 2:
        p.error(f"--stream: expected at least 2 batches (the first is not timed), got {args.stream}")
    if args.quick:
        args.n, args.nlist, args.single, args.repeats = 200_000, 256, 50, 3
    rng = np.random.default_rng(0)
    if args.codes:
        xb, xq, what = held_out(args.codes, args.field, max(args.nq, args.single), rng)
        args.n, args.nbits = len(xb), xb.shape[1] * 8
        fresh = np.resize(xq, (args.stream * args.nq + args.single, xq.shape[1]))
    else:
        centres = rng.integers(0, 256, (max(1, args.n // 100), args.nbits // 8), dtype=np.uint8)
        xb = make_codes(rng, args.n, args.nbits, "clustered", centres)
        xq = make_codes(rng, max(args.nq, args.single), args.nbits, "clustered", centres)
        fresh = make_codes(rng, args.stream * args.nq + args.single, args.nbits, "clustered", centres)
        what = "clustered"
    train = xb[:min(len(xb), 100_000)]
    ours = hashindex.IVFIndex(args.nbits, args.nlist)
    ours.train(train)
    ours.add(xb)
    theirs = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(args.nbits), args.nbits, args.nlist)
    theirs.train(train)
    theirs.add(xb)
    quantizer = faiss.IndexBinaryFlat(args.nbits)
    quantizer.add(ours.centroids)
    same = faiss.IndexBinaryIVF(quantizer, args.nbits, args.nlist)
    same.is_trained = True
    same.add(xb)
    exact = hashindex.FlatIndex(args.nbits)
    exact.add(xb)
    truth = exact.search(xq[:args.nq], args.k).distances
    flat_ms = median_seconds(lambda: exact.search(xq[:args.nq], args.k), args.repeats) / args.nq * 1e3
    threads = hashindex.available_threads()
    faiss.omp_set_num_threads(threads)
    info = machine_info()
    info["faiss_omp_wait_policy"] = FAISS_WAIT_POLICY
    print(f"{info.get('cpu')}, {threads} threads, simd {hashindex.simd_level()}, {args.n:,} x {args.nbits} bits "
          f"{what}, nlist {args.nlist}, k {args.k}; exact FlatIndex batch {flat_ms:.4f} ms/query; "
          f"faiss's OpenMP wait policy {info['faiss_omp_wait_policy']}")
    print(f"{'nprobe':>6} | {'recall ours / faiss same / faiss own':>36} | {'batch ms/q ours / faiss':>24} {'x':>5} | "
          f"{'stream ms/q ours / faiss':>25} {'x':>5} | {'single ms ours / faiss':>23} {'x':>5} | vs exact")
    batches = fresh[:args.stream * args.nq].reshape(args.stream, args.nq, -1)
    singles = fresh[args.stream * args.nq:]
    rows = []
    for nprobe in args.nprobe:
        same.nprobe = theirs.nprobe = nprobe
        q = xq[:args.nq]
        recall = [recall_at_k(r, truth) for r in (ours.search(q, args.k, nprobe=nprobe).distances,
                                                  same.search(q, args.k)[0], theirs.search(q, args.k)[0])]
        let_faiss_sleep()
        batch = [median_seconds(f, args.repeats) / args.nq * 1e3
                 for f in (lambda: ours.search(q, args.k, nprobe=nprobe), lambda: same.search(q, args.k))]
        let_faiss_sleep()
        stream = [median_stream(f, args.stream) / args.nq * 1e3
                  for f in (lambda i: ours.search(batches[i], args.k, nprobe=nprobe), lambda i: same.search(batches[i], args.k))]
        let_faiss_sleep()
        single = []
        for f in (lambda i: ours.search(singles[i], args.k, nprobe=nprobe), lambda i: same.search(singles[i:i + 1], args.k)):
            evict_caches()
            single.append(median_each(f, args.single) * 1e3)
        row = {"nprobe": nprobe, "recall_ours": recall[0], "recall_faiss_same_centroids": recall[1],
               "recall_faiss_own_centroids": recall[2], "batch_ms_ours": batch[0], "batch_ms_faiss": batch[1],
               "stream_ms_ours": stream[0], "stream_ms_faiss": stream[1],
               "single_ms_ours": single[0], "single_ms_faiss": single[1], "exact_batch_ms": flat_ms}
        rows.append(row)
        print(f"{nprobe:>6} | {recall[0]:>10.3f} / {recall[1]:.3f} / {recall[2]:.3f}{'':>7} | {batch[0]:>10.4f} / "
              f"{batch[1]:.4f}   {batch[1] / batch[0]:>5.2f} | {stream[0]:>11.4f} / {stream[1]:.4f}   "
              f"{stream[1] / stream[0]:>5.2f} | {single[0]:>9.4f} / {single[1]:.4f}   "
              f"{single[1] / single[0]:>5.2f} | {flat_ms / batch[0]:>5.1f}x")
    write_json({"args": vars(args), "machine": info, "codes": what, "rows": rows}, "ivf", args.json)
    if args.plot:
        plot(rows, args, what)
    return 0


def held_out(path: str, field: str | None, nq: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:
    """Base and query rows of a file of codes: a .npy of uint8 rows, or an index file (its codes by
    id; a MultiFieldIndex's ``field``). ``nq`` seeded rows are the queries, the rest the base."""
    if path.endswith(".npy"):
        codes = np.load(path)
    else:
        index = hashindex.load(path)
        ids = np.sort(index.ids())
        codes = index.get(ids) if field is None else index.get(ids, field)
        if isinstance(codes, dict):
            sys.exit(f"--field: {path} holds several fields; name one of {sorted(codes)}")
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    if codes.ndim != 2 or len(codes) <= nq:
        sys.exit(f"--codes: expected more than {nq} rows of uint8 codes, got shape {codes.shape}")
    order = rng.permutation(len(codes))
    name = path.rsplit("/", 1)[-1] + (f" ({field})" if field else "")
    return codes[order[nq:]], codes[order[:nq]], name


def plot(rows: list[dict], args, what: str) -> None:
    """recall@k against batch ms/query, one curve per index, a point per nprobe."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed: no plot (pip install '.[bench]')")
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, ms, recall in (("hashindex IVFIndex", "batch_ms_ours", "recall_ours"),
                             ("faiss IndexBinaryIVF (same centroids)", "batch_ms_faiss", "recall_faiss_same_centroids")):
        ax.plot([r[ms] for r in rows], [r[recall] for r in rows], marker="o", label=name)
        for r in rows:
            ax.annotate(str(r["nprobe"]), (r[ms], r[recall]), fontsize=7, xytext=(3, -8), textcoords="offset points")
    ax.axvline(rows[0]["exact_batch_ms"], color="grey", linestyle=":", label="hashindex exact scan")
    ax.set_xscale("log")
    ax.set_xlabel("batch ms / query (log)")
    ax.set_ylabel(f"recall@{args.k}")
    ax.set_title(f"{args.n:,} x {args.nbits} bits, {what}, nlist {args.nlist}, {hashindex.simd_level()}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=120)
    print(f"plot: {args.plot}")


if __name__ == "__main__":
    sys.exit(main())
