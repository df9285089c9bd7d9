"""``hashindex bench``: retrieval latency and recall of this library and its competitors, same process,
same data.

For every dataset x code length x database size: build time, bytes per code (serialised by the index,
and the process RSS delta), batch throughput, single-query latency percentiles, recall@k against the
exact answer, and for the exhaustive methods their bytes compared per second against the machine's
XOR+popcount peak (register-resident data, the active SIMD level) and memory read bandwidth (the
roofline). Every finished measurement is
appended to the JSON record at once, so an interrupted run keeps what it measured.

faiss-cpu and numba are optional (``pip install 'hashindex[bench]'``): a missing competitor is
named in the log and the record. Datasets besides ``uniform``, ``clustered`` and ``npy`` come from
installed packages through the ``hashindex.bench_datasets`` entry-point group (the encoder adds
``encoder``, its codes of the demo's phantom slices); this module never imports them otherwise.

The benchmark scripts in the repository's ``benchmarks/`` folder use the helpers here too (``timed``,
``machine_info``, ``write_json``): this module is the one home of the harness.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np

import hashindex

from ._plugins import entry_points

PRESETS: dict[str, dict[str, Any]] = {
    # Smoke check: well under a minute on 2 cores.
    "quick": dict(sizes=[10_000, 100_000], nbits=[64, 256], datasets=["uniform", "clustered"], queries=200, single=100, k=10),
    # The run behind benchmarks/RESULTS.md.
    "full": dict(sizes=[10_000, 100_000, 1_000_000, 10_000_000], nbits=[64, 256], datasets=["uniform", "clustered"],
                 queries=1000, single=300, k=10),
}
POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


# --- data -----------------------------------------------------------------------------------

def make_codes(rng: np.random.Generator, n: int, nbits: int, kind: str, centres: np.ndarray | None = None) -> np.ndarray:
    """Uniform codes, or clustered ones: a centre with 0-4 flipped bits (what real hashes look like:
    near-duplicates around modes)."""
    nbytes = nbits // 8
    if kind == "uniform":
        return rng.integers(0, 256, (n, nbytes), dtype=np.uint8)
    if kind != "clustered":
        raise ValueError(f"kind: expected 'uniform' or 'clustered', got {kind!r}")
    if centres is None:
        centres = rng.integers(0, 256, (max(1, n // 100), nbytes), dtype=np.uint8)
    x = centres[rng.integers(0, len(centres), n)].copy()
    flips = rng.integers(0, 5, n)
    rows = np.arange(n)
    for j in range(4):
        sel = rows[flips > j]
        x[sel, rng.integers(0, nbytes, len(sel))] ^= np.left_shift(1, rng.integers(0, 8, len(sel))).astype(np.uint8)
    return x


DATASET_ENTRY_POINTS = "hashindex.bench_datasets"
BUILT_IN_DATASETS = ("uniform", "clustered", "npy")


def plugin_datasets() -> dict[str, Any]:
    """name -> entry point of the datasets that installed packages add (loaded only when used)."""
    return {e.name: e for e in entry_points(DATASET_ENTRY_POINTS) if e.name not in BUILT_IN_DATASETS}


def dataset(kind: str, n: int, nbits: int, nq: int, seed: int, npy: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(database, queries) of one dataset kind; queries come from the same distribution."""
    rng = np.random.default_rng([seed, n, nbits])
    if kind == "npy":
        if npy is None:
            raise ValueError("--dataset npy needs --npy FILE")
        codes = np.load(npy, mmap_mode="r")
        if codes.dtype != np.uint8 or codes.ndim != 2:
            raise ValueError(f"--npy: expected packed uint8 codes of shape (n, nbits/8), got {codes.dtype} {codes.shape}")
        pick = rng.permutation(len(codes))
        return np.ascontiguousarray(codes[np.sort(pick[nq:nq + n])]), np.ascontiguousarray(codes[pick[:nq]])
    if kind not in ("uniform", "clustered"):
        plugins = plugin_datasets()
        if kind not in plugins:
            raise ValueError(f"dataset: expected one of {sorted(BUILT_IN_DATASETS + tuple(plugins))}, got {kind!r}")
        return plugins[kind].load()(n, nq, seed)
    centres = rng.integers(0, 256, (max(1, n // 100), nbits // 8), dtype=np.uint8) if kind == "clustered" else None
    return make_codes(rng, n, nbits, kind, centres), make_codes(rng, nq, nbits, kind, centres)


def timed(fn) -> float:
    """Seconds one call of fn takes."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def median_seconds(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls of fn, after one untimed call (warm caches, pages)."""
    fn()
    return float(np.median([timed(fn) for _ in range(repeats)]))


def median_each(fn, count: int) -> float:
    """Median seconds of fn(0), fn(1), ..., fn(count - 1), each timed alone (after an untimed fn(0))."""
    fn(0)
    return float(np.median([timed(lambda i=i: fn(i)) for i in range(count)]))


def medians_interleaved(fns: dict[str, Callable[[int], Any]], count: int, block: int = 10) -> dict[str, float]:
    """Median seconds of each fn over fn(0) ... fn(count - 1), the methods taking turns every
    ``block`` calls (after an untimed call each): on a shared host a slow spell then hits every
    method alike, where timing all of one method's calls before another's put one method at 1.9x
    its time. Turns of a block, not of one call, leave each method its warm caches."""
    for fn in fns.values():
        fn(0)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for start in range(0, count, block):
        for name, fn in fns.items():
            times[name] += [timed(lambda i=i, fn=fn: fn(i)) for i in range(start, min(count, start + block))]
    return {name: float(np.median(t)) for name, t in times.items()}


def script_parser(description: str, *, n: int | list[int], nq: int = 200, single: int = 100,
                  repeats: int = 5) -> argparse.ArgumentParser:
    """The options the scripts in benchmarks/ share: --n (one size, or several when ``n`` is a list),
    --nq (batch), --single (queries timed alone), --k, --repeats, --quick, --json."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    if isinstance(n, list):
        p.add_argument("--n", type=int, nargs="+", default=n)
    else:
        p.add_argument("--n", type=int, default=n)
    p.add_argument("--nq", type=int, default=nq)
    p.add_argument("--single", type=int, default=single)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--repeats", type=int, default=repeats)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default=None)
    return p


def write_json(result: dict[str, Any], prefix: str, path: str | None) -> str:
    """Writes a benchmark script's record (default ./benchmark-results/<prefix>-<time>.json)."""
    result["when"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    path = path or os.path.join("benchmark-results", f"{prefix}-{datetime.now():%Y%m%d-%H%M%S}.json")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"JSON record: {path}")
    return path


# --- measures -------------------------------------------------------------------------------

def recall_at_k(found_distances: np.ndarray, exact_distances: np.ndarray) -> float:
    """Share of the k results that are true k nearest neighbours, a result at the exact k-th distance
    counting as one (with duplicates, which id the exact answer chose among ties is arbitrary).
    Padding (a missing result) counts as a miss."""
    kth = exact_distances[:, -1:]
    k = exact_distances.shape[1]
    return float(np.minimum((found_distances <= kth).sum(1), k).mean() / k)


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def percentiles(values: list[float]) -> dict[str, float]:
    a = np.asarray(values) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)), "p99_ms": float(np.percentile(a, 99))}


