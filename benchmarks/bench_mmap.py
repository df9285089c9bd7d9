"""Opening a large index: load() against load(mmap=True), same file, same process.

    python benchmarks/bench_mmap.py                 # 2 GiB: 8M x 2048-bit codes
    python benchmarks/bench_mmap.py --gib 0.25      # smaller

Writes a FlatIndex file (uniform codes, default ids) to --dir, then reports: time to open with
load() (reads and checks the whole file) and with load(mmap=True) (header only), with verify=True
too; the process's RSS after opening and after the first search (a mapped index's pages are read as
the scan touches them; the file was just written, so they come from the page cache, not the disk);
single-query latency of both once warm, and that their answers are identical. Prints a table and a
JSON record; deletes the file.
"""
from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time

import numpy as np

import hashindex
from hashindex.bench import machine_info, rss_bytes, timed, write_json


def measure(path: str, kw: dict, queries: np.ndarray, want) -> dict:
    """Opens the file one way and times the open and the searches; RSS deltas from before the open."""
    gc.collect()
    base = rss_bytes()
    t0 = time.perf_counter()
    opened = hashindex.load(path, **kw)
    t_open = time.perf_counter() - t0
    rss_open = rss_bytes() - base
    t_first = timed(lambda: opened.search(queries[0], 10))
    rss_first = rss_bytes() - base
    lat = statistics.median(timed(lambda q=q: opened.search(q, 10)) for q in queries)
    got = opened.search(queries, 10)
    assert np.array_equal(got.ids, want.ids) and np.array_equal(got.distances, want.distances), kw
    return {"open_s": t_open, "rss_after_open_bytes": rss_open, "first_search_s": t_first,
            "rss_after_first_search_bytes": rss_first, "search_p50_s": lat, "memory_bytes": opened.memory_bytes}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gib", type=float, default=2.0, help="size of the codes")
    p.add_argument("--nbits", type=int, default=2048)
    p.add_argument("--dir", default=tempfile.gettempdir())
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    n = int(args.gib * 2**30) // (args.nbits // 8)
    path = os.path.join(args.dir, f"bench-mmap-{os.getpid()}.hx")
    info = machine_info()
    print(f"{info.get('cpu')}, {hashindex.available_threads()} threads; {n:,} x {args.nbits}-bit codes "
          f"({n * args.nbits / 8 / 2**30:.2f} GiB) in {path}")
    rng = np.random.default_rng(0)
    index = hashindex.FlatIndex(args.nbits)
    step = 1 << 20
    for b in range(0, n, step):
        index.add(rng.integers(0, 256, (min(step, n - b), args.nbits // 8), dtype=np.uint8))
    queries = rng.integers(0, 256, (20, args.nbits // 8), dtype=np.uint8)
    want = index.search(queries, 10)
    t_save = timed(lambda: index.save(path))
    index.reset()
    gc.collect()
    row: dict = {"n": n, "nbits": args.nbits, "file_bytes": os.path.getsize(path), "save_s": t_save}
    try:
        for mode, kw in (("load", {}), ("mmap", {"mmap": True}), ("mmap+verify", {"mmap": True, "verify": True})):
            row[mode] = measure(path, kw, queries, want)
            r = row[mode]
            print(f"{mode:>12}: open {r['open_s'] * 1e3:9.2f} ms, RSS +{r['rss_after_open_bytes'] / 2**20:8.1f} MiB; "
                  f"first search {r['first_search_s'] * 1e3:8.1f} ms, RSS +{r['rss_after_first_search_bytes'] / 2**20:8.1f} "
                  f"MiB; then p50 {r['search_p50_s'] * 1e3:7.2f} ms; index memory {r['memory_bytes'] / 2**20:.1f} MiB")
    finally:
        os.unlink(path)
    write_json({"args": vars(args), "machine": info, "result": row}, "mmap", args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
