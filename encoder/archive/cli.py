"""``hashindex archive create|add|query|info|remove|reencode``."""
from __future__ import annotations

import argparse
import json
import sys

LAYOUT_HELP = ("file layout: brats2021, brats2023, deepmedic, bet, or a JSON file mapping contrasts to file "
               "patterns (default: recognised from the file names)")


def _create(args: argparse.Namespace) -> int:
    from . import Archive

    with Archive.create(args.archive, args.checkpoint, segment=not args.codes_only) as archive:
        print(json.dumps(archive.info(), indent=1))
    return 0


def _add(args: argparse.Namespace) -> int:
    from . import Archive

    with Archive.open(args.archive) as archive:
        report = archive.add(args.folders, args.checkpoint, layout=args.layout, workers=args.workers,
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
            hits = archive.search_case(args.volume, args.checkpoint, layout=args.layout,
                                       max_query_slices=args.query_slices, **common)
        else:
            if args.case is None or args.slice is None:
                raise ValueError("query: give --case and --slice (a slice of the archive) or --volume FOLDER (a case)")
            hits = archive.search_slice(args.case, args.slice, **common)
        if args.report is not None:
            from .report import write_query_report

            page = write_query_report(archive, args.report, hits, volume=args.volume, case=args.case,
                                      z=args.slice, mode=mode, where=args.where)
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


def register(sub: argparse._SubParsersAction) -> None:
    top = sub.add_parser("archive", help="an archive of cases that grows: create, add, query, info, remove, reencode")
    verbs = top.add_subparsers(dest="archive_verb", required=True)

    p = verbs.add_parser("create", help="a new, empty archive folder for a model")
    p.add_argument("archive", help="the folder (new or empty)")
    p.add_argument("--checkpoint", default=None, help="model checkpoint (default: the shipped model)")
    p.add_argument("--codes-only", action="store_true",
                   help="store codes only: no predicted tumour area per slice (ingest about 2x faster; no "
                        "'abnormal' filter)")
    p.set_defaults(run=_create)

    p = verbs.add_parser("add", help="add every case found under these folders (those already in are skipped)")
    p.add_argument("archive")
    p.add_argument("folders", nargs="+", help="folders of cases, any known layout")
    p.add_argument("--layout", default=None, help=LAYOUT_HELP)
    p.add_argument("--checkpoint", default=None, help="must be the archive's model (default: the shipped model)")
    p.add_argument("--workers", type=int, default=None, help="processes reading volumes (default: cores - 1)")
    p.add_argument("--wait", type=float, default=0.0, help="seconds to wait for another writer (default: fail)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_add)

    p = verbs.add_parser("query", help="patients ranked against a slice of the archive or a whole new case")
    p.add_argument("archive")
    p.add_argument("--case", default=None, help="a case of the archive (with --slice)")
    p.add_argument("--slice", type=int, default=None, help="its axial slice index")
    p.add_argument("--volume", default=None, help="or: a case folder to query with (need not be in the archive)")
    p.add_argument("--mode", choices=["normal", "abnormal", "both", "synthetic"], default="both")
    p.add_argument("--tumour-from", default=None, metavar="CASE:SLICE",
                   help="synthetic query: this anatomy with that slice's tumour")
    p.add_argument("--where", default=None, help='metadata filter, e.g. "t1ce AND abnormal AND level > 0.3"')
    p.add_argument("--k", type=int, default=10, help="patients (default 10)")
    p.add_argument("--levels", type=int, default=10, help="axial bands a brain is cut into (0: any level matches)")
    p.add_argument("--window", type=int, default=1, help="bands either side that count as the same level")
    p.add_argument("--query-slices", type=int, default=16, help="--volume: at most this many query slices")
    p.add_argument("--include-own-case", action="store_true", help="also rank the query's own case")
    p.add_argument("--layout", default=None, help=LAYOUT_HELP)
    p.add_argument("--checkpoint", default=None, help="--volume: the archive's model (default: the shipped model)")
    p.add_argument("--show", type=int, default=3, help="matched slices printed per patient")
    p.add_argument("--json", action="store_true", help="print the hits as JSON")
    p.add_argument("--report", default=None, help="also write an HTML page of the query to this folder")
    p.set_defaults(run=_query)

    p = verbs.add_parser("info", help="cases, slices, model and files of an archive, as JSON")
    p.add_argument("archive")
    p.add_argument("--cases", action="store_true", help="also list every case (failed ones with their error)")
    p.set_defaults(run=_info)

    p = verbs.add_parser("remove", help="remove cases (all or none) from an archive")
    p.add_argument("archive")
    p.add_argument("cases", nargs="+")
    p.add_argument("--wait", type=float, default=0.0)
    p.set_defaults(run=_remove)

    p = verbs.add_parser("reencode", help="encode every case again with another model, in one commit")
    p.add_argument("archive")
    p.add_argument("--checkpoint", default=None, help="the new model (default: the shipped model)")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--wait", type=float, default=0.0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=_reencode)
