"""From index maps to bits: which hashing keeps the ranking of the quantised latents, and how fast
the encoder turns slices into codes (the issue's code-length study).

For held-out phantom slices (the demo's seed, not the training seed), each slice's code is an 8 x 8
map of codebook indices; its quantised latent is the map of codewords. The reference ranking of the
database for a query is by Euclidean distance between quantised latents. Each hashing option is
scored by recall@k: the share of the reference top k that the Hamming top k (hashindex.FlatIndex,
exact) returns.

    python benchmarks/bench_codes.py --data ~/.cache/hashindex/slices-seed0-2mm-24cases-128px.npz
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

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
    args = p.parse_args()

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

    batch = slices.images[:256]
    encoder.encode(batch)  # warm-up
    times = []
    for _ in range(5):
        t = time.perf_counter()
        encoder.encode(batch)
        times.append(time.perf_counter() - t)
    rate = len(batch) / statistics.median(times)
    print(f"encoding throughput: {rate:.0f} slices/s (batch {len(batch)}, {torch.get_num_threads()} torch threads, "
          f"{encoder.image_size}x{encoder.image_size}, median of 5)")
    write_json({"machine": {**machine_info(), "torch": torch.__version__}, "command": " ".join(__import__("sys").argv),
                "slices": len(slices), "queries": len(queries), "hashing": rows, "encode_slices_per_s": rate},
               "codes", args.json)


if __name__ == "__main__":
    main()
