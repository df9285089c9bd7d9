"""The recipe that trains the shipped ``base`` model, and its ablation, in one call.

    python -m hashindex.encoder.recipe --out runs --device cuda --seconds 360 --real DIR [DIR ...]

1. Phantoms: ``--cases`` cases of seed 1000 at 2 mm (disjoint from the demo's seed 0 and the
   evaluation's seed 5000), generated with every core.
2. Real training cases: the folders given with ``--real`` (any layout the loader recognises). Keep
   evaluation cases out of them: the shipped model saw BraTS 2013 pat0003 and pat0004 and both TCGA
   cases, never pat0005 or pat0006.
3. Two models trained side by side for the same wall-clock time, one process each: ``counterpart``
   (the phantoms' exact healthy counterparts supervise the pseudo-normal image and the normal code)
   and ``paper`` (the paper's losses alone), so the ablation costs no extra time on a GPU.

Each run writes ``<out>/<name>.pt`` (resumable) and ``<out>/<name>-export.pt`` (the model alone).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

VARIANTS = {"counterpart": True, "paper": False}


def prepare(out: Path, cases: int, real: list[str], workers: int, size: int = 128) -> Path:
    from .data import PhantomConfig, SliceSet, generate_phantoms, load_slices

    phantoms = out / "phantoms"
    t = time.monotonic()
    generate_phantoms(phantoms, cases, seed=1000, config=PhantomConfig(spacing=2.0), workers=workers)
    print(f"phantoms: {cases} cases in {time.monotonic() - t:.0f} s", flush=True)
    t = time.monotonic()
    parts = [load_slices(phantoms, size=size, workers=workers)]
    parts += [load_slices(r, size=size, workers=workers) for r in real]
    slices = SliceSet.concatenate(parts)
    path = out / "train-slices.npz"
    slices.save(path)
    print(f"slices: {len(slices)} ({int((slices.abnormal == 1).sum())} with tumour, "
          f"{int((~slices.healthy_known).sum())} real) in {time.monotonic() - t:.0f} s", flush=True)
    return path


def run_variant(data: str, out: Path, name: str, device: str, seconds: float, batch_size: int,
                real_share: float = 0.25, pseudo_tumour_weight: float = 1.0, init_from: str | None = None) -> None:
    from .train import TRAINING, export_weights, train

    training = replace(TRAINING["base"], batch_size=batch_size, counterpart=VARIANTS[name], real_share=real_share,
                       pseudo_tumour_weight=pseudo_tumour_weight)
    metrics = train(data, out / f"{name}.pt", config="base", training=training, epochs=10_000, seed=0,
                    device=device, val_fraction=0.04, max_seconds=seconds, checkpoint_seconds=60, progress=False,
                    log=lambda s: print(f"[{name}] {s}", flush=True), init_from=init_from)
    export_weights(out / f"{name}.pt", out / f"{name}-export.pt")
    (out / f"{name}-metrics.json").write_text(json.dumps(metrics, indent=1, default=float))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seconds", type=float, default=360.0, help="training time of each variant")
    p.add_argument("--cases", type=int, default=240)
    p.add_argument("--real", nargs="*", default=[])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--real-share", type=float, default=0.25)
    p.add_argument("--pseudo-tumour-weight", type=float, default=1.0)
    p.add_argument("--init-from", default=None, help="start from this checkpoint's weights (a second stage)")
    p.add_argument("--variant", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.variant:  # one child process
        run_variant(args.data, args.out, args.variant, args.device, args.seconds, args.batch_size,
                    args.real_share, args.pseudo_tumour_weight, args.init_from)
        return
    data = prepare(args.out, args.cases, args.real, args.workers)
    children = [subprocess.Popen([sys.executable, "-m", "hashindex.encoder.recipe", "--out", str(args.out),
                                  "--device", args.device, "--seconds", str(args.seconds),
                                  "--batch-size", str(args.batch_size), "--variant", v, "--data", str(data),
                                  "--real-share", str(args.real_share),
                                  "--pseudo-tumour-weight", str(args.pseudo_tumour_weight)]
                                 + (["--init-from", args.init_from] if args.init_from else []))
                for v in args.variants]
    codes = [c.wait() for c in children]
    if any(codes):
        raise SystemExit(f"a training process failed: exit codes {codes}")


if __name__ == "__main__":
    from hashindex.allocator import tune_allocator_for_command

    tune_allocator_for_command()  # a command, like `hashindex`: torch's freed buffers are reused
    main()
