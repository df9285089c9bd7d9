"""The one validation path for arguments crossing into the compiled core.

Every public method funnels its arguments through these helpers, so the
messages are uniform: which argument, what was expected, what came, and what
to do about it. Non-contiguous input is copied (never read with wrong strides);
read-only input is fine, since the core only reads it.
"""
from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Mapping
from typing import Any

import numpy as np

INT64_MAX = np.iinfo(np.int64).max
_UINT8 = np.dtype(np.uint8)


def _type_name(x: object) -> str:
    if isinstance(x, np.ndarray):
        return f"numpy.ndarray of {x.dtype}"
    return type(x).__name__


def int_arg(value: object, name: str, *, minimum: int, maximum: int | None = None) -> int:
    """A Python or numpy integer (not bool, not float) in [minimum, maximum]."""
    if type(value) is int and minimum <= value and (maximum is None or value <= maximum):
        return value  # the common case, without the ABC check below (most of a small search's validation)
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
    if type(k) is int and 0 < k <= MAX_K:
        return k
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
    if type(codes) is np.ndarray and codes.dtype is _UINT8 and codes.flags.c_contiguous:
        if codes.ndim == 2 and codes.shape[1] == code_size:
            return codes  # as they are: the common case, checked at the cost of a few attributes
        if codes.ndim == 1 and codes.shape[0] == code_size:
            return codes[None]  # a view, as reshape's, at half its cost
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
        hint = ""
        if codes.shape[1] == 8 * code_size and codes.size and codes.max() <= 1:
            hint = "; these look like unpacked 0/1 bits: pack them with hashindex.pack_bits"
        raise ValueError(
            f"{name}: expected {code_size} bytes per code ({8 * code_size} bits), got {codes.shape[1]} "
            f"(shape {codes.shape}){hint}"
        )
    return np.ascontiguousarray(codes)


def _int_sequence(values: list | tuple, name: str, minimum: int) -> np.ndarray:
    """A list or tuple of Python/numpy integers as int64 (no bools, floats or nesting)."""
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise TypeError(f"{name}: expected integers, got {_type_name(v)} {v!r} in a {type(values).__name__}")
        if not minimum <= operator.index(v) <= INT64_MAX:
            raise ValueError(f"{name}: expected integers in [{minimum}, {INT64_MAX}], got {v}")
    return np.array([int(v) for v in values], dtype=np.int64)


def ids_arg(ids: object, name: str, *, count: int | None = None) -> np.ndarray:
    """Non-negative integer ids as a contiguous int64 array. The one rule for every id (and group)
    argument: an int is one id; a list, tuple or 1-D integer array is many."""
    if isinstance(ids, numbers.Integral) and not isinstance(ids, (bool, np.bool_)):
        ids = np.asarray([int_arg(ids, name, minimum=0, maximum=INT64_MAX)], dtype=np.int64)
    elif isinstance(ids, (list, tuple)):
        ids = _int_sequence(ids, name, minimum=0)
    if not isinstance(ids, np.ndarray):
        raise TypeError(f"{name}: expected an int, a list of ints or a numpy.ndarray of integers, got {_type_name(ids)}")
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


def mmap_arg(mmap: object) -> bool:
    if not isinstance(mmap, (bool, np.bool_)):
        raise TypeError(f"mmap: expected a bool, got {_type_name(mmap)}")
    return bool(mmap)


def filter_arg(allow: object, deny: object) -> tuple[np.ndarray | None, np.ndarray | None]:
    """allow / deny as int64 id arrays (at most one of them). Each takes what ids take, a set of
    ints, or a boolean bitmap over ids (True at position i: id i)."""
    if allow is None and deny is None:
        return None, None
    if allow is not None and deny is not None:
        raise ValueError("allow, deny: give one of them, not both (deny=d is allow=everything but d)")

    def one(value: object, name: str) -> np.ndarray | None:
        if value is None:
            return None
        if isinstance(value, (set, frozenset)):
            value = sorted(value)
        if isinstance(value, np.ndarray) and value.dtype == np.bool_:
            if value.ndim != 1:
                raise ValueError(f"{name}: a bitmap over ids must be 1-D, got shape {value.shape}")
            return np.flatnonzero(value).astype(np.int64)
        if isinstance(value, (list, tuple)) and not value:
            return np.zeros(0, np.int64)
        return ids_arg(value, name)

    return one(allow, "allow"), one(deny, "deny")


def weights_arg(weights: object, names: list[str], has_queries: list[bool]) -> list[float]:
    """Per-field weights >= 0 in field order; default 1 for every field that has queries."""
    if weights is None:
        weights = {name: 1.0 for name, has in zip(names, has_queries) if has}
    if not isinstance(weights, Mapping):
        raise TypeError(f"weights: expected a mapping of field name to weight, got {_type_name(weights)}")
    unknown = set(weights) - set(names)
    if unknown:
        raise ValueError(f"weights: unknown fields {sorted(unknown)}; this index has {names}")
    out = []
    for name, has in zip(names, has_queries):
        value = weights.get(name, 0.0)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value) \
                or float(value) < 0:
            raise ValueError(f"weights[{name!r}]: expected a finite number >= 0, got {value!r}")
        if float(value) > 0 and not has:
            raise ValueError(f"queries: field {name!r} has weight {value} but no queries")
        out.append(float(value))
    if not any(out):
        raise ValueError(f"weights: at least one weight must be > 0, got {dict(zip(names, out))}")
    return out


