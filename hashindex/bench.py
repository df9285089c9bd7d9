"""``hashindex bench``: retrieval latency and recall of this library against faiss, same process, same
data.

For every dataset x code length x database size: build time, bytes per code (serialised by the index,
and the process RSS delta), batch throughput, single-query latency percentiles, recall@k against the
exact answer, and for the exhaustive methods their bytes compared per second against the machine's
XOR+popcount peak and memory read bandwidth (the roofline); then thread scaling. Every finished
measurement is appended to the JSON record at once, so an interrupted run keeps what it measured.

faiss-cpu is optional (``pip install 'hashindex[bench]'``): without it the record says so. Datasets
besides ``uniform``, ``clustered`` and ``npy`` come from installed packages through the
``hashindex.bench_datasets`` entry-point group (the encoder adds ``encoder``).

This module is also the timing helper every script under the repository's ``benchmarks/`` uses
(warm-up, medians, faiss's OpenMP policy set in one place); ``python -m benchmarks`` adds the other
competitors (faiss's hashing and HNSW indexes, numba), plots and Markdown (``benchmarks/harness.py``).
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np

import hashindex

from ._measure import (  # noqa: F401  (the scripts' helpers, one import path)
    import_faiss,
    let_faiss_sleep,
    machine_info,
    median_each,
    median_seconds,
    medians_interleaved,
    percentiles,
    recall_at_k,
    roofline,
    rss_bytes,
    timed,
    write_json,
)
from ._plugins import entry_points

PRESETS: dict[str, dict[str, Any]] = {
    # Smoke check: well under a minute on 2 cores.
    "quick": dict(sizes=[10_000, 100_000], nbits=[64, 256], datasets=["uniform", "clustered"], queries=200, single=100, k=10),
    # The run behind benchmarks/RESULTS.md.
    "full": dict(sizes=[10_000, 100_000, 1_000_000, 10_000_000], nbits=[64, 256], datasets=["uniform", "clustered"],
                 queries=1000, single=300, k=10),
}


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


# --- measures -------------------------------------------------------------------------------

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


def missing_competitors() -> list[str]:
    """What this environment cannot run, and how to get it."""
    if import_faiss() is None:
        return ["faiss-cpu is not installed: the faiss rows are left out (pip install 'hashindex[bench]')"]
    return []


def faiss_search(faiss: Any) -> Callable[[Any, np.ndarray, int, int], np.ndarray]:
    """A faiss index's search as a Method's: its threads set first, distances out."""
    def search(ix, q, k, t):
        faiss.omp_set_num_threads(t)
        return ix.search(q, k)[0]
    return search


def faiss_bytes(faiss: Any) -> Callable[[Any], int]:
    return lambda ix: int(faiss.serialize_index_binary(ix).size)


def methods(k: int) -> list[Method]:
    """This library's indexes, and faiss's exact flat index where installed."""
    out = [Method(name, build, search, True, exhaustive, 10**9, serialized=lambda ix: len(ix.to_bytes()))
           for name, build, search, exhaustive in [
               ("hashindex.FlatIndex", lambda x, b: _added(hashindex.FlatIndex(b), x),
                lambda ix, q, k, t: ix.search(q, k, threads=t).distances, True),
               ("hashindex.MIHIndex", lambda x, b: _added(hashindex.MIHIndex(b), x),
                lambda ix, q, k, t: ix.search(q, k, threads=t).distances, False),
               ("hashindex.MultiFieldIndex (1 field)", lambda x, b: _added(hashindex.MultiFieldIndex({"code": b}), {"code": x}),
                lambda ix, q, k, t: ix.search({"code": q}, k, threads=t).distances, True)]]
    faiss = import_faiss()
    if faiss is not None:
        out.append(Method("faiss.IndexBinaryFlat", lambda x, b: _added(faiss.IndexBinaryFlat(b), x), faiss_search(faiss),
                          True, True, 10**9, serialized=faiss_bytes(faiss)))
    return out


class Skip(Exception):
    """A method that cannot run on this case (raised by its build)."""


def _added(index, x):
    index.add(x)
    return index


# --- the run --------------------------------------------------------------------------------

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


def run(args: argparse.Namespace, log: Callable[[str], None] = print, competitors: list[Method] | None = None,
        notes: list[str] | None = None) -> tuple[dict, Path]:
    """Runs the preset (as args override it) over methods(k) and ``competitors``; the record and its path."""
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
    wanted = [m for m in methods(k) + (competitors or [])
              if not args.methods or any(s.lower() in m.name.lower() for s in args.methods)]
    record.data["missing"] = missing_competitors() + (notes or [])
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
                    except Skip as why:
                        log(f"  {method.name}: skipped ({why})")
                        continue
                    row.update(dataset=kind, nbits=nbits_here, n=len(xb))
                    record.add("results", row)
                    log(f"{kind:<10}{nbits_here:>5}{len(xb):>10}  {method.name:<38}{row['build_s']:>9.2f}"
                        f"{row['queries_per_s']:>10.0f}{row['p50_ms']:>9.3f}{row['p99_ms']:>9.3f}"
                        f"{row.get('recall_at_k', float('nan')):>7.3f}{row['index_bytes_per_code'] or float('nan'):>8.1f}")
    record.data["levels"] = every_level(max(sizes), nbits_list, nq, k, threads, args.seed, log)
    record.data["complete"] = True
    record.flush()
    return record.data, out


def every_level(n: int, nbits_list: list[int], nq: int, k: int, threads: int, seed: int,
                log: Callable[[str], None] = print) -> list[dict]:
    """FlatIndex's batch search at every SIMD level this host has (forced as HASHINDEX_SIMD forces
    it), against faiss at its own level and against that level's own XOR+popcount peak: where a user
    of any machine stands."""
    faiss, rows, best = import_faiss(), [], hashindex.simd_level()
    log(f"{'level':<8}{'bits':>5}{'N':>10}{'ms/query':>10}{'x faiss':>9}{'% of peak':>10}  (uniform, batch of {nq})")
    try:
        for nbits in nbits_list:
            xb, xq = dataset("uniform", n, nbits, nq, seed)
            index = _added(hashindex.FlatIndex(nbits), xb)
            faiss_s = None
            if faiss is not None:
                ref, search = _added(faiss.IndexBinaryFlat(nbits), xb), faiss_search(faiss)
                faiss_s = median_seconds(partial(search, ref, xq, k, threads), 3)
            for level in hashindex.supported_simd_levels():
                hashindex.set_simd_level(level)
                seconds = median_seconds(partial(index.search, xq, k, threads=threads), 3)
                share = xb.nbytes * nq / seconds / 1e9 / hashindex._core.popcount_peak(threads)
                rows.append({"level": level, "nbits": nbits, "n": n, "ms_per_query": seconds / nq * 1e3,
                             "x_faiss": faiss_s / seconds if faiss_s else None, "peak_share": share})
                log(f"{level:<8}{nbits:>5}{n:>10}{seconds / nq * 1e3:>10.4f}"
                    f"{faiss_s / seconds if faiss_s else float('nan'):>9.2f}{share:>10.0%}")
    finally:
        hashindex.set_simd_level(best)
    return rows


def execute(args: argparse.Namespace, run_args: Callable[[argparse.Namespace], Any] | None = None) -> int:
    """Runs parsed arguments (``hashindex bench``; ``python -m benchmarks`` passes its own run)."""
    if args.dataset and "npy" in args.dataset and not args.npy:
        raise ValueError("--dataset npy needs --npy FILE")
    try:
        (run_args or run)(args)
    except KeyboardInterrupt:
        print("interrupted: the JSON record holds every finished measurement", file=sys.stderr)
        return 130
    return 0
