"""How every benchmark measures (``hashindex bench`` and the scripts under ``benchmarks/``, which import
these through ``hashindex.bench``): one timing helper (a warm-up, medians, methods taking turns),
faiss imported one way, the machine described one way, records written one way."""
from __future__ import annotations

import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from typing import Any, Callable

import numpy as np

import hashindex


def timed(fn) -> float:
    """Seconds one call of fn takes."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def median_seconds(fn, repeats: int) -> float:
    """Median seconds of ``repeats`` calls of fn, after one untimed call (warm caches, pages)."""
    fn()
    return float(np.median([timed(fn) for _ in range(repeats)]))


def median_each(fn: Callable[[int], Any], count: int) -> float:
    """Median seconds of fn(0), fn(1), ..., fn(count - 1), each timed alone (after an untimed fn(0))."""
    return medians_interleaved({"": fn}, count)[""]


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


def write_json(result: dict[str, Any], prefix: str, path: str | None) -> str:
    """Writes a benchmark script's record (default ./benchmark-results/<prefix>-<time>.json)."""
    result["when"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    path = path or os.path.join("benchmark-results", f"{prefix}-{datetime.now():%Y%m%d-%H%M%S}.json")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"JSON record: {path}")
    return path


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


def import_faiss(required: bool = False, wait_policy: str | None = "PASSIVE") -> Any:
    """faiss, imported the one way every benchmark does: OpenMP told first (it must be, before faiss
    loads it) to let its idle threads sleep, unless the caller set OMP_WAIT_POLICY. Spinning, they
    took the second core from whatever ran next: our 2-thread searches ran up to 2x slower right
    after a faiss call. But sleeping costs faiss a wake-up per parallel region, most of a search
    that does little work: ``wait_policy=None`` leaves OpenMP's default (spin a few milliseconds,
    then sleep), and the script then pauses before timing ours (:func:`let_faiss_sleep`). None if
    faiss-cpu is missing, or exit with how to install it when ``required``."""
    if wait_policy is not None:
        os.environ.setdefault("OMP_WAIT_POLICY", wait_policy)
    try:
        import faiss
    except ImportError:
        if required:
            sys.exit("faiss-cpu is required: pip install '.[bench]'")
        return None
    return faiss


def let_faiss_sleep() -> None:
    """Waits out faiss's OpenMP threads spinning after its last call (at OpenMP's default policy
    they spin a few milliseconds, measured, then sleep), so that they do not share our cores."""
    time.sleep(0.05)


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
    faiss = sys.modules.get("faiss") or import_faiss()  # (imported already: its OpenMP policy is set)
    if faiss is not None:
        versions["faiss"] = faiss.__version__
    return {"platform": platform.platform(), "cpu": model, "cpu_flags": flags,
            "cpus": os.cpu_count(), "threads": hashindex.available_threads(), "simd_level": hashindex.simd_level(),
            "python": platform.python_version(), "versions": versions}