def roofline(threads: int) -> dict[str, float]:
    """The ceilings an exhaustive scan's compared-bytes rate is measured against, GB/s: the active
    SIMD level's XOR+popcount+add rate on register-resident data (no loads: only the popcount unit
    limits it; one thread and all ``threads``), and memory read bandwidth (a plain read loop over
    256 MiB). A scan can approach the first and never pass it."""
    return {"xor_popcount_peak_gbps_1thread": hashindex._core.popcount_peak(1),
            "xor_popcount_peak_gbps": hashindex._core.popcount_peak(threads),
            "memory_read_gbps": hashindex._core.read_bandwidth(1 << 28, threads, 5)}


# --- competitors ----------------------------------------------------------------------------

@dataclass
class Method:
    name: str
    build: Callable[[np.ndarray, int], Any]  # (codes, nbits) -> searchable object
    search: Callable[[Any, np.ndarray, int, int], np.ndarray]  # (obj, queries, k, threads) -> distances
    exact: bool
    exhaustive: bool
    max_n: int  # affordable database size
    max_queries: int | None = None  # batch size cap (slow baselines)
    serialized: Callable[[Any], int] | None = None


def import_faiss(required: bool = False) -> Any:
    """faiss, imported the one way every benchmark does: OpenMP told first (it must be, before faiss
    loads it) to let its idle threads sleep. Spinning, they took the second core from whatever ran
    next: our 2-thread searches ran up to 2x slower right after a faiss call. None if faiss-cpu is
    missing, or exit with how to install it when ``required``."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import faiss
    except ImportError:
        if required:
            sys.exit("faiss-cpu is required: pip install '.[bench]'")
        return None
    return faiss


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


def _topk_distances(d: np.ndarray, k: int) -> np.ndarray:
    k2 = min(k, len(d))
    out = np.full(k, hashindex.PAD_DISTANCE, dtype=np.int64)
    out[:k2] = np.sort(np.partition(d, k2 - 1)[:k2])
    return out


def missing_competitors() -> list[str]:
    """What this environment cannot run, and how to get it."""
    out = []
    if import_faiss() is None:
        out.append("faiss-cpu is not installed: the faiss rows are left out (pip install 'hashindex[bench]')")
    if numba_distances() is None:
        out.append("numba is not installed: the numba row is left out (pip install 'hashindex[bench]')")
    return out


def methods(k: int) -> list[Method]:
    """Every competitor this environment can run (see ``missing_competitors`` for the others)."""
    out = [
        Method("hashindex.FlatIndex", lambda x, b: _ours(hashindex.FlatIndex(b), x),
               lambda ix, q, k, t: ix.search(q, k, threads=t).distances, True, True, 10**9,
               serialized=lambda ix: len(ix.to_bytes())),
        Method("hashindex.MIHIndex", lambda x, b: _ours(hashindex.MIHIndex(b), x),
               lambda ix, q, k, t: ix.search(q, k, threads=t).distances, True, False, 10**9,
               serialized=lambda ix: len(ix.to_bytes())),
        Method("hashindex.MultiFieldIndex (1 field)", lambda x, b: _multi(x, b),
               lambda ix, q, k, t: ix.search({"code": q}, k, threads=t).distances, True, True, 10**9,
               serialized=lambda ix: len(ix.to_bytes())),
    ]
    faiss = import_faiss()
    if faiss is not None:
        def fsearch(ix, q, k, t):
            faiss.omp_set_num_threads(t)
            return ix.search(q, k)[0]

        ser = lambda ix: int(faiss.serialize_index_binary(ix).size)  # noqa: E731
        out.append(Method("faiss.IndexBinaryFlat", lambda x, b: _faiss_add(faiss.IndexBinaryFlat(b), x), fsearch,
                          True, True, 10**9, serialized=ser))
        out.append(Method("faiss.IndexBinaryHash(b=16,nflip=2)", lambda x, b: _faiss_hash(faiss, x, b, 16, 2), fsearch,
                          False, False, 10**8, serialized=ser))
        for nflip in (0, 2):
            build: Callable[[np.ndarray, int], Any] = partial(_multihash_build, faiss, nflip)
            out.append(Method(f"faiss.IndexBinaryMultiHash(nflip={nflip})", build, fsearch, False, False,
                              10**8, serialized=ser))
        out.append(Method("faiss.IndexBinaryHNSW(M=16)", lambda x, b: _faiss_add(faiss.IndexBinaryHNSW(b, 16), x),
                          fsearch, False, False, 200_000, serialized=ser))
    out.append(Method("numpy brute force", lambda x, b: x,
                      lambda x, q, k, t: np.stack([_topk_distances(POPCOUNT8[x ^ row].sum(1, dtype=np.int32), k) for row in q]),
                      True, True, 1_000_000, max_queries=20))
    numba_d = numba_distances()
    if numba_d is not None:
        def nb_build(x, b):
            if b % 64:
                raise _Skip("numba baseline needs nbits divisible by 64")
            xb = np.ascontiguousarray(x).view(np.uint64)
            numba_d(xb[:2], xb[0])  # compile outside the timings
            return xb

        out.append(Method("numba brute force", nb_build,
                          lambda xb, q, k, t: np.stack([_topk_distances(numba_d(xb, row), k)
                                                        for row in np.ascontiguousarray(q).view(np.uint64)]),
                          True, True, 10_000_000, max_queries=50))
    return out


class _Skip(Exception):
    pass


def _ours(index, x):
    index.add(x)
    return index


def _multi(x, b):
    index = hashindex.MultiFieldIndex({"code": b})
    index.add({"code": x})
    return index


def _faiss_add(index, x):
    index.add(x)
    return index


def _faiss_hash(faiss, x, b, hash_bits, nflip):
    index = faiss.IndexBinaryHash(b, min(hash_bits, b))
    index.nflip = nflip
    index.add(x)
    return index


def _multihash_build(faiss, nflip, x, b):
    return _faiss_multihash(faiss, x, b, nflip)


def _faiss_multihash(faiss, x, b, nflip):
    # The same substring split as our MIH: one table per ~log2(n) bits.
    bits = max(8, min(32, int(np.log2(max(len(x), 2)))))
    nhash = max(1, b // bits)
    index = faiss.IndexBinaryMultiHash(b, nhash, b // nhash)
    index.nflip = nflip
    index.add(x)
    return index


# --- the run --------------------------------------------------------------------------------

def machine_info() -> dict[str, Any]:
    flags: list[str] = []
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = sorted(x for x in line.split(":", 1)[1].split() if x.startswith(("avx", "popcnt", "sse4")))
                    break
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    versions = {"numpy": np.__version__, "hashindex": hashindex.__version__}
    faiss = import_faiss()
    if faiss is not None:
        versions["faiss"] = faiss.__version__
    try:
        import numba

        versions["numba"] = numba.__version__
    except ImportError:
        pass
    return {"platform": platform.platform(), "cpu": model, "cpu_flags": flags,
            "cpus": os.cpu_count(), "threads": hashindex.available_threads(), "simd_level": hashindex.simd_level(),
            "python": platform.python_version(), "versions": versions}


class Record:
    """The JSON record, rewritten after every measurement (atomic), so an interrupted run keeps it."""

    def __init__(self, path: Path, header: dict):
        self.path, self.data = path, {**header, "results": [], "scaling": [], "complete": False}
        self.flush()

    def add(self, key: str, row: dict) -> None:
        self.data[key].append(row)
        self.flush()

    def flush(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        os.replace(tmp, self.path)


def measure(method: Method, xb: np.ndarray, xq: np.ndarray, nbits: int, k: int, threads: int, single: int,
            exact: np.ndarray | None) -> dict:
    gc.collect()
    before = rss_bytes()
    t = time.perf_counter()
    obj = method.build(xb, nbits)
    build = time.perf_counter() - t
    rss = rss_bytes() - before
    nq = len(xq) if method.max_queries is None else min(len(xq), method.max_queries)
    method.search(obj, xq[:2], k, threads)  # warm-up
    t = time.perf_counter()
    batch_d = method.search(obj, xq[:nq], k, threads)
    batch = time.perf_counter() - t
    lat = []
    for i in range(min(single, nq)):
        q = xq[i:i + 1]
        t = time.perf_counter()
        method.search(obj, q, k, threads)
        lat.append(time.perf_counter() - t)
    row = {"method": method.name, "exact": method.exact, "build_s": build, "queries_per_s": nq / batch,
           "batch_queries": nq, **percentiles(lat), "rss_bytes_per_code": rss / len(xb),
           "index_bytes_per_code": (method.serialized(obj) / len(xb)) if method.serialized else None}
    if exact is not None:
        row["recall_at_k"] = recall_at_k(np.asarray(batch_d)[:, :k], exact[:nq])
    if method.exhaustive:
        row["compared_gbps"] = xb.nbytes * nq / batch / 1e9
    del obj
    return row


def run(args: argparse.Namespace, log: Callable[[str], None] = print) -> dict:
    preset = PRESETS[args.preset]
    sizes = args.n or preset["sizes"]
    nbits_list = args.nbits or preset["nbits"]
    datasets = args.dataset or preset["datasets"]
    nq = args.queries or preset["queries"]
    single = args.single or preset["single"]
    k = args.k or preset["k"]
    threads = args.threads or hashindex.available_threads()
    out = Path(args.out) if args.out else Path("hashindex-bench") / f"bench-{datetime.now():%Y%m%d-%H%M%S}.json"
    header = {"command": " ".join(sys.argv), "preset": args.preset, "k": k, "queries": nq, "single": single,
              "threads": threads, "machine": machine_info(), "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    record = Record(out, header)
    log(f"machine: {header['machine']['cpu']}, SIMD {header['machine']['simd_level']}, {threads} threads; "
        f"record: {out}")
    record.data["roofline"] = roofline(threads)
    record.flush()
    log("roofline: XOR+popcount peak {xor_popcount_peak_gbps_1thread:.1f} GB/s on one thread, "
        "{xor_popcount_peak_gbps:.1f} GB/s on all; memory read {memory_read_gbps:.1f} GB/s".format(**record.data["roofline"]))
    wanted = [m for m in methods(k) if not args.methods or any(s.lower() in m.name.lower() for s in args.methods)]
    record.data["missing"] = missing_competitors()
    for line in record.data["missing"]:
        log(f"note: {line}")
    head = f"{'dataset':<10}{'bits':>5}{'N':>10}  {'method':<38}{'build s':>9}{'q/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'recall':>7}{'B/code':>8}"
    log(head)
    for kind in datasets:
        # encoder and npy codes come with their own length: one pass, whatever --nbits says
        for nbits in (nbits_list if kind in ("uniform", "clustered") else nbits_list[:1]):
            for n in sizes:
                try:
                    xb, xq = dataset(kind, n, nbits, nq, args.seed, getattr(args, "npy", None))
                except FileNotFoundError as exc:
                    log(f"{kind}: skipped ({exc})")
                    continue
                nbits_here = xb.shape[1] * 8
                exact = hashindex.FlatIndex(nbits_here)
                exact.add(xb)
                truth = exact.search(xq, k).distances
                del exact
                for method in wanted:
                    if len(xb) > method.max_n:
                        continue
                    try:
                        row = measure(method, xb, xq, nbits_here, k, threads, single, truth)
                    except _Skip as why:
                        log(f"  {method.name}: skipped ({why})")
                        continue
                    row.update(dataset=kind, nbits=nbits_here, n=len(xb))
                    record.add("results", row)
                    log(f"{kind:<10}{nbits_here:>5}{len(xb):>10}  {method.name:<38}{row['build_s']:>9.2f}"
                        f"{row['queries_per_s']:>10.0f}{row['p50_ms']:>9.3f}{row['p99_ms']:>9.3f}"
                        f"{row.get('recall_at_k', float('nan')):>7.3f}{row['index_bytes_per_code'] or float('nan'):>8.1f}")
    _thread_scaling(record, wanted, max(sizes), nbits_list[0], nq, k, args.seed, log)
    record.data["complete"] = True
    record.flush()
    if not args.no_plots:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            log("note: matplotlib is not installed: no plots (pip install 'hashindex[bench]')")
        else:
            for path in plot(record.data, out.with_suffix("")):
                log(f"plot: {path}")
    return record.data


def _batch(method: Method, obj: Any, xq: np.ndarray, k: int, threads: int) -> Callable[[int], Any]:
    return lambda _: method.search(obj, xq, k, threads)


def _thread_scaling(record: Record, wanted: list[Method], n: int, nbits: int, nq: int, k: int, seed: int, log) -> None:
    xb, xq = dataset("uniform", n, nbits, nq, seed)
    for method in wanted:
        if not method.exhaustive or method.max_queries is not None or len(xb) > method.max_n:
            continue
        obj = method.build(xb, nbits)
        counts = sorted({1, 2, hashindex.available_threads()})
        # One batch timed once swung 20 % between runs on a shared host: medians of turns instead.
        seconds = medians_interleaved({str(t): _batch(method, obj, xq, k, t) for t in counts}, 15, block=3)
        for t in counts:
            rate = len(xq) / seconds[str(t)]
            record.add("scaling", {"method": method.name, "threads": t, "n": n, "nbits": nbits, "queries_per_s": rate})
            log(f"threads {t}: {method.name:<38} {rate:>10.0f} q/s  (uniform, {nbits} bits, N={n}, median of 15)")


def plot(data: dict, stem: Path) -> list[Path]:
    """latency vs N (p50, per method) and recall vs queries/s, one panel per dataset x nbits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = data["results"]
    panels = sorted({(r["dataset"], r["nbits"]) for r in rows})
    paths: list[Path] = []
    if not panels:
        return paths
    for what, fname in (("latency", "latency_vs_n.png"), ("recall", "recall_vs_qps.png")):
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
                ax.set_yscale("log")
                ax.set_xlabel("database size N")
                ax.set_ylabel("single-query latency p50 (ms)")
            else:
                ax.set_xlabel("batch queries / s")
                ax.set_ylabel(f"recall@{data['k']}")
                ax.set_ylim(-0.02, 1.02)
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
    """The record as Markdown tables (one per dataset x code length), for benchmarks/RESULTS.md."""
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
            index_bytes = "-" if ib is None else f"{ib:.1f}"
            gbps = "-"
            if "compared_gbps" in r:
                gbps = f"{r['compared_gbps']:.1f}"
                if roof and "xor_popcount_peak_gbps" in roof:  # share of memory read and of the popcount peak
                    gbps += (f" ({r['compared_gbps'] / roof['memory_read_gbps']:.0%} of mem, "
                             f"{r['compared_gbps'] / roof['xor_popcount_peak_gbps']:.0%} of peak)")
            lines.append(f"| {r['n']:,} | {r['method']} | {r['build_s']:.2f} | {r['queries_per_s']:,.0f} | "
                         f"{r['p50_ms']:.3f} | {r['p95_ms']:.3f} | {r['p99_ms']:.3f} | "
                         f"{r.get('recall_at_k', float('nan')):.3f} | {index_bytes}, {r['rss_bytes_per_code']:.1f} | {gbps} |")
        lines.append("")
    if data.get("scaling"):
        lines += ["### Threads (batch q/s)", "", "| method | N | bits | threads | q/s |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {r['method']} | {r['n']:,} | {r['nbits']} | {r['threads']} | {r['queries_per_s']:,.0f} |"
                  for r in data["scaling"]]
    return "\n".join(lines)


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= minimum, refused while parsing (before anything is written)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value
    return parse


