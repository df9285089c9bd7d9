"""The encoder's verbs of the ``hashindex`` command (registered through the ``hashindex.commands``
entry point; ``hashindex --help`` lists them when this package is installed). Nothing here imports
torch or nibabel until a verb runs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

CONFIG_NAMES = ("base", "paper", "small")
CONTRAST_MAP_HELP = ("JSON file mapping regular expressions over DICOM SeriesDescription/ProtocolName to t1, t1ce, "
                     "t2 or flair (tried before the built-in names)")
LAYOUT_HELP = ("file layout: brats2021, brats2023, deepmedic, bet, or a JSON file mapping contrasts to file "
               "patterns (default: recognised from the file names)")


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

    print(render_montage(load_case(args.case, layout=args.layout), args.out, slice_index=args.slice))
    return 0


def _train(args: argparse.Namespace) -> int:
    import json
    from dataclasses import replace

    from hashindex.encoder.train import TRAINING, export_weights, train

    defaults = TRAINING[args.config]
    training = replace(defaults, batch_size=args.batch_size or defaults.batch_size, lr=args.lr or defaults.lr,
                       critic=args.critic, counterpart=args.counterpart, contrast_dropout=args.contrast_dropout,
                       real_share=args.real_share, pseudo_tumour_weight=args.pseudo_tumour_weight)
    metrics = train(args.data, args.out, config=args.config, training=training, epochs=args.epochs,
                    seed=args.seed, device=args.device, resume=not args.restart, val_fraction=args.val_fraction,
                    max_steps=args.max_steps, max_seconds=args.max_seconds, progress=not args.quiet, amp=args.amp,
                    workers=args.workers, init_from=args.init_from)
    print(json.dumps(metrics, indent=1))
    if args.export:
        print(f"weights: {export_weights(args.out, args.export)}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from hashindex.encoder.demo import DemoConfig, run_demo

    run_demo(args.out, cache=args.cache, config=DemoConfig(cases=args.cases, seed=args.seed, examples=args.examples),
             checkpoint=args.checkpoint, data=args.data)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from hashindex.encoder.evaluate import evaluate_dataset

    evaluate_dataset(args.data, args.out, checkpoint=args.checkpoint, max_queries=args.queries, seed=args.seed,
                     cases=args.cases, query_cases=args.query_cases, layout=args.layout, contrasts=args.contrasts)
    return 0


def _query(args: argparse.Namespace) -> int:
    from hashindex.encoder.query import query

    hits = query(args.index, args.case, args.slice, mode=args.mode, k=args.k, checkpoint=args.checkpoint,
                 include_own_case=args.include_own_case, layout=args.layout, per_patient=args.per_patient,
                 log=lambda line: print(line, file=sys.stderr))
    for rank, hit in enumerate(hits, start=1):
        print(rank, "  ".join(f"{k}={v}" for k, v in hit.items()))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("case", help="a case folder (any layout the loader knows)")
    p.add_argument("--layout", default=None, help=LAYOUT_HELP)
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--slice", type=int, default=None, help="axial slice (default: the one with most tumour)")
    p.set_defaults(run=_montage)

    p = sub.add_parser("train", help="train the normal/abnormal encoder (needs torch)")
    p.add_argument("--data", required=True,
                   help="folders of cases in any known layout, or slices saved as .npz; several joined by commas")
    p.add_argument("--out", required=True, help="checkpoint to write (resumed when it exists)")
    p.add_argument("--config", choices=sorted(CONFIG_NAMES), default="base")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=None, help="default: the config's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--val-fraction", type=float, default=0.1, help="share of cases held out for the metrics")
    p.add_argument("--critic", action="store_true", help="density-matching latent critic (WGAN-GP)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke runs)")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="stop (with a checkpoint) after this much training time; run again to resume")
    p.add_argument("--no-counterpart", dest="counterpart", action="store_false",
                   help="the paper's losses alone: no supervision by the phantoms' healthy counterparts")
    p.add_argument("--contrast-dropout", type=float, default=None,
                   help="share of images shown with a random subset of contrasts (default 0.5 for 'base')")
    p.add_argument("--real-share", type=float, default=0.25,
                   help="share of each epoch drawn from cases without a healthy counterpart (real scans)")
    p.add_argument("--amp", choices=["auto", "bf16", "off"], default="auto", help="auto: bf16 autocast on CUDA; bf16 also pays on CPUs with AVX-512 BF16 or AMX (3x for base)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the config's)")
    p.add_argument("--pseudo-tumour-weight", type=float, default=1.0,
                   help="extra pseudo-normal MSE on tumour pixels against the healthy counterpart")
    p.add_argument("--init-from", default=None, help="start from this checkpoint's weights (fine-tuning)")
    p.add_argument("--workers", type=int, default=1, help="processes reading the cases")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint at --out")
    p.add_argument("--export", default=None, help="also write the model alone, float16, to this file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_train)

    p = sub.add_parser("demo", help="the end-to-end job: phantoms, encoder, index, evaluation, HTML report")
    p.add_argument("--out", default="hashindex-demo", help="report folder (default ./hashindex-demo)")
    p.add_argument("--cache", default=None, help="phantom/slice cache (default ~/.cache/hashindex or $HASHINDEX_CACHE)")
    p.add_argument("--cases", type=int, default=24)
    p.add_argument("--data", default=None, help="index these real cases (any known layout) instead of phantoms")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--examples", type=int, default=24, help="example queries in the report (default 24)")
    p.add_argument("--checkpoint", default=None, help="model checkpoint (default: the shipped model)")
    p.set_defaults(run=_demo)

    p = sub.add_parser("evaluate", help="retrieval, segmentation and pseudo-normal scores of a model on a folder")
    p.add_argument("--data", required=True, help="folder of cases in any known layout, or slices .npz")
    p.add_argument("--cases", nargs="+", default=None, help="only these case ids")
    p.add_argument("--query-cases", nargs="+", default=None,
                   help="draw queries (and score segmentation) only from these cases, e.g. those held out from training")
    p.add_argument("--contrasts", nargs="+", default=None, choices=["t1", "t1ce", "t2", "flair"],
                   help="evaluate as if only these contrasts had been acquired (the others are dropped)")
    p.add_argument("--layout", default=None, help=LAYOUT_HELP)
    p.add_argument("--out", default="evaluation.json", help="JSON file for the table")
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--queries", type=int, default=1000, help="query slices (seeded sample)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=_evaluate)

    p = sub.add_parser("query", help="search a demo index with a slice of your own case (any known layout)")
    p.add_argument("--index", required=True, help="index.hx written by hashindex demo")
    p.add_argument("--case", required=True, help="case folder (any layout the loader knows)")
    p.add_argument("--slice", type=int, default=None,
                   help="axial slice index (default: the largest tumour section, or the middle slice)")
    p.add_argument("--mode", choices=["normal", "abnormal", "both"], default="both")
    p.add_argument("--include-own-case", action="store_true",
                   help="also return slices of the query's own case when the index holds it (left out by default)")
    p.add_argument("--layout", default=None, help=LAYOUT_HELP)
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--per-patient", type=int, default=1,
                   help="at most this many hits from one patient, as the report shows them (default 1; 0: no limit)")
    p.add_argument("--checkpoint", default=None)
    p.set_defaults(run=_query)

    _register_archive(sub)


def _archive(verb: str):
    def run(args: argparse.Namespace) -> int:
        from hashindex.encoder.archive import cli

        return getattr(cli, f"_{verb}")(args)

    return run
def _register_archive(sub: argparse._SubParsersAction) -> None:
    top = sub.add_parser("archive", help="an archive of cases that grows: create, add, query, info, remove, reencode")
    verbs = top.add_subparsers(dest="archive_verb", required=True)

    p = verbs.add_parser("create", help="a new, empty archive folder for a model")
    p.add_argument("archive", help="the folder (new or empty)")
    p.add_argument("--checkpoint", default=None, help="model checkpoint (default: the shipped model)")
    p.add_argument("--codes-only", action="store_true",
                   help="store codes only: no predicted tumour area per slice (ingest about 2x faster; no "
                        "'abnormal' filter)")
    p.add_argument("--shards", type=int, default=0,
                   help="keep the codes on this many Ray actors per band (hashindex.distributed; the cluster of "
                        "RAY_ADDRESS, else a local one); needs pip install 'hashindex[distributed]'")
    p.add_argument("--bands", type=int, default=None,
                   help="indexes by axial level, a query reading those near its level (default 10; 1 when sharded)")
    p.set_defaults(run=_archive("create"))

    p = verbs.add_parser("add", help="add every case found under these folders (those already in are skipped)")
    p.add_argument("archive")
    p.add_argument("folders", nargs="+", help="folders of cases, any known layout")
    p.add_argument("--layout", default=None, help=LAYOUT_HELP + "; dicom: only DICOM series")
    p.add_argument("--contrast-map", default=None, help=CONTRAST_MAP_HELP)
    p.add_argument("--checkpoint", default=None, help="must be the archive's model (default: the shipped model)")
    p.add_argument("--workers", type=int, default=None,
                   help="processes reading volumes while this one encodes; 0: this one, between cases "
                        "(default: 0 on 2 cores, where that measured faster; cores - 1 above)")
    p.add_argument("--wait", type=float, default=0.0, help="seconds to wait for another writer (default: fail)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_archive("add"))

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
    p.add_argument("--layout", default=None, help=LAYOUT_HELP + "; dicom: only DICOM series")
    p.add_argument("--contrast-map", default=None, help=CONTRAST_MAP_HELP)
    p.add_argument("--checkpoint", default=None, help="--volume: the archive's model (default: the shipped model)")
    p.add_argument("--show", type=int, default=3, help="matched slices printed per patient")
    p.add_argument("--json", action="store_true", help="print the hits as JSON")
    p.add_argument("--report", default=None, help="also write an HTML page of the query to this folder")
    p.set_defaults(run=_archive("query"))

    p = verbs.add_parser("info", help="cases, slices, model and files of an archive, as JSON")
    p.add_argument("archive")
    p.add_argument("--cases", action="store_true", help="also list every case (failed ones with their error)")
    p.set_defaults(run=_archive("info"))

    p = verbs.add_parser("remove", help="remove cases (all or none) from an archive")
    p.add_argument("archive")
    p.add_argument("cases", nargs="+")
    p.add_argument("--wait", type=float, default=0.0)
    p.set_defaults(run=_archive("remove"))

    p = verbs.add_parser("reencode", help="encode every case again with another model, in one commit")
    p.add_argument("archive")
    p.add_argument("--checkpoint", default=None, help="the new model (default: the shipped model)")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--wait", type=float, default=0.0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=_archive("reencode"))
