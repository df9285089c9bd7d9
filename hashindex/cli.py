"""The ``hashindex`` command: the core's verbs (``info``, ``bench``) and those that installed
packages register under the ``hashindex.commands`` entry-point group (the encoder registers
``phantoms``, ``montage``, ``train``, ``demo``, ``evaluate`` and ``query``). The core never imports
an application: a core-only install lists only the verbs it has.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Callable

from ._plugins import entry_points
from .allocator import tune_allocator_for_command

ENTRY_POINT_GROUP = "hashindex.commands"


def _plugins() -> Iterator[Callable[[argparse._SubParsersAction], None]]:
    """``register(subparsers)`` functions of the installed packages that add verbs."""
    for entry in entry_points(ENTRY_POINT_GROUP):
        try:
            register = entry.load()
        except ImportError:  # its dependencies are not installed: its verbs are not offered
            continue
        yield register


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


def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= minimum, refused while parsing (before anything is written)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value
    return parse


def _code_length(text: str) -> int:
    from ._validate import nbits_arg

    try:
        return nbits_arg(_count(8)(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_bench_arguments(p: argparse.ArgumentParser) -> None:
    """``hashindex bench``'s options (``python -m benchmarks`` adds its own)."""
    from .bench import BUILT_IN_DATASETS, PRESETS, plugin_datasets

    p.add_argument("--preset", choices=sorted(PRESETS), default="quick", help="quick: < 1 min; full: RESULTS.md")
    p.add_argument("--quick", dest="preset", action="store_const", const="quick")
    p.add_argument("--full", dest="preset", action="store_const", const="full")
    p.add_argument("--n", type=_count(1), nargs="+", help="database sizes (default: the preset's)")
    p.add_argument("--nbits", type=_code_length, nargs="+", help="code lengths in bits (multiples of 8)")
    p.add_argument("--dataset", nargs="+", choices=sorted(BUILT_IN_DATASETS + tuple(plugin_datasets())),
                   help="uniform, clustered, npy, or one an installed package adds (the encoder: encoder)")
    p.add_argument("--npy", help="packed uint8 codes (n, nbits/8) for --dataset npy")
    p.add_argument("--queries", type=_count(1), help="batch queries")
    p.add_argument("--single", type=_count(1), help="single queries timed one by one (latency percentiles)")
    p.add_argument("--k", type=_count(1))
    p.add_argument("--threads", type=_count(1), help="default: every available core")
    p.add_argument("--methods", nargs="+", help="only methods whose name contains one of these")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="JSON record (default hashindex-bench/bench-<time>.json)")


def _bench(args: argparse.Namespace) -> int:
    from hashindex.bench import execute

    return execute(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hashindex", description="Exact binary-code search by Hamming distance.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, SIMD level and threads this machine uses").set_defaults(run=_info)

    p = sub.add_parser("bench", help="latency and recall against faiss (same process, same data)")
    add_bench_arguments(p)
    p.set_defaults(run=_bench)

    for register in _plugins():
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        tune_allocator_for_command()
        return args.run(args)
    except (ValueError, KeyError, OSError, ModuleNotFoundError) as exc:
        print(f"hashindex {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