def _code_length(text: str) -> int:
    from ._validate import nbits_arg

    try:
        return nbits_arg(_count(8)(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", choices=sorted(PRESETS), default="quick", help="quick: < 1 min; full: RESULTS.md")
    p.add_argument("--quick", dest="preset", action="store_const", const="quick")
    p.add_argument("--full", dest="preset", action="store_const", const="full")
    p.add_argument("--n", type=_count(1), nargs="+", help="database sizes (default: the preset's)")
    p.add_argument("--nbits", type=_code_length, nargs="+", help="code lengths in bits (multiples of 8)")
    p.add_argument("--dataset", nargs="+", choices=sorted(BUILT_IN_DATASETS + tuple(plugin_datasets())),
                   help="uniform, clustered, npy, or one an installed package adds (the encoder: encoder)")
    p.add_argument("--npy", help="packed uint8 codes (n, nbits/8) for --dataset npy")
    p.add_argument("--queries", type=_count(1), help="batch queries")
    p.add_argument("--single", type=_count(1), help="single queries timed one by one (latency percentiles)")
    p.add_argument("--k", type=_count(1))
    p.add_argument("--threads", type=_count(1), help="default: every available core")
    p.add_argument("--methods", nargs="+", help="only methods whose name contains one of these")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="JSON record (default hashindex-bench/bench-<time>.json); plots beside it")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--markdown", metavar="RECORD", help="print an existing JSON record as Markdown tables, and exit")


def execute(args: argparse.Namespace) -> int:
    """Runs parsed arguments (shared by ``hashindex bench`` and ``python -m benchmarks``)."""
    if args.markdown:
        print(markdown(json.loads(Path(args.markdown).read_text())))
        return 0
    if args.dataset and "npy" in args.dataset and not args.npy:
        raise ValueError("--dataset npy needs --npy FILE")
    try:
        run(args)
    except KeyboardInterrupt:
        print("interrupted: the JSON record holds every finished measurement", file=sys.stderr)
        return 130
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hashindex bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return execute(args)
    except ValueError as exc:
        p.error(str(exc))
