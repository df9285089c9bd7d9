"""The benchmark behind RESULTS.md: ``hashindex bench`` (``hashindex.bench``) with every competitor this
environment has, thread scaling, plots and Markdown; and what the scripts beside it share.

    python -m benchmarks --quick                 # < 1 min
    python -m benchmarks --full                  # up to 10M codes: the run behind RESULTS.md
    python -m benchmarks --markdown RECORD.json  # a record as RESULTS.md's tables

Competitors besides ``hashindex bench``'s (this library and faiss.IndexBinaryFlat): hashindex's and
faiss's binary IVF (nlist about sqrt(n), nprobe 8), faiss's IndexBinaryHash, IndexBinaryMultiHash
(nflip 0 and 2) and IndexBinaryHNSW, and numpy and numba brute force, each where affordable. faiss-cpu, numba and matplotlib: ``pip install '.[bench]'``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

import hashindex
from hashindex.bench import (
    PRESETS,
    Method,
    Skip,
    dataset,
    execute,
    faiss_bytes,
    faiss_search,
    import_faiss,
    medians_interleaved,
    methods,
    run,
    timed,
)
from hashindex.cli import add_bench_arguments

POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def script_parser(description: str, *, n: int | list[int], nq: int = 200, single: int = 100,
                  repeats: int = 5) -> argparse.ArgumentParser:
    """The options the scripts share: --n (one size, or several when ``n`` is a list), --nq (batch),
    --single (queries timed alone), --k, --repeats, --quick, --json."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, nargs="+" if isinstance(n, list) else None, default=n)
    p.add_argument("--nq", type=int, default=nq)
    p.add_argument("--single", type=int, default=single)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=repeats)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default=None)
    return p


_EVICTION: list[np.ndarray] = []


