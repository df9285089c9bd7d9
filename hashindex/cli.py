"""The ``hashindex`` command."""
from __future__ import annotations

import argparse
import json
import sys


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hashindex", description="Exact binary-code search by Hamming distance.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="version, SIMD level and threads this machine uses").set_defaults(run=_info)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