def exclude_groups_arg(exclude_groups: object, nq: int) -> np.ndarray:
    """One group per query (an int applies to all); -1 excludes none."""
    if type(exclude_groups) is int and -1 <= exclude_groups <= INT64_MAX:  # the common call, at once
        return np.full(nq, exclude_groups, dtype=np.int64)
    if isinstance(exclude_groups, numbers.Integral) and not isinstance(exclude_groups, (bool, np.bool_)):
        group = int_arg(exclude_groups, "exclude_groups", minimum=-1, maximum=INT64_MAX)
        exclude_groups = np.full(nq, group, dtype=np.int64)
    elif isinstance(exclude_groups, (list, tuple)):
        exclude_groups = _int_sequence(exclude_groups, "exclude_groups", minimum=-1)
    if not isinstance(exclude_groups, np.ndarray) or exclude_groups.dtype.kind not in "iu":
        raise TypeError(f"exclude_groups: expected an int or an int64 array of one group per query, "
                        f"got {_type_name(exclude_groups)}")
    if exclude_groups.shape != (nq,):
        raise ValueError(f"exclude_groups: expected shape ({nq},) (one per query), got {exclude_groups.shape}")
    if exclude_groups.size and exclude_groups.dtype.kind == "i" and exclude_groups.min() < -1:
        raise ValueError(f"exclude_groups: groups are >= 0 (-1 for none), got {exclude_groups.min()}")
    if exclude_groups.size and exclude_groups.dtype.kind == "u" and exclude_groups.max() > INT64_MAX:
        raise ValueError(f"exclude_groups: groups must fit in int64, got {exclude_groups.max()}")
    return np.ascontiguousarray(exclude_groups, dtype=np.int64)


def field_codes_arg(codes: object, code_sizes: Mapping[str, int], name: str) -> tuple[list[np.ndarray | None], int]:
    """A mapping of field name to uint8 rows, as one array per field in field order (None where the
    mapping leaves the field out) and the common row count."""
    if not isinstance(codes, Mapping):
        raise TypeError(f"{name}: expected a mapping of field name to uint8 codes, got {type(codes).__name__}")
    unknown = set(codes) - set(code_sizes)
    if unknown:
        raise ValueError(f"{name}: unknown fields {sorted(unknown)}; this index has {list(code_sizes)}")
    arrays: list[np.ndarray | None] = []
    rows = None
    for field, size in code_sizes.items():
        if field not in codes:
            arrays.append(None)
            continue
        a = codes_arg(codes[field], size, f"{name}[{field!r}]")
        if rows is not None and a.shape[0] != rows:
            raise ValueError(f"{name}: every field needs the same number of rows, got {rows} and "
                             f"{a.shape[0]} ({field!r})")
        rows = a.shape[0]
        arrays.append(a)
    return arrays, (rows or 0)


def field_add_args(codes: object, groups: object, code_sizes: Mapping[str, int]) -> tuple[list[np.ndarray], int,
                                                                                          np.ndarray | None]:
    """What a multi-field add takes: every field's rows (in field order), their count, groups or None."""
    arrays, n = field_codes_arg(codes, code_sizes, "codes")
    missing = [f for f, a in zip(code_sizes, arrays) if a is None]
    if missing:
        raise ValueError(f"codes: every field is needed to add items, missing {missing}")
    return [a for a in arrays if a is not None], n, None if groups is None else ids_arg(groups, "groups", count=n)


def _plain_queries(queries: object, weights: object, code_sizes: Mapping[str, int]) -> tuple[list, int, list[float]] | None:
    """The common call (a dict of code arrays; no weights, or a dict of int or float weights) checked
    without the general checks' ABCs and dicts: field arrays, their rows and the weights in field
    order. None for anything else, errors included, which the general checks then take: their ABC
    checks and dicts were most of a small search's time in Python (CHANGELOG.md, "Multi-field
    searches of one query")."""
    if type(queries) is not dict or (weights is not None and type(weights) is not dict):
        return None
    arrays: list[np.ndarray | None] = []
    w: list[float] = []
    rows, given, used = -1, 0, 0
    for field, size in code_sizes.items():
        a = queries.get(field)
        if weights is None:
            weight = 0.0 if a is None else 1.0
        else:
            value = weights.get(field, 0.0)
            used += field in weights
            if type(value) is not float and type(value) is not int or not 0 <= value < math.inf:
                return None
            weight = float(value)
        if a is not None:
            try:
                a = codes_arg(a, size, "queries")  # the general checks raise again, with the field's name
            except (TypeError, ValueError):
                return None
            if rows >= 0 and a.shape[0] != rows:
                return None
            rows = a.shape[0]
            given += 1
        elif weight > 0:
            return None
        arrays.append(a)
        w.append(weight)
    # No field given, a key naming none (or holding None), or no positive weight.
    if rows < 0 or given != len(queries) or (weights is not None and used != len(weights)) or not any(w):
        return None
    return arrays, rows, w


def field_search_args(queries: object, k: object, weights: object, exclude_groups: object, one_per_group: object,
                      code_sizes: Mapping[str, int]) -> tuple[list[np.ndarray | None], int, list[float], int, Any, bool]:
    """What a multi-field search takes: field arrays (None where absent), nq, weights in field order,
    k, one excluded group per query or None, one_per_group."""
    common = _plain_queries(queries, weights, code_sizes)
    if common is not None:
        arrays, nq, w = common
    else:
        arrays, nq = field_codes_arg(queries, code_sizes, "queries")
        w = weights_arg(weights, list(code_sizes), [a is not None for a in arrays])
    exclude = None if exclude_groups is None else exclude_groups_arg(exclude_groups, nq)
    if not isinstance(one_per_group, (bool, np.bool_)):
        raise TypeError(f"one_per_group: expected a bool, got {type(one_per_group).__name__}")
    return arrays, nq, w, k_arg(k), exclude, bool(one_per_group)
