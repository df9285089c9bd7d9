"""The archive: catalogue and index always agree (kill -9 at every point of an add, a remove and a
re-encode), ingest that skips, records and goes on, patient-level ranking against a brute-force
oracle, the where filter against Python, and the bad inputs a user meets."""
import gzip
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from archive_fakes import FakeEncoder
from hypothesis import given
from hypothesis import strategies as st

pytest.importorskip("nibabel")
pytest.importorskip("scipy")

import hashindex
from hashindex.encoder.archive import Archive, ArchiveLockedError, ModelMismatchError, parse_where
from hashindex.encoder.archive import columns as cols
from hashindex.encoder.archive.banded import BandedIndex
from hashindex.encoder.archive.retrieval import MODES, bands, rank_patients

TESTS = Path(__file__).resolve().parent
CHILD = """
import sys
from archive_fakes import FakeEncoder
from hashindex.encoder.archive import Archive
with Archive.open(sys.argv[1]) as a:
    if sys.argv[2] == "add":
        a.add(sys.argv[3], FakeEncoder(), workers=0, commit_slices=1)
    elif sys.argv[2] == "remove":
        a.remove(sys.argv[3:])
    else:
        a.reencode(FakeEncoder(seed=1), workers=0)
"""


@pytest.fixture
def cases(phantom_root, tmp_path):
    """The three small phantoms plus a fourth whose FLAIR is truncated (a damaged download)."""
    root = tmp_path / "cases"
    shutil.copytree(phantom_root, root)
    (root / "phantoms.json").unlink(missing_ok=True)
    bad = root / "Zz_damaged"
    shutil.copytree(root / "Phantom_00000", bad)
    for f in bad.iterdir():
        f.rename(bad / f.name.replace("Phantom_00000", "Zz_damaged"))
    flair = bad / "Zz_damaged_flair.nii.gz"
    flair.write_bytes(flair.read_bytes()[: flair.stat().st_size // 2])
    return root


def state(path):
    """Everything an archive answers with, timestamps aside: catalogue rows, index items, columns."""
    with Archive.open(path) as a:
        db = sqlite3.connect(path / "catalogue.sqlite")
        case_rows = [r[:-2] + r[-1:] for r in db.execute(  # not the time added
            "SELECT id, name, layout, t1, t1ce, t2, flair, checksum, slices, tumour_ml, added, error FROM cases "
            "ORDER BY id")]
        slice_rows = db.execute("SELECT * FROM slices ORDER BY id").fetchall()
        db.close()
        snap = a.snapshot()
        ids = np.sort(np.concatenate([index.ids() for index in snap.index.indexes]))
        assert ids.tolist() == [r[0] for r in slice_rows], "index and catalogue disagree"
        bands = snap.columns.stored_band_of(ids)
        for b, index in enumerate(snap.index.indexes):  # each slice in the band of its level
            assert sorted(index.ids().tolist()) == ids[bands == b].tolist()
        want = cols.from_rows(slice_rows)
        for name in cols.SLICE_DTYPE.names:
            np.testing.assert_array_equal(snap.columns[name], want[name])
        case_of = {r[0]: r[1] for r in slice_rows}
        for b, index in enumerate(snap.index.indexes):
            mine = ids[bands == b]
            assert index.groups(mine).tolist() == [case_of[i] for i in mine.tolist()]
        counts = {r[0]: r[8] for r in case_rows}
        for case_id, n in counts.items():
            assert sum(r[1] == case_id for r in slice_rows) == n, "a case is in part"
        codes = {f: snap.index.get(ids, bands, f).tobytes() for f in ("normal", "abnormal")}
        answers = []
        for row in slice_rows[::7]:
            name = next(c[1] for c in case_rows if c[0] == row[1])
            for mode in ("normal", "abnormal", "both"):
                answers.append([h.as_dict() for h in a.search_slice(name, row[2], mode=mode, k=3)])
        return case_rows, slice_rows, codes, answers, a.meta["encoder"]


def run_child(archive, *args, kill=None, env=None):
    env = dict(os.environ, PYTHONPATH=str(TESTS) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {}))
    if kill is not None:
        env["HASHINDEX_ARCHIVE_KILL"] = str(kill)
    return subprocess.run([sys.executable, "-c", CHILD, str(archive), *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=120, cwd=Path(archive).parent)  # not the source tree


# -- ingest ----------------------------------------------------------------------------------------
def test_add_records_catalogue_index_and_columns(cases, tmp_path):
    archive = Archive.create(tmp_path / "a", FakeEncoder())
    report = archive.add(cases, FakeEncoder(), workers=2)
    assert report.added == ["Phantom_00000", "Phantom_00001", "Phantom_00002"]
    assert list(report.failed) == ["Zz_damaged"]
    assert "Zz_damaged_flair.nii.gz" in report.failed["Zz_damaged"]
    info = archive.info()
    assert (info["cases"], info["failed_cases"]) == (3, 1)
    case_rows, slice_rows, *_ = state(tmp_path / "a")
    from hashindex.encoder.data import find_cases, load_case, slice_case

    for files in find_cases(cases):
        if files.case_id == "Zz_damaged":
            continue
        s = slice_case(load_case(files), size=FakeEncoder.image_size)
        case_id = next(r[0] for r in case_rows if r[1] == files.case_id)
        mine = [r for r in slice_rows if r[1] == case_id]
        assert [r[2] for r in mine] == s.slice_index.tolist()
        assert [r[6] for r in mine] == s.abnormal.tolist()  # labelled from the case's own segmentation
        codes = FakeEncoder().encode(s.images)
        ids = np.array([r[0] for r in mine])
        snap = archive.snapshot()
        np.testing.assert_array_equal(snap.index.get(ids, snap.columns.stored_band_of(ids), "normal"), codes.normal_bits)
        assert [r[4] for r in mine] == (FakeEncoder().tumour_pixels(codes) > 0).astype(int).tolist()
    archive.close()


def test_add_again_skips_and_retries_the_failed_case_under_its_id(cases, tmp_path):
    with Archive.create(tmp_path / "a", FakeEncoder()) as archive:
        archive.add(cases, FakeEncoder(), workers=0)
        failed_id = next(c["id"] for c in archive.cases() if c["name"] == "Zz_damaged")
        before = state(tmp_path / "a")
        again = archive.add(cases, FakeEncoder(), workers=0)
        assert again.skipped == ["Phantom_00000", "Phantom_00001", "Phantom_00002"] and not again.added
        assert state(tmp_path / "a")[1:4] == before[1:4]
        good = cases / "Phantom_00000" / "Phantom_00000_flair.nii.gz"
        shutil.copy(good, cases / "Zz_damaged" / "Zz_damaged_flair.nii.gz")
        fixed = archive.add(cases, FakeEncoder(), workers=0)
        assert fixed.added == ["Zz_damaged"] and not fixed.failed
        assert next(c["id"] for c in archive.cases() if c["name"] == "Zz_damaged") == failed_id
        assert archive.info()["failed_cases"] == 0


def test_a_changed_case_is_reported_not_replaced(cases, tmp_path):
    with Archive.create(tmp_path / "a", FakeEncoder()) as archive:
        archive.add(cases, FakeEncoder(), workers=0)
        before = state(tmp_path / "a")
        t2 = cases / "Phantom_00001" / "Phantom_00001_t2.nii.gz"
        data = gzip.decompress(t2.read_bytes())
        t2.write_bytes(gzip.compress(data[:-4] + b"\x01\x02\x03\x04"))
        report = archive.add(cases, FakeEncoder(), workers=0)
        assert "Phantom_00001" in report.changed and "remove it first" in report.changed["Phantom_00001"]
        assert state(tmp_path / "a")[1:4] == before[1:4]


# -- kill -9 anywhere ------------------------------------------------------------------------------
def test_add_killed_at_every_point_then_resumed_equals_one_add(cases, tmp_path):
    """Every point an add passes (a case read, the index written, the columns written, inside the
    transaction, after it), SIGKILL there, check the archive is whole, run the add again and compare
    with an add never interrupted."""
    reference = tmp_path / "ref"
    Archive.create(reference, FakeEncoder()).close()
    assert run_child(reference, "add", cases).returncode == 0
    expected = state(reference)
    kills = 0
    for point in range(1, 200):
        path = tmp_path / f"k{point}"
        Archive.create(path, FakeEncoder()).close()
        done = run_child(path, "add", cases, kill=point)
        if done.returncode == 0:
            break
        assert done.returncode == -signal.SIGKILL, done.stderr
        kills += 1
        state(path)  # opens, catalogue and index agree, no case in part
        assert run_child(path, "add", cases).returncode == 0
        got = state(path)
        assert got == expected
        shutil.rmtree(path)
    assert kills >= 20, f"only {kills} kill points"


def test_remove_and_reencode_killed_anywhere_leave_before_or_after(cases, tmp_path):
    base = tmp_path / "base"
    Archive.create(base, FakeEncoder()).close()
    assert run_child(base, "add", cases).returncode == 0
    before = state(base)
    for verb, args in (("remove", ["Phantom_00001", "Zz_damaged"]), ("reencode", [])):
        after_path = tmp_path / f"{verb}-after"
        shutil.copytree(base, after_path)
        assert run_child(after_path, verb, *args).returncode == 0
        after = state(after_path)
        assert after[1:] != before[1:]
        for point in range(1, 50):
            path = tmp_path / f"{verb}{point}"
            shutil.copytree(base, path)
            done = run_child(path, verb, *args, kill=point)
            if done.returncode == 0:
                break
            assert done.returncode == -signal.SIGKILL, done.stderr
            assert state(path)[1:] in (before[1:], after[1:])
            shutil.rmtree(path)
        assert point > 3


def test_a_second_writer_waits_or_fails_clearly(cases, tmp_path):
    with Archive.create(tmp_path / "a", FakeEncoder()) as archive, Archive.open(tmp_path / "a") as other:
        with archive._writing(0):
            with pytest.raises(ArchiveLockedError, match="another process is writing"):
                other.add(cases, FakeEncoder())
            with pytest.raises(ArchiveLockedError):
                other.remove("Phantom_00000", wait=0.2)
        held, release = threading.Event(), threading.Event()

        def writer():  # an Archive object belongs to one thread, like its SQLite connection
            with Archive.open(tmp_path / "a") as mine, mine._writing(0):
                held.set()
                release.wait(0.5)

        thread = threading.Thread(target=writer)
        thread.start()
        assert held.wait(10)
        assert other.add(cases, FakeEncoder(), wait=10, workers=0).added  # waited for the lock
        thread.join()


# -- bad input -------------------------------------------------------------------------------------
def test_bad_inputs_name_the_cause_and_keep_the_archive(cases, tmp_path):
    path = tmp_path / "a"
    with Archive.create(path, FakeEncoder()) as archive:
        archive.add(cases / "Phantom_00000", FakeEncoder(), workers=0)
        before = state(path)
        empty = tmp_path / "no-cases"
        empty.mkdir()
        (empty / "notes.txt").write_text("not a scan")
        with pytest.raises(FileNotFoundError, match="no BraTS cases"):
            archive.add([cases, empty], FakeEncoder())
        with pytest.raises(ModelMismatchError, match="fake-0-64.*fake-1-64|reencode"):
            archive.add(cases, FakeEncoder(seed=1))
        with pytest.raises(ModelMismatchError):
            archive.search_case(cases / "Phantom_00001", FakeEncoder(nbits=128))
        mismatched = cases / "Phantom_00002"
        t1 = mismatched / "Phantom_00002_t1.nii.gz"
        import nibabel as nib

        img = nib.load(t1)
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[:-2], img.affine), t1)
        report = archive.add(cases, FakeEncoder(), workers=0)
        assert "Phantom_00002" in report.failed and "_t1.nii.gz" in report.failed["Phantom_00002"]
        with pytest.raises(KeyError, match="Nope"):
            archive.remove(["Phantom_00000", "Nope"])
        with pytest.raises(ValueError, match="synthetic"):
            archive.search_slice("Phantom_00000", 12, mode="synthetic")
        with pytest.raises(KeyError, match="no indexed slice 999"):
            archive.search_slice("Phantom_00000", 999)
        with pytest.raises(ValueError, match="got 'OR' at position 9"):
            archive.search_slice("Phantom_00000", 12, where="t1ce AND OR")
        assert state(path)[1][: len(before[1])] == before[1]
    with pytest.raises(FileExistsError, match="not an empty folder"):
        Archive.create(path, FakeEncoder())
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "catalogue.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(hashindex.FormatError, match="not a hashindex archive"):
        Archive.open(foreign)
    (foreign / "catalogue.sqlite").unlink()
    sqlite3.connect(foreign / "catalogue.sqlite").execute("CREATE TABLE meta (key TEXT, value TEXT)").connection.commit()
    with pytest.raises(hashindex.FormatError, match="not a hashindex archive"):
        Archive.open(foreign)
    with pytest.raises(FileNotFoundError, match="not an archive"):
        Archive.open(cases)
    stem = json.loads(sqlite3.connect(path / "catalogue.sqlite").execute(
        "SELECT value FROM meta WHERE key = 'index_file'").fetchone()[0])
    (path / f"{stem}.b3.hx").write_bytes(b"HXIDX" + b"\0" * 100)
    with Archive.open(path) as archive, pytest.raises(hashindex.FormatError):
        archive.search_slice("Phantom_00000", 12)


