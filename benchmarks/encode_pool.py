"""Genuine encoder codes at benchmark scale: every slice of the given slice sets (and their healthy
counterparts), encoded once as they are and then again in rounds of the training augmentation
(left-right flips, rotations up to 10 degrees, intensity gain/offset/noise), so each round is new
encoder output on plausible images. Used by bench_multi_field_mih.py.

    python benchmarks/encode_pool.py --out pool.npz --seconds 5400 SLICES.npz [SLICES.npz ...]

SLICES.npz: files written by the encoder's slice cache (``hashindex demo`` leaves one under its
cache directory; real scans go through ``hashindex.encoder.dataset``). About 60 slices/s on one
core of the 2-core VM before the allocator was tuned here (not measured since). Resumable: rounds already in --out are kept and the next seeds follow.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("slices", nargs="+", help="slice-set .npz files (images, contrasts, optional healthy)")
    p.add_argument("--out", required=True)
    p.add_argument("--seconds", type=float, default=600.0, help="stop after this long (a round in progress is kept)")
    p.add_argument("--threads", type=int, default=1, help="torch threads")
    args = p.parse_args(argv)

    import torch

    import hashindex
    from hashindex.encoder.augment import augment, intensity_jitter
    from hashindex.encoder.codes import CodeEncoder

    hashindex.tune_allocator()  # encoding in bulk: keep torch's freed buffers (RESULTS.md, "Encoding throughput")
    torch.set_num_threads(args.threads)
    encoder = CodeEncoder.load()
    images, present = [], []
    for path in args.slices:
        with np.load(path) as d:
            for key in ("images", "healthy"):
                if key in d:
                    images.append(d[key].astype(np.float32))
                    present.append(d["contrasts"])
    x_all, p_all = np.concatenate(images), np.concatenate(present)
    pool = dict(np.load(args.out)) if os.path.exists(args.out) else {}
    done = int(pool["round"].max()) + 1 if pool else 0
    print(f"{len(x_all)} slices; {done} rounds already in {args.out}", flush=True)
    deadline = time.time() + args.seconds
    while time.time() < deadline:
        gen = torch.Generator().manual_seed(1000 + done)
        start = time.time()
        normal, abnormal = [], []
        for i in range(0, len(x_all), 256):
            x = torch.from_numpy(x_all[i:i + 256])
            if done > 0:  # round 0: the slices as they are
                x, _ = augment(x, torch.zeros(x.shape[0], x.shape[2], x.shape[3], dtype=torch.long), gen)
                (x,) = intensity_jitter(x, gen)
            codes = encoder.encode(x.numpy(), present=p_all[i:i + 256])
            normal.append(codes.normal_bits)
            abnormal.append(codes.abnormal_bits)
        m = sum(len(a) for a in normal)
        new = {"normal": np.concatenate(normal), "abnormal": np.concatenate(abnormal),
               "source_row": np.arange(m), "round": np.full(m, done)}
        pool = {k: np.concatenate([pool[k], v]) if pool else v for k, v in new.items()}
        np.savez(args.out + ".tmp.npz", **pool)
        os.replace(args.out + ".tmp.npz", args.out)
        print(f"round {done}: {m} codes in {time.time() - start:.0f} s, {len(pool['normal'])} in all", flush=True)
        done += 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
