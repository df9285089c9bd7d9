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


def _bench(args: argparse.Namespace) -> int:
    from hashindex.bench import execute

    return execute(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hashindex", description="Exact binary-code search by Hamming distance.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, SIMD level and threads this machine uses").set_defaults(run=_info)

    from hashindex.bench import add_arguments

    p = sub.add_parser("bench", help="latency/recall benchmark against faiss, numpy, numba (same process, same data)")
    add_arguments(p)
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
