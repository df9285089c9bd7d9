"""The archive's SQLite catalogue: what each case and slice is, which model encoded them, and which
index file holds their codes.

The catalogue is the archive's single point of truth: a commit writes new index files first, then
one SQLite transaction that inserts or deletes rows *and* names the new file. A crash before that
transaction leaves the old file named and the old rows, which agree; the new file is a stray that the
next writer deletes. So the index and the catalogue can never disagree, whatever is killed when.
"""
from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

from hashindex import FormatError

from ..data.layouts import CONTRASTS

FORMAT = "hashindex-archive"
VERSION = 2  # 2: an archive sharded over Ray (its meta has "shards"); an unsharded one is still 1

SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE cases (
    id INTEGER PRIMARY KEY,                 -- the index's group of the case's slices (never reused)
    name TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    layout TEXT,
    {", ".join(f"{c} INTEGER NOT NULL DEFAULT 0" for c in CONTRASTS)},
    checksum TEXT,                          -- sha256 over the files' own sha256 sums
    files TEXT,                             -- JSON: role -> [path, size, mtime_ns, sha256]
    slices INTEGER NOT NULL DEFAULT 0,
    tumour_ml REAL,                         -- predicted tumour volume (NULL: not segmented)
    added TEXT NOT NULL,
    error TEXT                              -- the loader's error (such a case has no slices)
);
CREATE TABLE slices (
    id INTEGER PRIMARY KEY,                 -- the item's id in the index
    case_id INTEGER NOT NULL REFERENCES cases(id) ON DELETE CASCADE,
    z INTEGER NOT NULL,                     -- axial index in the case's volume
    level REAL NOT NULL,                    -- 0 first brain slice .. 1 last
    abnormal INTEGER,                       -- predicted tumour in the slice (NULL: not segmented)
    tumour_mm2 REAL,                        -- predicted tumour area
    labelled INTEGER                        -- tumour in the case's own labels (NULL: no labels)
);
CREATE INDEX slices_case ON slices(case_id, z);
CREATE INDEX slices_level ON slices(level);
CREATE INDEX slices_abnormal ON slices(abnormal);
"""


def connect(path: Path, *, create: bool = False, timeout: float = 30.0) -> sqlite3.Connection:
    """The catalogue at ``path``: created (empty schema) or checked to be one of ours, of a version
    this release reads. WAL lets readers query while a writer commits."""
    if not create and not path.is_file():
        raise FileNotFoundError(f"{path.parent}: not an archive (no {path.name}); create one with "
                                "`hashindex archive create`")
    try:
        db = sqlite3.connect(str(path), timeout=timeout, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("PRAGMA foreign_keys=ON")
        if create:
            with transaction(db):
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                set_meta(db, format=FORMAT, version=VERSION)
        meta = get_meta(db)
    except sqlite3.DatabaseError as exc:
        raise FormatError(f"{path}: not a hashindex archive catalogue ({exc})") from None
    if meta.get("format") != FORMAT:
        raise FormatError(f"{path}: an SQLite file, but not a hashindex archive catalogue")
    if int(meta.get("version", -1)) > VERSION:
        raise FormatError(f"{path}: archive format {meta['version']}; this release reads up to {VERSION}: "
                          "upgrade hashindex")
    return db


class transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (ROLLBACK on an exception): one all-or-nothing change."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind, *_: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def get_meta(db: sqlite3.Connection) -> dict[str, Any]:
    """The meta table, each value decoded from its JSON."""
    try:
        return {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta").fetchall()}
    except (json.JSONDecodeError, TypeError) as exc:
        raise sqlite3.DatabaseError(f"a meta value is not JSON ({exc})") from None


def set_meta(db: sqlite3.Connection, **values: Any) -> None:
    db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                   [(k, json.dumps(v)) for k, v in values.items()])


# -- where: the metadata filter ------------------------------------------------------------------
# A small language over the slices' columns (see ``Columns``), evaluated with numpy over the mapped
# columns of the committed generation (SQLite's row-by-row fetch of 200k matching ids out of 1M takes
# longer than the whole search):
#   t1ce AND abnormal        NOT flair        level >= 0.3 AND level <= 0.7
#   tumour_mm2 > 100 OR (case = 'BraTS2021_00002' AND z < 60)
BOOLEANS = (*CONTRASTS, "abnormal", "normal", "labelled")
NUMBERS = ("z", "level", "tumour_mm2", "tumour_ml", "slices")
STRINGS = ("case", "layout")
_TOKEN = re.compile(r"\s*(?:(?P<num>-?\d+(?:\.\d*)?(?:e-?\d+)?)|(?P<str>'(?:[^']|'')*'|\"[^\"]*\")"
                    r"|(?P<op><=|>=|!=|=|<|>|\(|\))|(?P<word>[A-Za-z_][A-Za-z0-9_]*))", re.I)


def parse_where(text: str) -> tuple:
    """The filter as a tree: ("or"|"and", [trees]), ("not", tree), ("is", name), (op, name, value);
    ValueError naming the position and what was expected when the text is not one."""
    if not isinstance(text, str):
        raise TypeError(f"where: expected a filter string such as \"t1ce AND abnormal\", got {type(text).__name__}")
    tokens, pos = [], 0
    while text[pos:].strip():
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError(f"where: cannot read {text[pos:].strip()[:20]!r} at position {pos} of {text!r}")
        kind = m.lastgroup
        tokens.append((kind, m.group(kind), m.start(kind)))
        pos = m.end()
    parser = _Parser(text, tokens)
    tree = parser.expression()
    if parser.i != len(tokens):
        parser.fail("AND, OR or the end")
    return tree


class _Parser:
    def __init__(self, text: str, tokens: list) -> None:
        self.text, self.tokens, self.i = text, tokens, 0

    def fail(self, expected: str) -> None:
        got = (f"{self.tokens[self.i][1]!r} at position {self.tokens[self.i][2]}" if self.i < len(self.tokens)
               else "the end")
        raise ValueError(f"where: expected {expected}, got {got} in {self.text!r}; names: "
                         f"{', '.join(BOOLEANS + NUMBERS + STRINGS)}")

    def take(self, kind: str | None = None, *values: str) -> str | None:
        if self.i < len(self.tokens):
            k, v, _ = self.tokens[self.i]
            if (kind is None or k == kind) and (not values or v.upper() in values):
                self.i += 1
                return v
        return None

    def expression(self) -> tuple:
        parts = [self.conjunction()]
        while self.take("word", "OR"):
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else ("or", parts)

    def conjunction(self) -> tuple:
        parts = [self.factor()]
        while self.take("word", "AND"):
            parts.append(self.factor())
        return parts[0] if len(parts) == 1 else ("and", parts)

    def factor(self) -> tuple:
        if self.take("word", "NOT"):
            return ("not", self.factor())
        if self.take("op", "("):
            inner = self.expression()
            if not self.take("op", ")"):
                self.fail("')'")
            return inner
        name = self.take("word")
        if name is None:
            self.fail("a name")
        name = name.lower()  # type: ignore[union-attr]
        if name in BOOLEANS:
            return ("is", name)
        if name not in NUMBERS + STRINGS:
            self.i -= 1
            self.fail("a known name")
        op = self.take("op", "=", "!=", "<", "<=", ">", ">=")
        if op is None:
            self.fail(f"a comparison (=, !=, <, <=, >, >=) after {name}")
        if name in STRINGS and op not in ("=", "!="):
            self.i -= 1
            self.fail(f"= or != after {name}")
        if self.i >= len(self.tokens) or self.tokens[self.i][0] not in ("num", "str", "word"):
            self.fail(f"a value after {name} {op}")
        kind, value, _ = self.tokens[self.i]
        self.i += 1
        if name in NUMBERS:
            if kind != "num":
                self.i -= 1
                self.fail(f"a number after {name} {op}")
            return (op, name, float(value))
        if kind == "str":
            value = value[1:-1].replace("''", "'") if value[0] == "'" else value[1:-1]
        return (op, name, value)
