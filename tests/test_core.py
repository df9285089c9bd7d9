"""The core stands apart from the application: what it imports, its class tree, its one rule per
argument kind, and the bugs a new user found (each test failed before its fix)."""
import subprocess
import sys
from importlib import metadata

import numpy as np
import pytest

import hashindex
from hashindex import _base, cli
from hashindex import bench as bench_module


def _run(code: str, tmp_path) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)  # not the source tree


def test_version_has_one_source():
    assert hashindex.__version__ == metadata.version("hashindex")


def test_core_cli_and_bench_import_no_application(tmp_path):
    _run("import sys, hashindex.cli, hashindex.bench\n"
         "hashindex.cli._parser()\n"
         "bad = [m for m in sys.modules if m.startswith(('torch', 'nibabel', 'hashindex.encoder.'))\n"
         "       and m != 'hashindex.encoder.cli']\n"
         "assert not bad, bad", tmp_path)


def test_core_verbs_without_plugins(monkeypatch):
    monkeypatch.setattr(cli, "entry_points", lambda group: [])
    verbs = set(cli._parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert verbs == {"info", "bench"}


def test_plugins_add_the_encoder_verbs():
    verbs = set(cli._parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert {"phantoms", "montage", "train", "demo", "evaluate", "query"} <= verbs


def test_class_tree_mirrors_the_bindings():
    assert issubclass(hashindex.FlatIndex, _base._SingleFieldIndex)
    assert issubclass(hashindex.MIHIndex, _base._SingleFieldIndex)
    assert not issubclass(hashindex.MultiFieldIndex, _base._SingleFieldIndex)
    assert issubclass(hashindex.MultiFieldIndex, _base._Index)
    assert not hasattr(hashindex.MultiFieldIndex, "range_search")  # no method that only raises


def test_from_index_keeps_the_default_id_counter():
    x = np.zeros((10, 8), np.uint8)
    flat = hashindex.FlatIndex(64)
    flat.add(x)
    flat.remove(np.array([9]))
    mih = hashindex.MIHIndex.from_index(flat)
    mih.add(x[:1])
    flat.add(x[:1])
    assert 10 in mih and 9 not in mih  # id 9 was retired; it is not issued again
    np.testing.assert_array_equal(np.sort(mih.ids()), np.sort(flat.ids()))


@pytest.mark.parametrize("make", [lambda: hashindex.FlatIndex(64), lambda: hashindex.MIHIndex(64),
                                  lambda: hashindex.MultiFieldIndex({"a": 64})])
def test_next_id_is_one_past_the_largest_id_ever_added(make):
    index = make()
    add = (lambda n, **kw: index.add({"a": np.zeros((n, 8), np.uint8)}, **kw)) if hasattr(index, "fields") \
        else (lambda n, **kw: index.add(np.zeros((n, 8), np.uint8), **kw))
    assert index.next_id == 0
    add(5)
    index.remove([4])
    assert index.next_id == 5  # a removal does not give its id back
    add(1, ids=[100])
    assert index.next_id == 101
    add(1)
    assert 101 in index and index.next_id == 102


@pytest.mark.parametrize("kind", ["flat", "mih", "multi"])
def test_one_rule_for_every_id_argument(kind):
    codes = np.arange(40, dtype=np.uint8).reshape(5, 8)
    if kind == "multi":
        index = hashindex.MultiFieldIndex({"a": 64})
        index.add({"a": codes}, ids=[5, 6, 7, 8, 9], groups=[0, 0, 1, 1, 2])
        get = lambda ids: index.get(ids, "a")  # noqa: E731
        np.testing.assert_array_equal(index.groups([5, 9]), [0, 2])
    else:
        index = hashindex.FlatIndex(64) if kind == "flat" else hashindex.MIHIndex(64)
        index.add(codes, ids=[5, 6, 7, 8, 9])
        get = index.get
    np.testing.assert_array_equal(get([6, 7]), get(np.array([6, 7])))
    np.testing.assert_array_equal(get((6,)), get(6))
    index.remove([5, 6])
    index.remove((7,))
    index.remove(8)
    assert len(index) == 1 and 9 in index
    for bad, exc in (([1.5], TypeError), ([[9]], TypeError), ([True], TypeError), ([-1], ValueError),
                     ([2**63], ValueError), ("9", TypeError)):
        with pytest.raises(exc, match="^ids: "):
            index.remove(bad)
    assert len(index) == 1
    empty = get([])
    assert len(empty) == 0


def test_unpacked_bits_point_to_pack_bits():
    index = hashindex.FlatIndex(256)
    bits = np.random.default_rng(0).integers(0, 2, (3, 256)).astype(np.uint8)
    with pytest.raises(ValueError, match="unpacked 0/1 bits: pack them with hashindex.pack_bits"):
        index.add(bits)
    with pytest.raises(ValueError, match="unpacked 0/1 bits"):
        index.search(bits, 1)
    index.add(hashindex.pack_bits(bits))
    assert len(index) == 3


def test_bench_names_missing_competitors(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(bench_module, "import_faiss", lambda required=False: None)
    out = tmp_path / "b.json"
    assert cli.main(["bench", "--n", "300", "--nbits", "64", "--queries", "5", "--single", "2", "--dataset", "uniform",
                     "--out", str(out)]) == 0
    assert "faiss-cpu is not installed" in capsys.readouterr().out
    import json

    record = json.loads(out.read_text())
    assert len(record["missing"]) == 1
    assert {r["method"] for r in record["results"]} == {
        "hashindex.FlatIndex", "hashindex.MIHIndex", "hashindex.MultiFieldIndex (1 field)"}