# -- retrieval -------------------------------------------------------------------------------------
class _Cases:
    def __init__(self, n):
        self.ids, self.names = np.arange(n, dtype=np.int64), np.array([f"P{i:03d}" for i in range(n)], dtype=object)

    def rows_of(self, ids):
        return np.searchsorted(self.ids, ids)


def oracle(columns, codes, queries, q_levels, weights, k, allow, exclude, levels, window):
    """Brute force over unpacked bits: each patient's mean over query slices of its best
    corresponding slice (the largest distance where it has none); no match at all: left out."""
    nbits = {f: c.shape[1] * 8 for f, c in codes.items()}
    worst = sum(w * nbits[f] for f, w in weights.items())
    bits = {f: np.unpackbits(c, axis=1, bitorder="little").astype(int) for f, c in codes.items()}
    qbits = {f: np.unpackbits(q, axis=1, bitorder="little").astype(int) for f, q in queries.items()}
    sb, qb = bands(columns["level"], levels), bands(q_levels, levels)
    out = []
    for p in np.unique(columns["case"]):
        if p == exclude:
            continue
        best, matched = [], 0
        for j in range(len(q_levels)):
            rows = np.flatnonzero((columns["case"] == p) & allow & ((np.abs(sb - qb[j]) <= window) | (levels == 0)))
            if not len(rows):
                best.append(worst)
                continue
            d = sum(w * np.abs(bits[f][rows] - qbits[f][j]).sum(1) for f, w in weights.items())
            best.append(d.min())
            matched += 1
        if matched:
            out.append((float(np.mean(best)), int(p), matched))
    out.sort()
    return out[:k]


