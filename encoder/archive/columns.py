"""The slices' catalogue columns as one mapped numpy file per committed generation, for filters and
patient-level ranking at index speed (the catalogue stays the record; this is its fast copy, written
before the transaction that names it, like the index)."""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from hashindex import FormatError

from .catalogue import CONTRASTS, NUMBERS

SLICE_DTYPE = np.dtype([("id", "<i8"), ("case", "<i8"), ("z", "<i4"), ("level", "<f4"), ("abnormal", "i1"),
                        ("labelled", "i1"), ("tumour_mm2", "<f4")])


def from_rows(rows: list[tuple]) -> np.ndarray:
    """Catalogue slice rows (id, case_id, z, level, abnormal, tumour_mm2, labelled) as columns;
    unknowns (NULL) become -1 for flags and NaN for areas."""
    out = np.empty(len(rows), SLICE_DTYPE)
    if rows:
        cols = list(zip(*rows))
        out["id"], out["case"], out["z"], out["level"] = cols[0], cols[1], cols[2], cols[3]
        out["abnormal"] = [-1 if v is None else v for v in cols[4]]
        out["tumour_mm2"] = [np.nan if v is None else v for v in cols[5]]
        out["labelled"] = [-1 if v is None else v for v in cols[6]]
    return out


def write(path: Path, columns: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, np.ascontiguousarray(columns, SLICE_DTYPE), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read(path: Path) -> np.ndarray:
    try:
        columns = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise
        raise FormatError(f"{path}: not an archive's slice columns ({exc})") from None
    if columns.dtype != SLICE_DTYPE or columns.ndim != 1:
        raise FormatError(f"{path}: slice columns of dtype {columns.dtype}, expected {SLICE_DTYPE}")
    return columns


class Columns:
    """The slice columns as contiguous arrays (a mapped file's fields are strided: every read of one
    would touch all of them), ``columns["level"]`` etc., and level bands computed once per count."""

    def __init__(self, table: np.ndarray, stored_bands: int) -> None:
        self.arrays = {name: np.ascontiguousarray(table[name]) for name in SLICE_DTYPE.names}
        self._bands: dict[int, np.ndarray] = {}
        self.stored_bands = stored_bands  # the bands the index is kept in (banded.py)
        stored = self.bands(stored_bands)
        self.rows_of_band = [np.flatnonzero(stored == b) for b in range(stored_bands)]

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def __len__(self) -> int:
        return len(self.arrays["id"])

    def bands(self, count: int) -> np.ndarray:
        from .retrieval import bands

        if count not in self._bands:
            self._bands[count] = bands(self.arrays["level"], count)
        return self._bands[count]

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """Row of each id (every id must be one of the columns')."""
        return np.searchsorted(self.arrays["id"], ids)

    def stored_band_of(self, ids: np.ndarray) -> np.ndarray:
        return self.bands(self.stored_bands)[self.rows(ids)]


class CaseTable:
    """The cases' columns (those without an error), for filters and for naming hits."""

    def __init__(self, db: sqlite3.Connection) -> None:
        rows = db.execute(f"SELECT id, name, layout, {', '.join(CONTRASTS)}, tumour_ml, slices FROM cases "
                          "WHERE error IS NULL ORDER BY id").fetchall()
        cols = list(zip(*rows)) if rows else [[]] * (5 + len(CONTRASTS))
        self.ids = np.asarray(cols[0], np.int64)
        self.names = np.asarray(cols[1], dtype=object)
        self.columns: dict[str, np.ndarray] = {"case": self.names, "layout": np.asarray(cols[2], dtype=object)}
        for n, c in enumerate(CONTRASTS):
            self.columns[c] = np.asarray(cols[3 + n], bool)
        k = 3 + len(CONTRASTS)
        self.columns["tumour_ml"] = np.asarray([np.nan if v is None else v for v in cols[k]], np.float64)
        self.columns["slices"] = np.asarray(cols[k + 1], np.float64)

    def rows_of(self, case_ids: np.ndarray) -> np.ndarray:
        """Row of each case id in this table (every id must be one of its cases)."""
        return np.searchsorted(self.ids, case_ids)


def evaluate(tree: tuple, slices: np.ndarray, cases: CaseTable) -> np.ndarray:
    """Boolean mask over ``slices`` of a parsed ``where`` filter (catalogue.parse_where)."""
    rows: Any = None

    def case_level(values: np.ndarray) -> np.ndarray:
        nonlocal rows
        if rows is None:
            rows = cases.rows_of(slices["case"])
        return values[rows] if len(values) else np.zeros(len(slices), values.dtype)

    def column(name: str) -> np.ndarray:
        if name in ("z", "level", "tumour_mm2"):
            return np.asarray(slices[name], np.float64)
        return case_level(cases.columns[name])

    def run(node: tuple) -> np.ndarray:
        kind = node[0]
        if kind in ("and", "or"):
            parts = [run(n) for n in node[1]]
            return np.logical_and.reduce(parts) if kind == "and" else np.logical_or.reduce(parts)
        if kind == "not":
            return ~run(node[1])
        if kind == "is":
            name = node[1]
            if name in CONTRASTS:
                return case_level(cases.columns[name])
            flag = {"abnormal": ("abnormal", 1), "normal": ("abnormal", 0), "labelled": ("labelled", 1)}[name]
            return np.asarray(slices[flag[0]]) == flag[1]
        op, name, value = node
        values = column(name)
        if name in NUMBERS:
            known = ~np.isnan(values)  # an unknown value (not segmented) matches no comparison
            compare = {"=": np.equal, "!=": np.not_equal, "<": np.less, "<=": np.less_equal, ">": np.greater,
                       ">=": np.greater_equal}[op]
            with np.errstate(invalid="ignore"):
                return known & compare(values, value)
        return (values == value) if op == "=" else (values != value)

    return np.asarray(run(tree), bool)
