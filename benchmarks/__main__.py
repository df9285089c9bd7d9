"""``python -m benchmarks ...`` from the repository root: the same as ``hashindex bench ...``.

The installed package is benchmarked, never the source folder (which has no compiled core), so the
repository root that ``-m`` puts first on sys.path is taken off it.
"""
import os
import sys

_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _root]

from hashindex.bench import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