@given(seed=st.integers(0, 10_000), patients=st.integers(1, 30), nbits=st.sampled_from([8, 16, 64]),
       k=st.integers(1, 12), mode=st.sampled_from(["normal", "abnormal", "both"]), nq=st.integers(1, 5),
       levels=st.sampled_from([0, 1, 4, 10]), window=st.integers(0, 2), filtered=st.booleans(),
       fetch=st.sampled_from([None, 1, 2, 5]))
def test_patient_ranking_matches_brute_force(seed, patients, nbits, k, mode, nq, levels, window, filtered, fetch):
    """Small first fetches force the proof to fail and the fetch to grow: the answer may not change."""
    rng = np.random.default_rng(seed)
    per = rng.integers(1, 12, patients)
    n = int(per.sum())
    columns = np.zeros(n, cols.SLICE_DTYPE)
    columns["id"] = np.arange(n) * 3 + 1
    columns["case"] = np.repeat(np.arange(patients), per)
    columns["level"] = rng.random(n).astype(np.float32)
    codes = {f: rng.integers(0, 256, (n, nbits // 8), dtype=np.uint8) for f in ("normal", "abnormal")}
    codes["normal"][rng.random(n) < 0.3] = 0  # ties
    stored = int(rng.integers(1, 12))  # bands the index is kept in: any count gives the same answers
    index = BandedIndex.empty({"normal_nbits": nbits, "abnormal_nbits": nbits}, stored)
    index.add(codes, columns["id"], columns["case"], bands(columns["level"], stored))
    snap = type("Snap", (), {"index": index, "columns": cols.Columns(columns, stored), "cases": _Cases(patients)})()
    queries = {f: rng.integers(0, 256, (nq, nbits // 8), dtype=np.uint8) for f in codes}
    q_levels = rng.random(nq)
    allow = rng.random(n) < 0.6 if filtered else np.ones(n, bool)
    exclude = int(rng.integers(0, patients)) if rng.random() < 0.5 else None
    weights = MODES[mode]
    hits = rank_patients(snap, {f: queries[f] for f in weights}, q_levels, np.arange(nq), weights, k,
                         allow=allow if filtered else None, exclude_case=exclude, levels=levels, window=window,
                         fetch=fetch)
    want = oracle(columns, codes, queries, q_levels, weights, k, allow, exclude, levels, window)
    assert [(h.score, h.case, h.matched) for h in hits] == [(s, f"P{p:03d}", m) for s, p, m in want]
    for h in hits:
        assert len(h.slices) == h.matched
        assert [m.distance for m in h.slices] == sorted(m.distance for m in h.slices)


def test_where_filter_against_python(cases, tmp_path):
    with Archive.create(tmp_path / "a", FakeEncoder()) as archive:
        archive.add(cases, FakeEncoder(), workers=0)
        snap = archive.snapshot()
        c = snap.columns
        names = snap.cases.names[snap.cases.rows_of(c["case"])]
        t1ce = snap.cases.columns["t1ce"][snap.cases.rows_of(c["case"])]
        checks = {
            "abnormal": c["abnormal"] == 1,
            "NOT abnormal": c["abnormal"] != 1,
            "normal OR level >= 0.5": (c["abnormal"] == 0) | (c["level"] >= 0.5),
            "t1ce AND (z < 15 OR tumour_mm2 > 50)": t1ce & ((c["z"] < 15) | (c["tumour_mm2"] > 50)),
            "case = 'Phantom_00001' and labelled": (names == "Phantom_00001") & (c["labelled"] == 1),
            "case != Phantom_00001": names != "Phantom_00001",
        }
        for text, want in checks.items():
            got = cols.evaluate(parse_where(text), c, snap.cases)
            np.testing.assert_array_equal(got, want, err_msg=text)
        hits = archive.search_slice("Phantom_00000", int(c["z"][0]), k=5, where="case = Phantom_00002")
        assert [h.case for h in hits] == ["Phantom_00002"]
    for bad, where in (("t1ce AND", "the end"), ("z > 'a'", "a number"), ("case < 3", "= or !="),
                       ("tumour", "a known name"), ("(abnormal", "')'"), ("abnormal abnormal", "AND, OR")):
        with pytest.raises(ValueError, match=re.escape(where)):
            parse_where(bad)


# -- the command, with the shipped model -----------------------------------------------------------
def test_command_with_the_shipped_model(cases, tmp_path, capsys):
    pytest.importorskip("torch")
    from hashindex.cli import main

    archive = tmp_path / "a"
    assert main(["archive", "create", str(archive)]) == 0
    assert main(["archive", "add", str(archive), str(cases), "--workers", "2"]) == 1  # the damaged case
    err = capsys.readouterr().err
    assert "failed: Zz_damaged" in err and "3 cases added" in err
    assert "4/4" in err and "slices/s" in err  # the progress bar: cases, slices, rate
    assert main(["archive", "query", str(archive), "--case", "Phantom_00000", "--slice", "20", "--mode", "abnormal",
                 "--k", "2", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert [h["case"] for h in hits] and all(h["case"] != "Phantom_00000" for h in hits)
    report = tmp_path / "report"
    assert main(["archive", "query", str(archive), "--volume", str(cases / "Phantom_00001"), "--where",
                 "t1ce AND level < 0.8", "--include-own-case", "--report", str(report)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[1] == "Phantom_00001"  # a case is its own best match
    page = (report / "index.html").read_text()
    assert "Phantom_00001" in page and all((report / src).exists() for src in re.findall(r'src="([^"]+)"', page))
    assert "pseudo-normal" in page and "the model's tumour" in page
    assert main(["archive", "query", str(archive), "--case", "Phantom_00000", "--slice", "20",
                 "--tumour-from", "Phantom_00002:20", "--k", "1"]) == 0
    assert "Phantom_00002" in capsys.readouterr().out
    assert main(["archive", "query", str(archive), "--case", "Phantom_00000"]) == 2
    assert "--volume" in capsys.readouterr().err
    assert main(["archive", "remove", str(archive), "Phantom_00002"]) == 0
    assert main(["archive", "info", str(archive), "--cases"]) == 0
    info = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert info["cases"] == 2 and info["failed_cases"] == 1 and info["encoder"]["checkpoint"].endswith("base.pt")
    assert main(["archive", "add", str(archive), str(cases), "--quiet", "--checkpoint", str(tmp_path / "x.pt")]) == 2


def test_a_case_the_encoder_refuses_is_recorded_and_the_others_go_on(cases, tmp_path):
    class Picky(FakeEncoder):  # refuses the second case it is given, as the model refuses bad images
        calls = 0

        def encode(self, images, present=None):
            Picky.calls += 1
            if Picky.calls == 2:
                raise ValueError("images: contains NaN or infinite values")
            return super().encode(images, present)

    with Archive.create(tmp_path / "a", FakeEncoder()) as archive:
        report = archive.add(cases, Picky(), workers=0)
        assert report.failed["Phantom_00001"] == "ValueError: images: contains NaN or infinite values"
        assert report.added == ["Phantom_00000", "Phantom_00002"]
    state(tmp_path / "a")  # whole: no slice of the refused case in the index or the catalogue


# -- sharded over Ray ------------------------------------------------------------------------------
def test_sharded_archive_answers_as_one_index_and_survives_a_kill(local_ray, cases, tmp_path):
    """An archive on 2 shards x 2 bands gives the catalogue, codes and answers of the same add into the
    plain archive (10 bands): through commits, a remove, a reopen, and an add killed between the new
    generation's shard folders and the transaction, then run again. Committed folders never change
    under a writer; a killed writer's copy and folders are removed by the next."""
    import ray

    plain, sharded = tmp_path / "plain", tmp_path / "sharded"
    with Archive.create(plain, FakeEncoder()) as a:
        a.add(cases, FakeEncoder(), workers=0)
    with Archive.create(sharded, FakeEncoder(), shards=2, bands=2) as s:
        assert (s.info()["shards"], s.info()["bands"]) == (2, 2)
        s.add(cases, FakeEncoder(), workers=0, commit_slices=1)  # a commit per case
        assert sorted(p.name for p in sharded.glob("index-*")) == [
            f"index-{g:06d}.b{b}.shards" for g in (2, 3) for b in (0, 1)]  # the current and the previous
        assert not list(sharded.glob("work*"))
    assert state(sharded) == state(plain)
    assert sqlite3.connect(sharded / "catalogue.sqlite").execute(
        "SELECT value FROM meta WHERE key = 'version'").fetchone()[0] == "2"

    committed = {p: p.stat().st_mtime_ns for p in sharded.glob("index-000003.b*.shards/*")}
    with Archive.open(sharded) as s, Archive.open(plain) as a:
        s.snapshot()  # a reader's shards on the committed folders while the writer works on its copy
        assert s.remove(["Phantom_00001"]) == a.remove(["Phantom_00001"])
    assert {p: p.stat().st_mtime_ns for p in committed if p.exists()} == {
        p: t for p, t in committed.items() if p.exists() and not p.name.endswith(".log")}
    before = state(sharded)
    assert before == state(plain)

    gone = tmp_path / "gone"  # the removed case again, in a folder of its own
    gone.mkdir()
    shutil.copytree(cases / "Phantom_00001", gone / "Phantom_00001")
    env = {"RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    done = run_child(sharded, "add", gone, kill=3, env=env)  # new shard folders written, no transaction yet
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert list(sharded.glob("index-000005.b*.shards"))
    assert state(sharded) == before
    assert run_child(sharded, "add", gone, env=env).returncode == 0
    with Archive.open(plain) as a:
        a.add(gone, FakeEncoder(), workers=0)
    assert state(sharded) == state(plain)
    assert not list(sharded.glob("work*")) and len(list(sharded.glob("index-*"))) == 4
