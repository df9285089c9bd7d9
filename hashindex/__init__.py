"""hashindex: exact binary-code search by Hamming distance.

>>> import numpy as np, hashindex
>>> index = hashindex.FlatIndex(256)
>>> index.add(np.random.default_rng(0).integers(0, 256, (1000, 32), dtype=np.uint8))
>>> distances, ids = index.search(queries, k=10)      # doctest: +SKIP

The SIMD kernel is chosen at import from cpuid; set ``HASHINDEX_SIMD`` to
``scalar``, ``avx2`` or ``avx512`` to force a lower level, or call
:func:`set_simd_level`. This package never imports torch (the encoder does).
"""
from __future__ import annotations

import os as _os
import warnings as _warnings

try:
    from . import _core
except ImportError as _exc:  # pragma: no cover - depends on how the package was obtained
    raise ImportError(
        "hashindex._core (the compiled extension) cannot be imported. Install with `pip install .` "
        "and run from outside the source tree, whose hashindex/ folder has no compiled module."
    ) from _exc
from ._core import FormatError, available_threads
from ._results import PAD_DISTANCE, PAD_ID, RangeSearchResult, SearchResult
from .allocator import tune_allocator
from .bits import pack_bits, unpack_bits
from .flat import FlatIndex
from .io import load, loads
from .ivf import IVFIndex
from .mih import MIHIndex
from .multi_field import MultiFieldIndex
from .simd import hamming_distances, set_simd_level, simd_level, supported_simd_levels

__version__ = "0.2.0"
FORMAT_VERSION: int = _core.FORMAT_VERSION

__all__ = [
    "FlatIndex",
    "IVFIndex",
    "MIHIndex",
    "MultiFieldIndex",
    "FormatError",
    "FORMAT_VERSION",
    "PAD_DISTANCE",
    "PAD_ID",
    "RangeSearchResult",
    "SearchResult",
    "available_threads",
    "hamming_distances",
    "load",
    "loads",
    "pack_bits",
    "set_simd_level",
    "simd_level",
    "supported_simd_levels",
    "tune_allocator",
    "unpack_bits",
]


def _apply_env_simd_level() -> None:
    wanted = _os.environ.get("HASHINDEX_SIMD", "").strip().lower()
    if not wanted:
        return
    try:
        set_simd_level(wanted)
    except ValueError as exc:
        _warnings.warn(f"HASHINDEX_SIMD ignored: {exc}; using '{simd_level()}'", RuntimeWarning, stacklevel=2)


_apply_env_simd_level()
