"""hashindex bench and the harness behind RESULTS.md (``python -m benchmarks``): tiny runs write valid
records, plots and Markdown (no timing checks)."""
import json
from pathlib import Path

import numpy as np
import pytest

import hashindex
from hashindex.bench import make_codes, recall_at_k
from hashindex.cli import main as cli

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def harness(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))  # as `python benchmarks/<script>.py` and `-m benchmarks` see it
    import harness

    return harness


def test_recall_on_a_hand_made_case():
    exact = np.array([[0, 1, 1], [2, 2, 5]])
    found = np.array([[0, 1, 3], [2, 2, 5]])  # query 0 misses one; query 1 exact
    assert recall_at_k(found, exact) == pytest.approx((2 / 3 + 1) / 2)
    ties = np.array([[0, 1, 1]])  # another id at the k-th distance counts as found
    assert recall_at_k(ties, exact[:1]) == 1.0
    padded = np.array([[0, 2**31 - 1, 2**31 - 1]])  # missing results are misses
    assert recall_at_k(padded, exact[:1]) == 1 / 3


def test_clustered_codes_are_near_their_centres():
    rng = np.random.default_rng(0)
    centres = rng.integers(0, 256, (3, 8), dtype=np.uint8)
    x = make_codes(rng, 500, 64, "clustered", centres)
    from oracle import hamming_matrix

    assert hamming_matrix(x, centres).min(1).max() <= 4


def test_quick_preset_writes_record(tmp_path, capsys):
    pytest.importorskip("faiss", reason="the competitor rows need faiss-cpu: pip install 'hashindex[bench]'")
    out = tmp_path / "bench.json"
    assert cli(["bench", "--quick", "--n", "300", "2000", "--nbits", "64", "--queries", "20", "--single", "5",
                "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "roofline" in printed and "faiss.IndexBinaryFlat" in printed
    record = json.loads(out.read_text())
    assert record["complete"] and record["k"] == 10 and record["machine"]["simd_level"]
    roof = record["roofline"]
    assert {"xor_popcount_peak_gbps_1thread", "xor_popcount_peak_gbps", "memory_read_gbps"} <= set(roof)
    methods = {r["method"] for r in record["results"]}
    assert methods == {"hashindex.FlatIndex", "hashindex.MIHIndex", "hashindex.MultiFieldIndex (1 field)",
                       "faiss.IndexBinaryFlat"}
    for r in record["results"]:
        assert r["n"] in (300, 2000) and r["p50_ms"] <= r["p99_ms"]
        assert r["recall_at_k"] == 1.0, r  # every method here is exact: it must agree with the exact answer
    levels = [r["level"] for r in record["levels"]]
    assert levels == hashindex.supported_simd_levels()  # one row per level this host has, at 64 bits
    assert all(r["x_faiss"] > 0 and 0 < r["peak_share"] for r in record["levels"])
    assert hashindex.simd_level() == levels[-1]  # the best level is back in force


def test_harness_runs_every_competitor_with_plots_and_markdown(harness, tmp_path, capsys):
    pytest.importorskip("faiss", reason="the competitor rows need faiss-cpu: pip install 'hashindex[bench]'")
    out = tmp_path / "bench.json"
    assert harness.main(["--n", "300", "2000", "--nbits", "64", "--queries", "20", "--single", "5",
                         "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    methods = {r["method"] for r in record["results"]}
    assert {"hashindex.FlatIndex", "faiss.IndexBinaryFlat", "faiss.IndexBinaryHNSW(M=16)", "numpy brute force",
            "hashindex.IVFIndex(nlist=sqrt(n),nprobe=8)", "faiss.IndexBinaryIVF(nlist=sqrt(n),nprobe=8)"} <= methods
    for r in record["results"]:
        if r["exact"]:
            assert r["recall_at_k"] == 1.0, r
    assert record["scaling"] and "of peak" in harness.markdown(record)
    assert harness.main(["--markdown", str(out)]) == 0
    assert "### uniform, 64 bits" in capsys.readouterr().out
    pytest.importorskip("matplotlib", reason="plots need matplotlib: pip install 'hashindex[bench]'")
    for name in ("bench_latency_vs_n.png", "bench_recall_vs_qps.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def test_harness_names_missing_competitors(harness, monkeypatch):
    monkeypatch.setattr(harness, "numba_distances", lambda: None)
    monkeypatch.setattr(harness, "import_faiss", lambda required=False: None)
    more, notes = harness.competitors()
    assert [m.name for m in more] == ["hashindex.IVFIndex(nlist=sqrt(n),nprobe=8)", "numpy brute force"]
    assert "numba is not installed" in notes[0]


def test_user_npy_dataset(tmp_path):
    codes = np.random.default_rng(1).integers(0, 256, (400, 16), dtype=np.uint8)
    np.save(tmp_path / "codes.npy", codes)
    out = tmp_path / "b.json"
    assert cli(["bench", "--dataset", "npy", "--npy", str(tmp_path / "codes.npy"), "--n", "300", "--queries", "10",
                "--single", "3", "--methods", "hashindex.Flat", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["results"]
    assert rows and rows[0]["nbits"] == 128 and rows[0]["dataset"] == "npy"
    assert cli(["bench", "--dataset", "npy", "--out", str(out)]) == 2


def test_bench_ivf_on_codes_of_a_file_with_a_plot(harness, tmp_path, capsys):
    """bench_ivf.py on the codes of an index file (one field of a MultiFieldIndex, as the encoder's
    archive holds them): queries held out, both IVFs and the exact scan, a record and a plot."""
    pytest.importorskip("faiss", reason="bench_ivf compares with faiss-cpu: pip install 'hashindex[bench]'")
    import bench_ivf

    rng = np.random.default_rng(2)
    index = hashindex.MultiFieldIndex({"normal": 64, "abnormal": 32})
    index.add({"normal": rng.integers(0, 256, (500, 8), dtype=np.uint8),
               "abnormal": rng.integers(0, 256, (500, 4), dtype=np.uint8)})
    index.save(tmp_path / "archive.hx")
    out, image = tmp_path / "ivf.json", tmp_path / "ivf.png"
    assert bench_ivf.main(["--codes", str(tmp_path / "archive.hx"), "--field", "normal", "--nlist", "8",
                           "--nprobe", "1", "8", "--nq", "20", "--single", "5", "--repeats", "1",
                           "--json", str(out), "--plot", str(image)]) == 0
    record = json.loads(out.read_text())
    assert record["codes"] == "archive.hx (normal)" and [r["nprobe"] for r in record["rows"]] == [1, 8]
    assert record["rows"][1]["recall_ours"] == 1.0  # every list: exact
    assert all(r["stream_ms_ours"] > 0 and r["stream_ms_faiss"] > 0 for r in record["rows"])
    assert "480 x 64 bits" in capsys.readouterr().out
    pytest.importorskip("matplotlib", reason="plots need matplotlib: pip install 'hashindex[bench]'")
    assert image.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit, match="--field"):
        bench_ivf.main(["--codes", str(tmp_path / "archive.hx"), "--nq", "5", "--single", "2"])
    with pytest.raises(SystemExit):  # the first batch of a stream is not timed
        bench_ivf.main(["--codes", str(tmp_path / "archive.hx"), "--field", "normal", "--stream", "1"])
    assert "--stream: expected at least 2 batches" in capsys.readouterr().err
