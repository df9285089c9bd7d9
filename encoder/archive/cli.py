"""What ``hashindex archive create|add|query|info|remove|reencode`` run (their options are in
hashindex.encoder.cli, which the core's command imports without importing this package)."""
from __future__ import annotations

import argparse
import json
import sys


def _create(args: argparse.Namespace) -> int:
    from . import Archive

    with Archive.create(args.archive, args.checkpoint, segment=not args.codes_only, shards=args.shards,
                        bands=args.bands) as archive:
        print(json.dumps(archive.info(), indent=1))
    return 0


def _add(args: argparse.Namespace) -> int:
    from . import Archive

    with Archive.open(args.archive) as archive:
        report = archive.add(args.folders, args.checkpoint, layout=args.layout, contrast_map=args.contrast_map,
                             workers=args.workers,
                             wait=args.wait, progress=not args.quiet, log=lambda s: print(s, file=sys.stderr))
    for name, error in report.failed.items():
        print(f"failed: {name}: {error}", file=sys.stderr)
    for name, why in report.changed.items():
        print(f"not added: {name}: {why}", file=sys.stderr)
    if args.json:
        print(json.dumps(report.as_dict(), indent=1))
    return 1 if report.failed or report.changed else 0


def _query(args: argparse.Namespace) -> int:
    from . import Archive

    tumour_from = None
    if args.tumour_from is not None:
        case, _, z = args.tumour_from.rpartition(":")
        if not case or not z.lstrip("-").isdigit():
            raise ValueError(f"--tumour-from: expected CASE:SLICE, got {args.tumour_from!r}")
        tumour_from = (case, int(z))
    mode = "synthetic" if tumour_from is not None and args.mode == "both" else args.mode
    common = dict(mode=mode, k=args.k, where=args.where, tumour_from=tumour_from,
                  include_own_case=args.include_own_case, levels=args.levels, window=args.window)
    with Archive.open(args.archive) as archive:
        if args.volume is not None:
            hits = archive.search_case(args.volume, args.checkpoint, layout=args.layout, contrast_map=args.contrast_map,
                                       max_query_slices=args.query_slices, **common)
        else:
            if args.case is None or args.slice is None:
                raise ValueError("query: give --case and --slice (a slice of the archive) or --volume FOLDER (a case)")
            hits = archive.search_slice(args.case, args.slice, **common)
        if args.report is not None:
            from ..codes import CodeEncoder
            from .report import write_query_report

            page = write_query_report(archive, args.report, hits, volume=args.volume, case=args.case,
                                      z=args.slice, mode=mode, where=args.where,
                                      encoder=CodeEncoder.load(args.checkpoint))
            print(f"report: {page}", file=sys.stderr)
    if args.json:
        print(json.dumps([h.as_dict() for h in hits], indent=1))
        return 0
    for rank, hit in enumerate(hits, start=1):
        pairs = "  ".join(f"{m.query_z}->{m.z} ({m.distance:g})" for m in hit.slices[:args.show])
        more = f"  ... {len(hit.slices) - args.show} more" if len(hit.slices) > args.show else ""
        print(f"{rank:3d}  {hit.case}  score {hit.score:.2f}  matched {hit.matched}  slices {pairs}{more}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from . import Archive

    with Archive.open(args.archive) as archive:
        out = archive.info()
        if args.cases:
            out["cases_list"] = [{k: v for k, v in c.items() if k != "files"} for c in archive.cases()]
    print(json.dumps(out, indent=1))
    return 0


def _remove(args: argparse.Namespace) -> int:
    from . import Archive

    with Archive.open(args.archive) as archive:
        removed = archive.remove(args.cases, wait=args.wait)
    print(f"removed {len(args.cases)} cases ({removed} slices)")
    return 0


def _reencode(args: argparse.Namespace) -> int:
    from . import Archive

    with Archive.open(args.archive) as archive:
        report = archive.reencode(args.checkpoint, workers=args.workers, wait=args.wait, progress=not args.quiet)
    print(f"re-encoded {len(report.added)} cases ({report.slices} slices) in {report.seconds:.1f} s")
    return 0
