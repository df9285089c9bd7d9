"""The one validation path for arguments crossing into the compiled core.

Every public method funnels its arguments through these helpers, so the
messages are uniform: which argument, what was expected, what came, and what
to do about it. Non-contiguous input is copied (never read with wrong strides);
read-only input is fine, since the core only reads it.
"""
from __future__ import annotations

import numbers
import operator

import numpy as np

INT64_MAX = np.iinfo(np.int64).max


def _type_name(x: object) -> str:
    if isinstance(x, np.ndarray):
        return f"numpy.ndarray of {x.dtype}"
    return type(x).__name__


def int_arg(value: object, name: str, *, minimum: int, maximum: int | None = None) -> int:
    """A Python or numpy integer (not bool, not float) in [minimum, maximum]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {_type_name(value)} {value!r}")
    value = operator.index(value)
    if value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name}: expected an integer <= {maximum}, got {value}")
    return value


MAX_K = (1 << 31) - 1  # results take nq x k entries: a larger k cannot be allocated for even one query


def k_arg(k: object) -> int:
    k = int_arg(k, "k", minimum=1)
    if k > MAX_K:
        raise ValueError(f"k: expected at most {MAX_K} (results hold nq x k entries), got {k}")
    return k


MAX_NBITS = 1 << 24  # the file format's limit too


def nbits_arg(nbits: object) -> int:
    nbits = int_arg(nbits, "nbits", minimum=1)
    if nbits > MAX_NBITS:
        raise ValueError(f"nbits: expected at most {MAX_NBITS} bits per code, got {nbits}")
    if nbits % 8:
        raise ValueError(
            f"nbits: expected a positive multiple of 8 (codes are whole bytes), got {nbits}; "
            f"pad codes to {(nbits + 7) // 8 * 8} bits with hashindex.pack_bits"
        )
    return nbits


def threads_arg(threads: object) -> int:
    """None means all available threads (0 for the core)."""
    if threads is None:
        return 0
    # The core caps threads at 4 per available thread anyway; this only keeps the value a C int.
    return min(int_arg(threads, "threads", minimum=1), 1 << 16)


def codes_arg(codes: object, code_size: int, name: str) -> np.ndarray:
    """uint8 codes of shape (n, code_size), or one code of shape (code_size,)."""
    if not isinstance(codes, np.ndarray):
        raise TypeError(
            f"{name}: expected a numpy.ndarray of uint8 with shape (n, {code_size}), got {_type_name(codes)}; "
            "convert with numpy.asarray(x, dtype=numpy.uint8) or pack 0/1 bits with hashindex.pack_bits"
        )
    if codes.dtype != np.uint8:
        raise TypeError(
            f"{name}: expected dtype uint8 (packed bits, {code_size} bytes per code), got {codes.dtype}; "
            "pack 0/1 bits with hashindex.pack_bits"
        )
    if codes.ndim == 1:
        codes = codes.reshape(1, -1)
    if codes.ndim != 2:
        raise ValueError(f"{name}: expected a 1-D or 2-D array, got {codes.ndim} dimensions {codes.shape}")
    if codes.shape[1] != code_size:
        raise ValueError(
            f"{name}: expected {code_size} bytes per code ({8 * code_size} bits), got {codes.shape[1]} "
            f"(shape {codes.shape})"
        )
    return np.ascontiguousarray(codes)


def ids_arg(ids: object, name: str, *, count: int | None = None) -> np.ndarray:
    """Non-negative integer ids as a contiguous int64 array (a scalar becomes one id)."""
    if isinstance(ids, numbers.Integral) and not isinstance(ids, (bool, np.bool_)):
        ids = np.asarray([int_arg(ids, name, minimum=0, maximum=INT64_MAX)], dtype=np.int64)
    if not isinstance(ids, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray of integers, got {_type_name(ids)}")
    if ids.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer dtype (int64), got {ids.dtype}")
    if ids.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {ids.shape}")
    if count is not None and ids.shape[0] != count:
        raise ValueError(f"{name}: expected {count} ids (one per code), got {ids.shape[0]}")
    if ids.size:
        if ids.dtype.kind == "i" and ids.min() < 0:
            raise ValueError(f"{name}: ids must be >= 0 (-1 pads results), got {ids.min()}")
        if ids.dtype.kind == "u" and ids.max() > INT64_MAX:
            raise ValueError(f"{name}: ids must fit in int64, got {ids.max()}")
    return np.ascontiguousarray(ids, dtype=np.int64)
