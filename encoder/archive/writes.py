"""What changes an archive: ``add``, ``remove`` and ``reencode``, each through ``Archive._commit``."""
from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np

from . import catalogue as cat
from . import columns as cols
from .common import AddReport, _default_encoder, _kill_point, _now, _progress, encoder_identity
from .ingest import ReadCase, case_checksum, file_records, read_cases
from .retrieval import bands


class Writes:
    """Archive's writing methods (a mixin: Archive provides _writing, _commit, _writable, meta)."""

    def add(self, folders: Sequence[str | os.PathLike] | str | os.PathLike, encoder: Any = None, *,
            layout: Any = None, contrast_map: Any = None, workers: int | None = None, commit_slices: int = 4096,
            commit_seconds: float = 60.0, wait: float = 0.0, progress: bool = False,
            log: Callable[[str], None] | None = None) -> AddReport:
        """Adds every case found under ``folders`` (any layout the loader knows; ``layout`` forces one,
        ``contrast_map`` names DICOM series' contrasts: hashindex.encoder.data.dicom).

        Cases already in with the same files are skipped; a case in with other files is left as it
        is and reported (remove it first to replace it); a case that cannot be read or encoded is
        recorded with the error and the others go on (the next add tries it again). Volumes are read by
        ``workers`` processes while this one encodes (0: by this one, between cases; the default on
        2 cores, where a reading process beside torch's two threads measured slower: RESULTS.md,
        "Archive"; cores - 1 above that). Changes are committed every ``commit_slices``
        slices or ``commit_seconds``, and at the end: killed at any moment, the archive holds every
        case fully or not at all, and running the same add again finishes the job. ``wait``: seconds
        to wait for another writer's lock (default: fail at once with ArchiveLockedError)."""
        from ..data import find_cases

        started = time.perf_counter()
        encoder = _default_encoder(encoder)
        self.check_encoder(encoder)
        if isinstance(folders, (str, os.PathLike)):
            folders = [folders]
        found = [files for folder in folders for files in find_cases(folder, layout, contrast_map)]  # errors first
        names = [f.case_id for f in found]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"folders: case name {twice[0]!r} appears twice among the folders given")
        report = AddReport()
        with self._writing(wait):
            known = {r["name"]: r for r in self.cases()}
            todo = []
            for files in found:
                row = known.get(files.case_id)
                if row is None or row["error"] is not None:
                    todo.append(files)
                    continue
                stored = json.loads(row["files"])
                if case_checksum(file_records(files, stored)) == row["checksum"]:
                    report.skipped.append(files.case_id)
                else:
                    report.changed[files.case_id] = (f"in the archive with other files (from {row['source']}); "
                                                    "remove it first to replace it")
            self._ingest(todo, encoder, report, workers, commit_slices, commit_seconds, progress)
        report.seconds = time.perf_counter() - started
        if log is not None:
            log(f"{len(report.added)} cases added ({report.slices} slices), {len(report.skipped)} already in, "
                f"{len(report.failed)} failed, {len(report.changed)} changed, in {report.seconds:.1f} s")
        return report

    def _ingest(self, todo: list, encoder: Any, report: AddReport, workers: int | None, commit_slices: int,
                commit_seconds: float, progress: bool, *, index: Any = None, replace_all: bool = False) -> None:
        """Reads, encodes and commits ``todo``: in batches (add), or all in one commit into a fresh
        ``index`` that replaces every case's rows and names the new encoder (``replace_all``)."""
        meta = self.meta
        segment = meta["segment"]
        keep_ids = {r["name"]: r["id"] for r in self.cases() if replace_all or r["error"] is not None}
        index, columns = self._writable() if index is None else (index, np.empty(0, cols.SLICE_DTYPE))
        next_id, next_case = meta["next_id"], meta["next_case"]
        pending: list[tuple[str, tuple, list]] = []  # (name, case row, slice rows) not yet committed
        last_commit, slices_pending = time.monotonic(), 0

        def commit() -> None:
            nonlocal pending, slices_pending, last_commit, columns
            if not pending and not replace_all:
                return
            batch = pending

            def changes(db: Any) -> None:
                if replace_all:
                    db.execute("DELETE FROM cases")
                _insert(db, batch)

            extra = {"encoder": encoder_identity(encoder)} if replace_all else {}
            if slices_pending > 0 or replace_all:
                columns = np.concatenate([columns, cols.from_rows([r for _, _, rows in batch for r in rows])])
                self._commit(index, columns, changes, next_id=next_id, next_case=next_case, **extra)
            else:  # failed cases only: rows, no new generation
                self._commit(None, None, changes, next_id=next_id, next_case=next_case)
            for name, row, _ in batch:
                if row[-1] is not None:
                    report.failed[name] = row[-1]
                else:
                    report.added.append(name)
            report.slices += slices_pending
            pending, slices_pending, last_commit = [], 0, time.monotonic()

        cores = os.cpu_count() or 1
        workers = (0 if cores <= 2 else cores - 1) if workers is None else max(0, int(workers))
        bar = _progress(len(todo)) if progress else None
        started, encoded = time.monotonic(), 0
        for case in read_cases(todo, encoder.image_size, workers):
            _kill_point()
            # A case tried before (a failed row, or every case when re-encoding) keeps its id, its
            # group in the index: a resumed add then ends exactly as an uninterrupted one.
            case_id = keep_ids.get(case.files.case_id, next_case)
            try:
                row, rows = _encode_case(case, encoder, segment, index, next_id, case_id, meta["bands"])
            except ValueError as exc:  # what the encoder refuses in a case's images (before it adds any)
                case.error = f"{type(exc).__name__}: {exc}"
                row, rows = _encode_case(case, encoder, segment, index, next_id, case_id, meta["bands"])
            next_id += len(rows)
            next_case += int(case_id == next_case)
            slices_pending += len(rows)
            pending.append((case.files.case_id, row, rows))
            if bar is not None:  # cases done and left (with the time left), and the slices' rate
                encoded += len(rows)
                rate = encoded / max(time.monotonic() - started, 1e-9)
                bar.set_postfix_str(f"{encoded} slices, {rate:.0f} slices/s", refresh=False)
                bar.update(1)
            if not replace_all and (slices_pending >= commit_slices or time.monotonic() - last_commit >= commit_seconds):
                commit()
        commit()
        if bar is not None:
            bar.close()

    def remove(self, names: Sequence[str] | str, *, wait: float = 0.0) -> int:
        """Removes these cases (their slices from the index and the catalogue) in one commit;
        KeyError, and nothing removed, if one is not in the archive. Returns the slices removed."""
        names = [names] if isinstance(names, str) else list(names)
        with self._writing(wait):
            rows = {r["name"]: r for r in self.cases()}
            missing = [n for n in names if n not in rows]
            if missing:
                raise KeyError(f"names: case {missing[0]!r} is not in the archive")
            case_ids = [rows[n]["id"] for n in names]
            marks = ",".join("?" * len(case_ids))
            ids = np.array([r[0] for r in self._db.execute(
                f"SELECT id FROM slices WHERE case_id IN ({marks})", case_ids)], dtype=np.int64)
            drop = lambda db: db.execute(f"DELETE FROM cases WHERE id IN ({marks})", case_ids)  # noqa: E731
            if not len(ids):  # failed cases: rows only
                self._commit(None, None, drop)
                return 0
            index, columns = self._writable()
            gone = np.isin(columns["case"], case_ids)
            index.remove(columns["id"][gone], bands(columns["level"][gone], self.meta["bands"]))
            self._commit(index, columns[~gone], drop)
            return len(ids)

    def reencode(self, encoder: Any, *, workers: int | None = None, wait: float = 0.0,
                 progress: bool = False) -> AddReport:
        """Every case encoded again with another model from its recorded files (which must still be
        there, unchanged), in one commit: until it lands the archive answers with the old model, and
        killed before, it stays whole on the old one. Failed cases are dropped (add them again)."""
        from ..data import find_cases

        encoder = _default_encoder(encoder)
        report = AddReport()
        started = time.perf_counter()
        with self._writing(wait):
            todo = []
            for row in self.cases():
                if row["error"] is not None:
                    continue
                found = [f for f in find_cases(row["source"]) if f.case_id == row["name"]]
                if not found or case_checksum(file_records(found[0], json.loads(row["files"]))) != row["checksum"]:
                    raise ValueError(f"case {row['name']}: its files at {row['source']} are gone or changed; "
                                     "remove it, or put them back, before re-encoding")
                todo.append(found[0])
            self._ingest(todo, encoder, report, workers, 0, 0.0, progress,
                         index=self._new_index(encoder_identity(encoder)), replace_all=True)
        report.seconds = time.perf_counter() - started
        return report


