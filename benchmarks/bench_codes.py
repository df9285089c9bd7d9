"""From index maps to bits: which hashing keeps the ranking of the quantised latents, and how fast
the encoder turns slices into codes (a code-length study).

For held-out phantom slices (the demo's seed, not the training seed), each slice's code is an 8 x 8
map of codebook indices; its quantised latent is the map of codewords. The reference ranking of the
database for a query is by Euclidean distance between quantised latents. Each hashing option is
scored by recall@k: the share of the reference top k that the Hamming top k (hashindex.FlatIndex,
exact) returns.

    python benchmarks/bench_codes.py --data ~/.cache/hashindex/slices-seed0-2mm-24cases-128px.npz

Then the encoder's throughput under each allocator setting and batch size (hashindex.tune_allocator:
glibc's mmap/munmap churn), each in a fresh process, against 0.2.0's default.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

import hashindex
from hashindex.bench import machine_info, write_json
from hashindex.encoder.codes import CodeEncoder
from hashindex.encoder.data import SliceSet, load_slices
from hashindex.encoder.hashing import CodeHasher, ranking_recall

OPTIONS = [("onehot", None), ("signature", 4), ("signature", 8), ("signature", 16), ("signature", 32), ("signature", 64)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="phantom/BraTS folder or a slices .npz")
    p.add_argument("--checkpoint", default=None, help="default: the shipped base model")
    p.add_argument("--queries", type=int, default=500)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--encode", type=int, default=512, help="slices encoded per throughput run")
    p.add_argument("--repeats", type=int, default=3, help="throughput runs per setting (median)")
    p.add_argument("--child", nargs=2, metavar=("ALLOCATOR", "BATCH"), help=argparse.SUPPRESS)
    p.add_argument("--ingest", action="store_true",
                   help="only the ingest table: --data is a folder of cases, read, encoded and added to an archive")
    args = p.parse_args()
    if args.child:
        return child(args)
    if args.ingest:
        return ingest_table(args)

    import torch

    encoder = CodeEncoder.load(args.checkpoint)
    slices = SliceSet.load(args.data) if args.data.endswith(".npz") else load_slices(args.data, size=encoder.image_size)
    codes = encoder.encode(slices.images, present=slices.contrasts)
    rng = np.random.default_rng(args.seed)
    queries = np.sort(rng.choice(len(slices), min(args.queries, len(slices)), replace=False))
    cells = encoder.cfg.grid**2
    rows = []
    print(f"{len(slices)} slices, {len(queries)} queries; recall@k of the Hamming top k against the top k by "
          "Euclidean distance between quantised latents")
    print(f"{'code':<10} {'hashing':<14} {'bits':>6} {'recall@10':>10} {'recall@50':>10} {'@10 ties':>9}")
    for name, vq, indices in (("normal", encoder.model.normal_vq, codes.normal_indices),
                              ("abnormal", encoder.model.abnormal_vq, codes.abnormal_indices)):
        codebook = vq.codebook.cpu().numpy()
        for method, bits in OPTIONS:
            hasher = CodeHasher(codebook, cells, method, bits, seed=args.seed)
            r10 = ranking_recall(codebook, indices[queries], indices, hasher, k=10)
            r50 = ranking_recall(codebook, indices[queries], indices, hasher, k=50)
            r10t = ranking_recall(codebook, indices[queries], indices, hasher, k=10, ties=True)
            label = "one-hot" if method == "onehot" else f"{bits} bits/cell"
            print(f"{name:<10} {label:<14} {hasher.nbits:>6} {r10:>10.3f} {r50:>10.3f} {r10t:>9.3f}")
            rows.append({"code": name, "method": method, "bits_per_cell": hasher.bits_per_cell, "nbits": hasher.nbits,
                         "recall@10": r10, "recall@50": r50, "recall@10_ties": r10t})

    print(f"encoding throughput ({args.encode} slices, {torch.get_num_threads()} torch threads, "
          f"{encoder.image_size}x{encoder.image_size}, each setting in a fresh process, median of {args.repeats}):")
    encoding = encoding_table(args)
    write_json({"machine": {**machine_info(), "torch": torch.__version__}, "command": " ".join(sys.argv),
                "slices": len(slices), "queries": len(queries), "hashing": rows, "encoding": encoding},
               "codes", args.json)


# What a process encodes with: glibc's thresholds or tune_allocator's, and CodeEncoder's batch size.
# The first row is the 0.2.0 default (batch 128, glibc's thresholds); ratios are against it.
SETTINGS = [("system", 128), ("system", None), ("tuned", 128), ("tuned", None)]


def encoding_table(args: argparse.Namespace) -> list[dict]:
    """Each setting in its own process (mallopt cannot be undone within one), in turns, so a slow spell
    of a shared host hits every setting alike."""
    runs: dict = {s: [] for s in SETTINGS}
    for _ in range(args.repeats):
        for allocator, batch in SETTINGS:
            cmd = [sys.executable, __file__, "--data", args.data, "--child", allocator, str(batch or 0),
                   "--encode", str(args.encode)] + (["--checkpoint", args.checkpoint] if args.checkpoint else [])
            runs[(allocator, batch)].append(json.loads(subprocess.run(cmd, capture_output=True, text=True,
                                                                      check=True).stdout.splitlines()[-1]))
    rows = []
    base = None
    print(f"{'allocator':<10} {'batch':>6} {'slices/s':>9} {'x 0.2.0':>8} {'user s':>7} {'sys s':>6} {'minor faults':>13}")
    for (allocator, _), results in runs.items():
        pick = sorted(results, key=lambda r: r["slices_per_s"])[len(results) // 2]
        base = base or pick["slices_per_s"]
        row = {"allocator": allocator, **pick, "ratio": pick["slices_per_s"] / base}
        rows.append(row)
        print(f"{allocator:<10} {row['batch_size']:>6} {row['slices_per_s']:>9.0f} {row['ratio']:>8.2f} "
              f"{row['user_s']:>7.1f} {row['sys_s']:>6.1f} {row['minor_faults']:>13,}")
    return rows


def child(args: argparse.Namespace) -> None:
    """One setting: encode ``--encode`` slices once to warm up, once timed; one JSON line out."""
    import resource

    allocator, batch = args.child[0], int(args.child[1])
    if allocator == "tuned":
        assert hashindex.tune_allocator(), "tune_allocator did not apply (not glibc?)"
    encoder = CodeEncoder.load(args.checkpoint, **({"batch_size": batch} if batch else {}))
    slices = SliceSet.load(args.data) if args.data.endswith(".npz") else load_slices(args.data, size=encoder.image_size)
    x, present = slices.images[:args.encode], slices.contrasts[:args.encode]
    encoder.encode(x, present=present)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    encoder.encode(x, present=present)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"batch_size": encoder.batch_size, "slices_per_s": len(x) / seconds,
                      "user_s": after.ru_utime - before.ru_utime, "sys_s": after.ru_stime - before.ru_stime,
                      "minor_faults": after.ru_minflt - before.ru_minflt}))

def _zoom_resize(volume, size, labels):
    """The resize slicing used before (scipy.ndimage.zoom), for the before/after of the load stage."""
    from scipy import ndimage as ndi

    side = volume.shape[-2]
    if side == size:
        return volume
    factor, lead = size / side, volume.ndim - 3
    zoom = (1.0,) * lead + (factor, factor, 1.0)
    if labels:
        return ndi.zoom(volume, zoom, order=0, grid_mode=True, mode="grid-constant")
    if factor < 1:
        volume = ndi.gaussian_filter(volume, (0.0,) * lead + (0.45 / factor, 0.45 / factor, 0.0))
    return ndi.zoom(volume, zoom, order=1, grid_mode=True, mode="grid-constant").astype(np.float32)


def ingest_table(args: argparse.Namespace) -> None:
    """Slices/s of each stage of `hashindex archive add` on a folder of cases, in this process (tuned
    allocator, model loaded once): reading and slicing (one process; before with scipy's zoom), encoding
    alone, and the whole add (worker processes read while this one encodes) codes-only and with the
    segmentation decoder. The add's target is 80 % of the encode-only rate."""
    import shutil
    import tempfile

    from hashindex.encoder.archive import Archive
    from hashindex.encoder.archive.ingest import read_case
    from hashindex.encoder.data import brats, find_cases

    hashindex.tune_allocator()
    encoder = CodeEncoder.load(args.checkpoint)
    cases = find_cases(args.data)
    stages = {}
    for name, resize in (("read, scipy zoom (before)", _zoom_resize), ("read", brats._resize)):
        original, brats._resize = brats._resize, resize
        try:
            start = time.perf_counter()
            read = [read_case(c, encoder.image_size) for c in cases]
            stages[name] = time.perf_counter() - start
        finally:
            brats._resize = original
    n = sum(len(r.slices) for r in read if r.error is None)
    encoder.encode(read[0].slices.images[:16], present=read[0].slices.contrasts[:16])
    start = time.perf_counter()
    for r in read:
        encoder.encode(r.slices.images, present=r.slices.contrasts)
    stages["encode"] = time.perf_counter() - start
    tmp = tempfile.mkdtemp(prefix="bench-ingest-")
    try:
        for name, segment in (("archive add, codes only", False), ("archive add, with segmentation", True)):
            folder = f"{tmp}/{int(segment)}"
            with Archive.create(folder, encoder, segment=segment) as archive:
                stages[name] = archive.add(args.data, encoder).seconds
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(cases)} cases, {n} slices of {encoder.image_size} px, {torch_threads()} torch threads")
    print("| stage | s | slices/s | x encode-only |\n|---|---:|---:|---:|")
    rows = []
    for name, seconds in stages.items():
        rate = n / seconds
        rows.append({"stage": name, "seconds": seconds, "slices_per_s": rate, "vs_encode": stages["encode"] / seconds})
        print(f"| {name} | {seconds:.1f} | {rate:.0f} | {stages['encode'] / seconds:.2f} |")
    write_json({"machine": machine_info(), "command": " ".join(sys.argv), "cases": len(cases), "slices": n,
                "stages": rows}, "ingest", args.json)


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    main()
