"""``Archive``: a folder of cases' codes that grows: a MultiFieldIndex file plus the SQLite catalogue
that names it (see catalogue.py for why they cannot disagree)."""
from __future__ import annotations

import fcntl
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

import hashindex
from hashindex._validate import int_arg, k_arg

from . import catalogue as cat
from . import columns as cols
from .banded import BANDS, BandedIndex
from .common import (
    ArchiveLockedError,
    ModelMismatchError,
    _default_encoder,
    _describe,
    _kill_point,
    _now,
    encoder_identity,
)
from .retrieval import MODES, PatientHit, rank_patients
from .writes import Writes

CATALOGUE = "catalogue.sqlite"
LOCK = "write.lock"
# named by generation (a sharded index's bands are folders); the catalogue names the current
GENERATION_FILES = ("index-*.hx", "index-*.shards", "slices-*.npy")


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@dataclass
class Snapshot:
    key: tuple
    index: BandedIndex
    columns: cols.Columns  # one row per item of the index, by id
    cases: cols.CaseTable


class Archive(Writes):
    """An archive folder: ``catalogue.sqlite`` (cases, slices, the model), ``index-<generation>.b<k>.hx``
    (their codes: one MultiFieldIndex per band of levels, banded.py, with fields ``normal`` and
    ``abnormal``, one item per slice, the case as its group) and ``slices-<generation>.npy`` (the
    slices' columns). Open with :meth:`create` or :meth:`open`."""

    def __init__(self, path: Path, db: Any) -> None:
        self.path, self._db = path, db
        self._snapshot: Snapshot | None = None
        self._work: BandedIndex | None = None  # a writer's index (sharded: its actors and folders)

    # -- opening ----------------------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, encoder: Any = None, *, segment: bool = True, shards: int = 0,
               bands: int | None = None) -> Archive:
        """A new, empty archive in ``path`` (a new or empty folder) for this encoder (default: the
        shipped model). ``segment``: also store each slice's predicted tumour area (the segmentation
        decoder runs at ingest; ``where="abnormal"`` needs it).

        ``shards``: keep the codes in ``hashindex.distributed.ShardedMultiFieldIndex`` es of that many
        Ray actors each (the Ray cluster of ``RAY_ADDRESS``, else a local one), for archives larger
        than one machine's memory; the answers are the same. ``bands``: indexes by axial level
        (default 10, or 1 when sharded: each band is ``shards`` actors)."""
        path = Path(path)
        shards = int_arg(shards, "shards", minimum=0, maximum=1 << 16)
        bands = int_arg(BANDS if bands is None and not shards else 1 if bands is None else bands, "bands",
                        minimum=1, maximum=1000)
        tmp = path / (CATALOGUE + ".new")  # what a create killed half way leaves: started again
        if path.exists() and (not path.is_dir() or any(not p.name.startswith(tmp.name) for p in path.iterdir())):
            raise FileExistsError(f"path: {path} exists and is not an empty folder; an archive needs its own folder")
        encoder = _default_encoder(encoder)
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob(tmp.name + "*"):
            stale.unlink()
        db = cat.connect(tmp, create=True)
        with cat.transaction(db):
            cat.set_meta(db, encoder=encoder_identity(encoder), segment=bool(segment), generation=0, index_file="",
                         bands=bands, shards=shards, next_id=0, next_case=0, created=_now(),
                         version=cat.VERSION if shards else 1)  # unsharded: what earlier releases read
        db.close()
        for suffix in ("-wal", "-shm"):
            Path(str(tmp) + suffix).unlink(missing_ok=True)
        os.replace(tmp, path / CATALOGUE)  # the folder becomes an archive at once, whole
        return cls.open(path)

    @classmethod
    def open(cls, path: str | os.PathLike) -> Archive:
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"path: {path} is not a folder (an archive is one)")
        return cls(path, cat.connect(path / CATALOGUE))

    def close(self) -> None:
        self._db.close()
        if self._snapshot is not None:
            self._snapshot.index.close()
        self._snapshot = None

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what it holds ----------------------------------------------------------------------------
    @property
    def meta(self) -> dict[str, Any]:
        return cat.get_meta(self._db)

    def info(self) -> dict[str, Any]:
        """Cases, slices, failed cases, the model and the index file, as JSON-ready values."""
        meta = self.meta
        row = self._db.execute("SELECT COUNT(*), COALESCE(SUM(slices), 0), COUNT(error) FROM cases").fetchone()
        abnormal = self._db.execute("SELECT COUNT(*) FROM slices WHERE abnormal = 1").fetchone()[0]
        return {"path": str(self.path), "format": meta["format"], "version": meta["version"],
                "cases": row[0] - row[2], "failed_cases": row[2], "slices": row[1], "abnormal_slices": abnormal,
                "encoder": meta["encoder"], "segment": meta["segment"], "index_file": meta["index_file"],
                "bands": meta["bands"], "shards": meta.get("shards", 0), "generation": meta["generation"],
                "created": meta["created"]}

    def cases(self) -> list[dict[str, Any]]:
        """One dict per case (failed ones included, with their error), by name."""
        cur = self._db.execute("SELECT * FROM cases ORDER BY name")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def snapshot(self) -> Snapshot:
        """The last commit as readers see it: its index and slice columns, mapped (a writer's next
        commit writes new files, never these), and its cases."""
        for _ in range(5):
            self._db.execute("BEGIN")  # the meta and the cases of one commit (WAL: a read snapshot)
            try:
                meta = self.meta
                key = (meta["generation"], meta["index_file"])
                cases = cols.CaseTable(self._db) if self._snapshot is None or self._snapshot.key != key else None
            finally:
                self._db.execute("COMMIT")
            if self._snapshot is not None and self._snapshot.key == key:
                return self._snapshot
            try:
                index, columns = self._committed(meta)
            except FileNotFoundError:  # a writer committed twice since meta was read: read it again
                continue
            if self._snapshot is not None:
                self._snapshot.index.close()
            self._snapshot = Snapshot(key, index, cols.Columns(columns, meta["bands"]), cases)  # type: ignore[arg-type]
            return self._snapshot
        raise hashindex.FormatError(f"{self.path}: the catalogue names {meta['index_file']}, which is missing")

    def check_encoder(self, encoder: Any) -> None:
        """ModelMismatchError unless ``encoder`` makes this archive's codes."""
        have, offered = self.meta["encoder"], encoder_identity(encoder)
        keys = ("sha256", "hashing", "bits", "normal_nbits", "abnormal_nbits", "image_size")
        if any(have.get(k) != offered.get(k) for k in keys):
            raise ModelMismatchError(
                f"encoder: this archive was encoded by {_describe(have)}, not {_describe(offered)}; use that model, or "
                f"re-encode the archive with this one: `hashindex archive reencode {self.path} --checkpoint ...`")

    # -- writing ----------------------------------------------------------------------------------
    @contextmanager
    def _writing(self, wait: float):
        """The archive's write lock (flock: released by the kernel when a writer dies), then the
        clean-up of what a killed writer left: index files the catalogue does not name."""
        lock = open(self.path / LOCK, "a+")
        deadline = time.monotonic() + max(0.0, float(wait))
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    lock.close()
                    raise ArchiveLockedError(
                        f"{self.path}: another process is writing to this archive; wait for it (or pass "
                        f"wait=seconds / --wait) and run again") from None
                time.sleep(0.05)
        try:
            self._remove_stray_files(keep_previous=False)
            yield
        finally:
            if self._work is not None:
                self._work.close()
                self._work = None
            BandedIndex.remove_work(self.path)
            lock.close()

    def _remove_stray_files(self, keep_previous: bool) -> None:
        generation = self.meta["generation"]
        for pattern in GENERATION_FILES:
            for p in self.path.glob(pattern):
                try:
                    gen = int(p.name.split("-", 1)[1].split(".")[0])
                except ValueError:
                    continue
                if gen == generation or (keep_previous and gen == generation - 1):
                    continue  # the current files, and the previous ones a reader may be opening
                _remove(p)
            for p in self.path.glob(pattern + ".tmp*"):
                _remove(p)
        if not keep_previous:  # under the lock, before this writer makes its own
            BandedIndex.remove_work(self.path)

    def _commit(self, index: BandedIndex | None, columns: np.ndarray | None,
                changes: Callable[[Any], None], **meta: Any) -> None:
        """The one way anything changes: the new generation's index and columns files (when the
        slices changed), then one transaction that applies ``changes`` and names them. Killed
        anywhere, the archive stays at the last commit."""
        generation = self.meta["generation"] + (1 if index is not None else 0)
        names = {}
        if index is not None:
            names = {"index_file": f"index-{generation:06d}", "columns_file": f"slices-{generation:06d}.npy"}
            _kill_point()
            index.save(self.path, names["index_file"])
            _kill_point()
            cols.write(self.path / names["columns_file"], columns)
            _kill_point()
        with cat.transaction(self._db) as db:
            changes(db)
            _kill_point()
            cat.set_meta(db, generation=generation, **names, **meta)
        _kill_point()
        self._remove_stray_files(keep_previous=True)

    def _committed(self, meta: dict[str, Any], writable: bool = False) -> tuple[BandedIndex, np.ndarray]:
        """The index (its bands mapped: copied into memory at a band's first change; sharded, with
        ``writable``, a copy of their folders) and the slice columns that ``meta`` names."""
        if not meta["index_file"]:
            index = self._new_index(meta["encoder"]) if writable else BandedIndex.empty(meta["encoder"], meta["bands"])
            return index, np.empty(0, cols.SLICE_DTYPE)
        columns = cols.read(self.path / meta["columns_file"])
        return BandedIndex.load(self.path, meta["index_file"], meta["bands"], meta.get("shards", 0),
                                writable=writable), columns

    def _writable(self) -> tuple[BandedIndex, np.ndarray]:
        index, columns = self._committed(self.meta, writable=True)
        self._work = index
        return index, np.array(columns)

    def _new_index(self, identity: dict[str, Any]) -> BandedIndex:
        """An empty index for a writer, of this archive's bands and shards."""
        meta = self.meta
        self._work = BandedIndex.empty(identity, meta["bands"], meta.get("shards", 0), self.path)
        return self._work

    # -- queries ----------------------------------------------------------------------------------
    def search_slice(self, case: str, z: int, *, mode: str = "both", k: int = 10, where: str | None = None,
                     tumour_from: tuple[str, int] | None = None, include_own_case: bool = False,
                     levels: int = 10, window: int = 1) -> list[PatientHit]:
        """Other patients ranked by their best slice at the level of slice ``z`` of ``case`` (both in
        the archive). ``mode``: normal (same anatomy, whatever the tumour), abnormal (a similar
        tumour), both, or synthetic (this slice's anatomy with the tumour of ``tumour_from``, a
        (case, z) of the archive). ``where``: a metadata filter (catalogue.parse_where), applied inside
        the search, so k patients come back whenever k qualify."""
        snap = self.snapshot()
        row = self._slice_row(snap, case, z, "case, z")
        ids = snap.columns["id"][[row]]
        codes = snap.index.get(ids, snap.columns.stored_band_of(ids))
        levels_q = np.asarray(snap.columns["level"][[row]], np.float64)
        own = None if include_own_case else int(snap.columns["case"][row])
        return self._rank(snap, codes, levels_q, np.array([z]), mode, k, where, tumour_from, own, levels, window)

    def search_case(self, folder: str | os.PathLike, encoder: Any = None, *, mode: str = "both", k: int = 10,
                    where: str | None = None, tumour_from: tuple[str, int] | None = None, layout: Any = None,
                    contrast_map: Any = None, max_query_slices: int = 16, include_own_case: bool = False, levels: int = 10,
                    window: int = 1) -> list[PatientHit]:
        """Patients ranked against a whole case that need not be in the archive (a folder in any
        layout the loader knows): its slices are encoded with the archive's model, and up to
        ``max_query_slices`` of them, spread over its extent (over its tumour, for ``abnormal``), are
        the query slices. Other arguments as :meth:`search_slice`; a case of the same name in the
        archive is left out unless ``include_own_case``."""
        from ..data import find_cases
        from .ingest import read_case

        encoder = _default_encoder(encoder)
        self.check_encoder(encoder)
        found = find_cases(folder, layout, contrast_map)
        if len(found) != 1:
            raise ValueError(f"folder: expected one case folder, {folder} holds {len(found)} cases")
        case = read_case(found[0], encoder.image_size)
        if case.error is not None:
            raise ValueError(f"folder: {folder}: {case.error}")
        s = case.slices
        codes = encoder.encode(s.images, present=s.contrasts)
        rows = np.arange(len(s))
        if mode == "abnormal":
            rows = np.flatnonzero(encoder.tumour_pixels(codes) > 0)
            if not len(rows) and s.seg is not None:
                rows = np.flatnonzero(s.abnormal == 1)
            if not len(rows):
                raise ValueError(f"folder: {found[0].case_id} shows no tumour (predicted or labelled); an abnormal "
                                 "query needs one: use mode normal or both")
        cap = int_arg(max_query_slices, "max_query_slices", minimum=1)
        if len(rows) > cap:
            rows = rows[np.round(np.linspace(0, len(rows) - 1, cap)).astype(np.int64)]
        snap = self.snapshot()
        own = None
        if not include_own_case:
            match = np.flatnonzero(snap.cases.names == found[0].case_id)
            own = int(snap.cases.ids[match[0]]) if len(match) else None
        queries = {"normal": codes.normal_bits[rows], "abnormal": codes.abnormal_bits[rows]}
        return self._rank(snap, queries, case.levels[rows], s.slice_index[rows], mode, k, where, tumour_from, own,
                          levels, window)

    def _slice_row(self, snap: Snapshot, case: str, z: int, what: str) -> int:
        match = np.flatnonzero(snap.cases.names == case)
        if not len(match):
            raise KeyError(f"{what}: case {case!r} is not in the archive")
        case_id = snap.cases.ids[match[0]]
        rows = np.flatnonzero((snap.columns["case"] == case_id) & (snap.columns["z"] == z))
        if not len(rows):
            zs = snap.columns["z"][snap.columns["case"] == case_id]
            raise KeyError(f"{what}: case {case!r} has no indexed slice {z} (its brain slices: {zs.min()}..{zs.max()})")
        return int(rows[0])

    def _rank(self, snap: Snapshot, queries: dict, levels_q: np.ndarray, z: np.ndarray, mode: str, k: int,
              where: str | None, tumour_from: tuple[str, int] | None, own: int | None, levels: int,
              window: int) -> list[PatientHit]:
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {list(MODES)}, got {mode!r}")
        if (mode == "synthetic") != (tumour_from is not None):
            raise ValueError("tumour_from: a (case, z) of the archive goes with mode 'synthetic', and only with it")
        k = k_arg(k)
        levels = int_arg(levels, "levels", minimum=0)
        window = int_arg(window, "window", minimum=0)
        queries = {f: np.ascontiguousarray(q) for f, q in queries.items()}
        if tumour_from is not None:
            donor = self._slice_row(snap, tumour_from[0], int(tumour_from[1]), "tumour_from")
            ids = snap.columns["id"][[donor]]
            abnormal = snap.index.get(ids, snap.columns.stored_band_of(ids), "abnormal")
            queries["abnormal"] = np.repeat(abnormal, len(levels_q), axis=0)
        allow = None if where is None else cols.evaluate(cat.parse_where(where), snap.columns, snap.cases)
        return rank_patients(snap, queries, levels_q, z, MODES[mode], k, allow=allow, exclude_case=own,
                             levels=levels, window=window)
