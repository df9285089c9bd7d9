"""The ``hashindex`` command."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _info(_: argparse.Namespace) -> int:
    import hashindex

    print(json.dumps({
        "version": hashindex.__version__,
        "simd_level": hashindex.simd_level(),
        "supported_simd_levels": hashindex.supported_simd_levels(),
        "threads": hashindex.available_threads(),
        "format_version": hashindex.FORMAT_VERSION,
    }, indent=2))
    return 0


def _phantoms(args: argparse.Namespace) -> int:
    import time

    from hashindex.encoder.data import PhantomConfig, generate_phantoms

    config = PhantomConfig(spacing=args.spacing, healthy_fraction=args.healthy_fraction, naming=args.naming)
    start = time.perf_counter()
    manifest = generate_phantoms(args.out, args.cases, seed=args.seed, config=config, workers=args.workers,
                                 progress=not args.quiet)
    with_tumour = sum(c["tumour"] is not None for c in manifest["cases"])
    print(f"{len(manifest['cases'])} cases ({with_tumour} with a tumour) of {config.shape} voxels at "
          f"{config.spacing} mm in {args.out} ({time.perf_counter() - start:.1f} s)")
    if args.montage:
        from hashindex.encoder.data import find_cases, load_case
        from hashindex.encoder.data.montage import render_montage

        first = next((c["case"] for c in manifest["cases"] if c["tumour"]), manifest["cases"][0]["case"])
        files = next(f for f in find_cases(args.out) if f.case_id == first)
        print(f"montage: {render_montage(load_case(files), Path(args.out) / 'montage.png')}")
    return 0


def _montage(args: argparse.Namespace) -> int:
    from hashindex.encoder.data import load_case
    from hashindex.encoder.data.montage import render_montage

    print(render_montage(load_case(args.case), args.out, slice_index=args.slice))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hashindex", description="Exact binary-code search by Hamming distance.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, SIMD level and threads this machine uses").set_defaults(run=_info)

    p = sub.add_parser("phantoms", help="write synthetic glioma MRI phantoms in BraTS layout")
    p.add_argument("--out", required=True, help="folder for the cases (reused as a cache when re-run)")
    p.add_argument("--cases", type=int, default=30, help="number of cases (default 30)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--spacing", type=float, default=1.0, help="mm per voxel; 1 gives BraTS's 240x240x155 (default)")
    p.add_argument("--healthy-fraction", type=float, default=0.2, help="share of cases without a tumour")
    p.add_argument("--naming", choices=["brats2021", "brats2023"], default="brats2021",
                   help="file names and enhancing label of BraTS 2018-2021 (4) or 2023 (3)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    p.add_argument("--montage", action="store_true", help="also write <out>/montage.png of the first tumour case")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_phantoms)

    p = sub.add_parser("montage", help="PNG of one case: four contrasts, labels, healthy counterpart")
    p.add_argument("case", help="a case folder (BraTS or phantom layout)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--slice", type=int, default=None, help="axial slice (default: the one with most tumour)")
    p.set_defaults(run=_montage)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (ValueError, KeyError, OSError, ModuleNotFoundError) as exc:
        print(f"hashindex {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
