"""Paper-style evaluation on hand-made label maps, and a tiny end-to-end demo run."""
import json

import numpy as np
import pytest

pytest.importorskip("torch", reason="the encoder needs torch: pip install 'hashindex[encoder]'")
pytest.importorskip("nibabel", reason="the MRI data needs the data extra: pip install 'hashindex[data]'")

from hypothesis import given, settings
from hypothesis import strategies as st

from hashindex.cli import main as cli
from hashindex.encoder.evaluate import ANATOMY_CLASSES, TUMOUR_CLASSES, ClassMasks, dice, euclidean_topk


def test_dice_on_hand_made_maps():
    a = np.zeros((4, 4), np.uint8)
    b = np.zeros((4, 4), np.uint8)
    a[:2, :2] = 1  # 4 pixels of class 1
    b[:2, :1] = 1  # 2 of them
    b[3, 3] = 2  # class 2 only in b
    # class 1: 2*2/(4+2) = 2/3; class 2: 0; mean over present classes = 1/3
    np.testing.assert_allclose(dice(a, b, (1, 2, 3)), 1 / 3)
    np.testing.assert_allclose(dice(a, a, (1, 2, 3)), 1.0)
    empty = np.zeros((4, 4), np.uint8)
    np.testing.assert_allclose(dice(empty, empty, TUMOUR_CLASSES), 1.0)  # both healthy: agree
    np.testing.assert_allclose(dice(a, empty, TUMOUR_CLASSES), 0.0)
    batch = dice(a[None, None], np.stack([a, b, empty])[None], (1, 2, 3))
    np.testing.assert_allclose(batch, [[1.0, 1 / 3, 0.0]])
    assert ANATOMY_CLASSES == (1, 2, 3, 4)


def test_euclidean_topk_skips_the_own_group():
    db = np.array([[0.0], [1.0], [2.0], [10.0]])
    groups = np.array([0, 0, 1, 1])
    found = euclidean_topk(db[[0]], db, 2, np.array([0]), groups)
    np.testing.assert_array_equal(found, [[2, 3]])


def _tiny_checkpoint(folder, phantom_root):
    from test_encoder import FAST, TINY

    from hashindex.encoder.data import load_slices
    from hashindex.encoder.train import train

    path = folder / "tiny.pt"
    train(load_slices(phantom_root, size=32), path, config=TINY, training=FAST, epochs=1, val_fraction=0.0,
          progress=False, log=lambda _: None)
    return path


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory, phantom_root):
    return _tiny_checkpoint(tmp_path_factory.mktemp("model"), phantom_root)


