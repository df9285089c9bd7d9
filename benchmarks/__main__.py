"""``python -m benchmarks ...`` from the repository root: ``hashindex bench`` with every competitor,
thread scaling, plots and Markdown (harness.py).

After a plain ``pip install .`` the source folder ``hashindex/`` (no compiled core) would shadow the
installed package here, so the repository root that ``-m`` puts first on sys.path is taken off it;
this folder goes on instead, as it does for ``python benchmarks/<script>.py``.
"""
import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [_here] + [p for p in sys.path if os.path.abspath(p or os.curdir) != os.path.dirname(_here)]

from harness import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