def evict_caches(nbytes: int = 128 << 20) -> None:
    """Writes and reads a buffer several times any last-level cache, so that what the next timed
    method reads comes from memory, not from lines the method timed before it left in the cache."""
    if not _EVICTION:
        _EVICTION.append(np.zeros(nbytes // 8, dtype=np.int64))
    _EVICTION[0] += 1
    _EVICTION[0].sum()


def median_stream(fn: Callable[[int], Any], count: int) -> float:
    """Median seconds of fn(1) ... fn(count - 1), each timed once after the caches were evicted and
    fn(0) ran untimed: batches of queries never seen, as a stream of searches meets an index larger
    than the caches (a batch repeated finds its lists in cache)."""
    evict_caches()
    fn(0)
    return float(np.median([timed(lambda i=i: fn(i)) for i in range(1, count)]))


# --- competitors ----------------------------------------------------------------------------

def numba_distances():
    """What a Python user writes with numba: a SWAR popcount loop (None without numba)."""
    try:
        import numba
    except ImportError:
        return None

    @numba.njit(cache=False)
    def distances(xb64, q64):  # pragma: no cover - compiled
        n, w = xb64.shape
        d = np.empty(n, np.int32)
        for i in range(n):
            s = 0
            for j in range(w):
                x = xb64[i, j] ^ q64[j]
                # SWAR popcount: numba exposes no popcount intrinsic.
                x = x - ((x >> 1) & 0x5555555555555555)
                x = (x & 0x3333333333333333) + ((x >> 2) & 0x3333333333333333)
                x = (x + (x >> 4)) & 0x0F0F0F0F0F0F0F0F
                s += (x * 0x0101010101010101) >> 56
            d[i] = s
        return d

    return distances


def numpy_distances(xb: np.ndarray, q: np.ndarray) -> np.ndarray:
    """What a Python user writes with numpy: XOR, a byte popcount table, a sum."""
    return POPCOUNT8[np.bitwise_xor(xb, q)].sum(1, dtype=np.int32)


def _topk(d: np.ndarray, k: int) -> np.ndarray:
    k2 = min(k, len(d))
    out = np.full(k, hashindex.PAD_DISTANCE, dtype=np.int64)
    out[:k2] = np.sort(np.partition(d, k2 - 1)[:k2])
    return out


def _faiss_hash(faiss, x, b, hash_bits, nflip):
    index = faiss.IndexBinaryHash(b, min(hash_bits, b))
    index.nflip = nflip
    index.add(x)
    return index


def _faiss_multihash(faiss, nflip, x, b):
    # The same substring split as our MIH: one table per ~log2(n) bits.
    bits = max(8, min(32, int(np.log2(max(len(x), 2)))))
    nhash = max(1, b // bits)
    index = faiss.IndexBinaryMultiHash(b, nhash, b // nhash)
    index.nflip = nflip
    index.add(x)
    return index


def _faiss_hnsw(faiss, x, b):
    index = faiss.IndexBinaryHNSW(b, 16)
    index.add(x)
    return index


def _nlist(n: int) -> int:
    """Inverted lists for n codes: about sqrt(n), as faiss's guidelines suggest."""
    return max(1, int(np.sqrt(n)))


def _ivf_ours(x: np.ndarray, b: int) -> hashindex.IVFIndex:
    index = hashindex.IVFIndex(b, _nlist(len(x)))
    index.train(x[:100_000])
    index.add(x)
    return index


def _ivf_faiss(faiss: Any, x: np.ndarray, b: int) -> Any:
    index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(b), b, _nlist(len(x)))
    index.train(x[:100_000])
    index.add(x)
    index.nprobe = IVF_NPROBE
    return index


IVF_NPROBE = 8


def competitors() -> tuple[list[Method], list[str]]:
    """The methods beyond ``hashindex bench``'s this environment can run, and notes on the others."""
    out = [Method(f"hashindex.IVFIndex(nlist=sqrt(n),nprobe={IVF_NPROBE})", _ivf_ours,
                  lambda ix, q, k, t: ix.search(q, k, nprobe=IVF_NPROBE, threads=t).distances, False, False, 10**8,
                  serialized=lambda ix: len(ix.to_bytes()))]
    notes = []
    faiss = import_faiss()
    if faiss is not None:
        out.append(Method(f"faiss.IndexBinaryIVF(nlist=sqrt(n),nprobe={IVF_NPROBE})",
                          lambda x, b: _ivf_faiss(faiss, x, b), faiss_search(faiss), False, False, 10**8,
                          serialized=faiss_bytes(faiss)))
        search, size = faiss_search(faiss), faiss_bytes(faiss)
        out.append(Method("faiss.IndexBinaryHash(b=16,nflip=2)", lambda x, b: _faiss_hash(faiss, x, b, 16, 2), search,
                          False, False, 10**8, serialized=size))
        for nflip in (0, 2):
            out.append(Method(f"faiss.IndexBinaryMultiHash(nflip={nflip})",
                              lambda x, b, nflip=nflip: _faiss_multihash(faiss, nflip, x, b), search, False, False,
                              10**8, serialized=size))
        out.append(Method("faiss.IndexBinaryHNSW(M=16)", lambda x, b: _faiss_hnsw(faiss, x, b), search, False, False,
                          200_000, serialized=size))
    out.append(Method("numpy brute force", lambda x, b: x,
                      lambda x, q, k, t: np.stack([_topk(numpy_distances(x, row), k) for row in q]),
                      True, True, 1_000_000, max_queries=20))
    numba_d = numba_distances()
    if numba_d is None:
        notes.append("numba is not installed: the numba row is left out (pip install '.[bench]')")
    else:
        def nb_build(x, b):
            if b % 64:
                raise Skip("numba baseline needs nbits divisible by 64")
            xb = np.ascontiguousarray(x).view(np.uint64)
            numba_d(xb[:2], xb[0])  # compile outside the timings
            return xb

        out.append(Method("numba brute force", nb_build,
                          lambda xb, q, k, t: np.stack([_topk(numba_d(xb, row), k)
                                                        for row in np.ascontiguousarray(q).view(np.uint64)]),
                          True, True, 10_000_000, max_queries=50))
    return out, notes


# --- the run --------------------------------------------------------------------------------

def thread_scaling(record: dict, wanted: list[Method], n: int, nbits: int, nq: int, k: int, seed: int,
                   log: Callable[[str], None] = print) -> None:
    """Batch queries/s of each exhaustive method at 1, 2 and all threads (uniform codes)."""
    xb, xq = dataset("uniform", n, nbits, nq, seed)
    record["scaling"] = []
    for method in wanted:
        if not method.exhaustive or method.max_queries is not None or len(xb) > method.max_n:
            continue
        obj = method.build(xb, nbits)
        counts = sorted({1, 2, hashindex.available_threads()})
        # One batch timed once swung 20 % between runs on a shared host: medians of turns instead.
        seconds = medians_interleaved({str(t): lambda _, t=t: method.search(obj, xq, k, t) for t in counts}, 15, block=3)
        for t in counts:
            rate = len(xq) / seconds[str(t)]
            record["scaling"].append({"method": method.name, "threads": t, "n": n, "nbits": nbits, "queries_per_s": rate})
            log(f"threads {t}: {method.name:<38} {rate:>10.0f} q/s  (uniform, {nbits} bits, N={n}, median of 15)")


def run_all(args: argparse.Namespace) -> dict:
    """``hashindex bench``'s run with every competitor, then thread scaling and plots."""
    more, notes = competitors()
    data, out = run(args, competitors=more, notes=notes)
    preset = PRESETS[args.preset]
    wanted = [m for m in methods(data["k"]) + more
              if not args.methods or any(s.lower() in m.name.lower() for s in args.methods)]
    thread_scaling(data, wanted, max(args.n or preset["sizes"]), (args.nbits or preset["nbits"])[0], data["queries"],
                   data["k"], args.seed)
    out.write_text(json.dumps(data, indent=1))
    if not args.no_plots:
        try:
            for path in plot(data, out.with_suffix("")):
                print(f"plot: {path}")
        except ImportError:
            print("note: matplotlib is not installed: no plots (pip install '.[bench]')")
    return data


def plot(data: dict, stem: Path) -> list[Path]:
    """latency vs N (p50, per method) and recall vs queries/s, one panel per dataset x nbits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = data["results"]
    panels = sorted({(r["dataset"], r["nbits"]) for r in rows})
    paths: list[Path] = []
    for what, fname in (("latency", "latency_vs_n.png"), ("recall", "recall_vs_qps.png")):
        if not panels:
            break
        fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
        for ax, (kind, nbits) in zip(axes[0], panels):
            sub = [r for r in rows if r["dataset"] == kind and r["nbits"] == nbits]
            for name in sorted({r["method"] for r in sub}):
                mine = sorted((r for r in sub if r["method"] == name), key=lambda r: r["n"])
                if what == "latency":
                    ax.plot([r["n"] for r in mine], [r["p50_ms"] for r in mine], marker="o", label=name)
                else:
                    ax.scatter([r["queries_per_s"] for r in mine], [r.get("recall_at_k", np.nan) for r in mine], label=name)
            ax.set_xscale("log")
            if what == "latency":
                ax.set(yscale="log", xlabel="database size N", ylabel="single-query latency p50 (ms)")
            else:
                ax.set(xlabel="batch queries / s", ylabel=f"recall@{data['k']}", ylim=(-0.02, 1.02))
            ax.set_title(f"{kind}, {nbits} bits", fontsize=10)
            ax.grid(alpha=0.3)
        axes[0][-1].legend(fontsize=7, loc="best")
        fig.suptitle(f"{data['machine']['cpu']} ({data['threads']} threads)", fontsize=9)
        fig.tight_layout()
        path = Path(f"{stem}_{fname}")
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


def markdown(data: dict) -> str:
    """The record as Markdown tables (one per dataset x code length), for RESULTS.md."""
    m = data["machine"]
    lines = [f"Machine: {m['cpu']}, {m['cpus']} CPUs, SIMD level {m['simd_level']}, versions {m['versions']}.",
             f"Command: `{data['command']}` (k = {data['k']}, {data['queries']} batch queries, {data['single']} "
             f"single queries timed one by one, {data['threads']} threads).", ""]
    roof = data.get("roofline")
    if roof:
        lines += [f"Roofline: XOR+popcount peak (register-resident data, {m['simd_level']}) "
                  f"{roof['xor_popcount_peak_gbps_1thread']:.1f} GB/s on one thread, {roof['xor_popcount_peak_gbps']:.1f} "
                  f"on {data['threads']}; memory read {roof['memory_read_gbps']:.1f} GB/s (plain read loop, 256 MiB, all "
                  "threads). `GB/s` below: database bytes compared per second in the batch run (exhaustive methods).", ""]
    rows = data["results"]
    for kind, nbits in sorted({(r["dataset"], r["nbits"]) for r in rows}):
        lines += [f"### {kind}, {nbits} bits", "",
                  "| N | method | build s | batch q/s | p50 ms | p95 ms | p99 ms | recall@k | bytes/code (index, RSS) | GB/s |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|---|---|"]
        for r in sorted((r for r in rows if r["dataset"] == kind and r["nbits"] == nbits), key=lambda r: r["n"]):
            ib = r.get("index_bytes_per_code")
            gbps = "-"
            if "compared_gbps" in r:
                gbps = f"{r['compared_gbps']:.1f}"
                if roof:  # share of memory read and of the popcount peak
                    gbps += (f" ({r['compared_gbps'] / roof['memory_read_gbps']:.0%} of mem, "
                             f"{r['compared_gbps'] / roof['xor_popcount_peak_gbps']:.0%} of peak)")
            lines.append(f"| {r['n']:,} | {r['method']} | {r['build_s']:.2f} | {r['queries_per_s']:,.0f} | "
                         f"{r['p50_ms']:.3f} | {r['p95_ms']:.3f} | {r['p99_ms']:.3f} | "
                         f"{r.get('recall_at_k', float('nan')):.3f} | {'-' if ib is None else f'{ib:.1f}'}, "
                         f"{r['rss_bytes_per_code']:.1f} | {gbps} |")
        lines.append("")
    if data.get("scaling"):
        lines += ["### Threads (batch q/s)", "", "| method | N | bits | threads | q/s |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {r['method']} | {r['n']:,} | {r['nbits']} | {r['threads']} | {r['queries_per_s']:,.0f} |"
                  for r in data["scaling"]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bench_arguments(p)
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--markdown", metavar="RECORD", help="print an existing JSON record as Markdown tables, and exit")
    args = p.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return 0
    try:
        return execute(args, run_all)
    except ValueError as exc:
        p.error(str(exc))


if __name__ == "__main__":
    sys.exit(main())
