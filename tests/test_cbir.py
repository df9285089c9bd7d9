"""Paper-style evaluation on hand-made label maps, and a tiny end-to-end demo run."""
import json

import numpy as np
import pytest

pytest.importorskip("torch", reason="the encoder needs torch: pip install 'hashindex[encoder]'")
pytest.importorskip("nibabel", reason="the MRI data needs the data extra: pip install 'hashindex[data]'")

from hashindex.cli import main as cli
from hashindex.encoder.evaluate import ANATOMY_CLASSES, TUMOUR_CLASSES, dice, euclidean_topk


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
    assert len(lines) == 3 and all("case=Phantom_" in line for line in lines)
    assert not any("case=Phantom_00000 " in line for line in lines)  # its own case is left out by default
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