def _encode_case(case: ReadCase, encoder: Any, segment: bool, index: Any, first_id: int,
                 case_id: int, stored_bands: int) -> tuple[tuple, list]:
    """A read case's codes added to ``index`` (ids from ``first_id``, group ``case_id``) and its
    catalogue rows: (case row, slice rows). A failed case: its row with the error, no slices."""
    files = case.files
    contrasts = tuple(int(c in files.images) for c in cat.CONTRASTS)
    source = str(files.folder) if files.folder is not None else ""
    if case.error is not None:
        return (case_id, files.case_id, source, files.layout, *contrasts, None, None, 0, None, _now(), case.error), []
    s = case.slices
    codes = encoder.encode(s.images, present=s.contrasts)
    area = encoder.tumour_pixels(codes) * case.pixel_mm2 if segment else None
    ids = np.arange(first_id, first_id + len(s), dtype=np.int64)
    index.add({"normal": codes.normal_bits, "abnormal": codes.abnormal_bits}, ids,
              np.full(len(s), case_id, np.int64), bands(case.levels, stored_bands))
    volume = None if area is None else float(area.sum() * case.thickness_mm / 1000.0)
    row = (case_id, files.case_id, source, files.layout, *contrasts, case_checksum(case.records),
           json.dumps(case.records), len(s), volume, _now(), None)
    labelled = None if s.seg is None else s.abnormal
    rows = [(int(ids[n]), case_id, int(s.slice_index[n]), float(case.levels[n]),
             None if area is None else int(area[n] > 0), None if area is None else float(area[n]),
             None if labelled is None else int(labelled[n])) for n in range(len(s))]
    return row, rows


def _insert(db: Any, batch: list[tuple[str, tuple, list]]) -> None:
    for name, row, rows in batch:
        db.execute("DELETE FROM cases WHERE name = ?", (name,))  # a failed attempt's row
        db.execute(f"INSERT INTO cases (id, name, source, layout, {', '.join(cat.CONTRASTS)}, checksum, files, "
                   "slices, tumour_ml, added, error) VALUES (" + ", ".join("?" * len(row)) + ")", row)
        db.executemany("INSERT INTO slices (id, case_id, z, level, abnormal, tumour_mm2, labelled) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