def test_tiny_end_to_end_demo_writes_the_report(tmp_path, tiny_checkpoint, monkeypatch, capsys):
    from hashindex.encoder.demo import DemoConfig, run_demo

    monkeypatch.setenv("HASHINDEX_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "report"
    config = DemoConfig(cases=3, seed=1, spacing=4.0, examples=2, max_queries=50)
    page = run_demo(out, config=config, checkpoint=tiny_checkpoint)
    for name in ("index.html", "evaluation.json", "examples.json", "index.hx", "items.npz", "img/q0_query.png",
                 "img/q1_normal_1.png"):
        assert (out / name).is_file(), name
    table = json.loads((out / "evaluation.json").read_text())
    assert {"normal code (Hamming)", "abnormal code (Hamming)", "both codes (Hamming sum)", "random",
            "raw pixels 16x16 (Euclidean)", "normal latent (Euclidean)"} <= set(table["rows"])
    for row in table["rows"].values():
        assert all(0.0 <= v <= 1.0 for key, v in row.items() if "dice" in key)
    assert table["pseudo_normal"]["queries"] > 0
    examples = json.loads((out / "examples.json").read_text())
    for ex in examples:
        assert len(ex["modes"]) == 4
        for hits in ex["modes"].values():
            assert hits and all(h["case"] != ex["case"] for h in hits)  # never the query's own case
    assert "<table>" in page.read_text()
    # a second run reuses the cached phantoms and slices
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    run_demo(out, config=config, checkpoint=tiny_checkpoint, log=lambda _: None)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == cached
    # hashindex query with a case folder against the saved index
    case = next((tmp_path / "cache").glob("phantoms-*/Phantom_00000"))
    capsys.readouterr()
    assert cli(["query", "--index", str(out / "index.hx"), "--case", str(case), "--slice", "20", "--mode", "normal",
                "--k", "3", "--checkpoint", str(tiny_checkpoint)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    # one hit per patient by default, as the report shows them: two other cases, so two hits
    assert len(lines) == 2 and all("case=Phantom_" in line for line in lines)
    assert len({line.split("case=")[1].split()[0] for line in lines}) == 2
    assert not any("case=Phantom_00000 " in line for line in lines)  # its own case is left out by default
    assert cli(["query", "--index", str(out / "index.hx"), "--case", str(case), "--slice", "20", "--mode", "normal",
                "--k", "3", "--per-patient", "0", "--checkpoint", str(tiny_checkpoint)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    assert cli(["query", "--index", str(out / "index.hx"), "--case", str(case), "--mode", "abnormal",
                "--checkpoint", str(tiny_checkpoint)]) == 0  # no --slice: the largest tumour section
    captured = capsys.readouterr()
    assert "query: slice" in captured.err and captured.out.strip()
    assert cli(["query", "--index", str(out / "index.hx"), "--case", str(case), "--slice", "999",
                "--checkpoint", str(tiny_checkpoint)]) == 2
    assert "slice_index: expected 0 <= index <" in capsys.readouterr().err
    assert cli(["query", "--index", str(out / "index.hx"), "--case", str(case), "--slice", "20", "--mode", "normal",
                "--k", "1", "--include-own-case", "--checkpoint", str(tiny_checkpoint)]) == 0
    assert "case=Phantom_00000 " in capsys.readouterr().out  # the slice itself, distance 0
    assert cli(["evaluate", "--data", str(next((tmp_path / "cache").glob("slices-*.npz"))), "--out",
                str(tmp_path / "e.json"), "--checkpoint", str(tiny_checkpoint), "--queries", "20"]) == 0
    assert "rows" in json.loads((tmp_path / "e.json").read_text())


def test_pseudo_normal_figure(tmp_path, tiny_checkpoint, phantom_root):
    from hashindex.encoder.codes import CodeEncoder
    from hashindex.encoder.data import load_slices
    from hashindex.encoder.figures import pick_rows, pseudo_normal_figure

    slices = load_slices(phantom_root, size=32)
    rows = pick_rows(slices, 2)
    assert len(rows) == 2 and len(set(slices.case_ids[rows])) == 2 and np.all(slices.abnormal[rows] == 1)
    path = pseudo_normal_figure(CodeEncoder.load(tiny_checkpoint), slices, rows, tmp_path / "f.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


@settings(max_examples=40)
@given(n=st.integers(1, 7), h=st.integers(1, 13), w=st.integers(1, 11), labels=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_packed_class_masks_give_dice_exactly(n, h, w, labels, seed):
    """ClassMasks (AND + popcount over packed bits) against the label-map Dice, odd sizes included."""
    rng = np.random.default_rng(seed)
    maps = rng.integers(0, labels, (n, h, w)).astype(np.uint8)
    masks = ClassMasks(maps, ANATOMY_CLASSES)
    a = rng.integers(0, n, 5)
    b = rng.integers(0, n, (5, 3))
    np.testing.assert_array_equal(masks.dice(a[:, None], b, chunk=2), dice(maps[a][:, None], maps[b], ANATOMY_CLASSES))
    np.testing.assert_array_equal(masks.counts, [[(m == c).sum() for c in ANATOMY_CLASSES] for m in maps])


def test_popcount_fallback_for_numpy_before_2(monkeypatch):
    from hashindex.encoder import evaluate

    words = np.random.default_rng(0).integers(0, 2**63, (3, 5), dtype=np.uint64) * 2 + 1
    expected = np.array([[bin(int(x)).count("1") for x in row] for row in words])
    np.testing.assert_array_equal(evaluate._popcount(words), expected)
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    np.testing.assert_array_equal(evaluate._popcount(words), expected)


def test_per_patient_cap_is_exact(tmp_path):
    """query's per-patient cap against an oracle: the full ranking, capped, cut to k."""
    import hashindex
    from hashindex.encoder.query import _search_per_patient

    rng = np.random.default_rng(4)
    n = 300
    codes = {f: rng.integers(0, 256, (n, 4), dtype=np.uint8) for f in ("normal", "abnormal")}
    groups = rng.integers(0, 12, n).astype(np.int64)
    index = hashindex.MultiFieldIndex({"normal": 32, "abnormal": 32})
    index.add(codes, groups=groups)
    q = {f: c[:1] for f, c in codes.items()}
    weights = {"normal": 1.0, "abnormal": 1.0}
    full = index.search(q, n, weights=weights, exclude_groups=groups[:1])
    for per, k in ((1, 5), (2, 7), (3, 40), (5, 1000)):
        ids, dist = _search_per_patient(index, q, k, weights, groups[:1], per)
        taken, expected = {}, []
        for i in full.ids[0][full.ids[0] >= 0]:
            g = groups[i]
            if taken.get(g, 0) < per:
                taken[g] = taken.get(g, 0) + 1
                expected.append(i)
        np.testing.assert_array_equal(ids, expected[:k])
        assert np.all(np.diff(dist) >= 0) and groups[0] not in set(groups[ids])


def test_failed_runs_create_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli(["demo", "--data", str(empty), "--out", str(tmp_path / "X")]) == 2
    assert "no BraTS cases" in capsys.readouterr().err and not (tmp_path / "X").exists()
    assert cli(["demo", "--cases", "0", "--cache", str(tmp_path / "C"), "--out", str(tmp_path / "Y")]) == 2
    assert "cases: expected an integer >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "C").exists() and not (tmp_path / "Y").exists()
    with pytest.raises(SystemExit) as exc:
        cli(["bench", "--n", "0"])
    assert exc.value.code == 2 and "argument --n: expected an integer >= 1, got 0" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # no record left behind
