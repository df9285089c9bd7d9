"""Which SIMD kernel runs, and direct access to it."""
from __future__ import annotations

import numpy as np

from . import _core
from ._validate import _type_name, threads_arg


def simd_level() -> str:
    """Kernel level in use: 'avx512' (VPOPCNTDQ), 'avx2' or 'scalar'."""
    return _core.simd_level()


def supported_simd_levels() -> list[str]:
    """Levels this CPU can run, lowest first; any of them can be forced."""
    return list(_core.supported_simd_levels())


def set_simd_level(level: str) -> None:
    """Forces a kernel level for every later search (also: env var HASHINDEX_SIMD at import).

    Raises ValueError for an unknown name or a level this CPU lacks. Results are
    identical at every level; only speed differs.
    """
    if not isinstance(level, str):
        raise TypeError(f"level: expected a str such as 'avx2', got {type(level).__name__}")
    _core.set_simd_level(level)


def hamming_distances(x: np.ndarray, y: np.ndarray, *, threads: int | None = None) -> np.ndarray:
    """All pairwise Hamming distances between rows of x and y (uint8, same width): int32 (len(x), len(y))."""
    for name, a in (("x", x), ("y", y)):
        if not isinstance(a, np.ndarray) or a.dtype != np.uint8:
            raise TypeError(f"{name}: expected a numpy.ndarray of uint8, got {_type_name(a)}")
        if a.ndim != 2:
            raise ValueError(f"{name}: expected a 2-D array (n, code_size), got shape {a.shape}")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y: expected the same bytes per code, got {x.shape[1]} and {y.shape[1]}")
    return _core.hamming_distances(np.ascontiguousarray(x), np.ascontiguousarray(y), threads_arg(threads))
