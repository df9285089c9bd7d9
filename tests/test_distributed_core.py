"""hashindex.distributed without Ray: routing, merging, the manifest, the shard log and one shard's
own behaviour (what each actor runs) against the single-machine indexes and the numpy oracle. These
run in a core-only install; tests/test_distributed.py runs the same pieces on a local Ray."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oracle import knn, multi_field_knn, random_codes

import hashindex
from hashindex import distributed as hd
from hashindex.distributed.log import ADD, LOG_MAGIC, RECORD, REMOVE, ShardLog
from hashindex.distributed.manifest import MANIFEST, MANIFEST_FORMAT, shard_file, write_json_atomic
from hashindex.distributed.shard import Shard


def test_importing_the_package_never_imports_ray():
    code = ("import sys, hashindex, hashindex.distributed as hd; hd.merge_knn, hd.read_manifest, hd.route; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")


def test_routing_spreads_regular_ids():
    for ids in (np.arange(100_000), np.arange(0, 400_000, 4)):
        counts = np.bincount(hd.shard_of(ids, 4), minlength=4)
        assert counts.min() > 0.95 * counts.mean()


# --- merging, without Ray --------------------------------------------------------------------

@given(seed=st.integers(0, 2**32 - 1), shards=st.integers(1, 5), k=st.integers(1, 12), pool=st.sampled_from([2, 5, 50]),
       grouped=st.booleans())
@settings(max_examples=40)
def test_merge_equals_one_index(seed, shards, k, pool, grouped):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 60))
    codes = {"a": random_codes(rng, n, 2, pool=pool), "b": random_codes(rng, n, 1, pool=pool)}
    ids = rng.permutation(1000)[:n].astype(np.int64)
    groups = rng.integers(0, 4, n) if grouped else np.full(n, -1)
    queries = {"a": random_codes(rng, 5, 2, pool=pool), "b": random_codes(rng, 5, 1, pool=pool)}
    weights = {"a": 1.0, "b": 2.0}
    where = hd.shard_of(ids, shards)
    parts = []
    for s in range(shards):
        sel = where == s
        index = hashindex.MultiFieldIndex({"a": 16, "b": 8})
        index.add({f: c[sel] for f, c in codes.items()}, ids[sel], groups[sel] if grouped else None)
        d, i = index.search(queries, k, weights=weights, one_per_group=grouped)
        g = np.full(i.shape, -1)
        g[i >= 0] = index.groups(i[i >= 0]) if (i >= 0).any() else []
        parts.append((d, i, g))
    d, i = hd.merge_knn([p[0] for p in parts], [p[1] for p in parts], k, [p[2] for p in parts] if grouped else None)
    want = multi_field_knn(queries, codes, ids, groups, weights, k, None, grouped)
    np.testing.assert_array_equal(i, want[1])
    np.testing.assert_array_equal(d, want[0])


def test_route_groups_positions_by_shard():
    ids = np.array([5, 17, 3, 99, 42, 8, 5_000_000_000], np.int64)
    routes = hd.route(ids, 3)
    where = hd.shard_of(ids, 3)
    assert sorted(np.concatenate([p for _, p in routes]).tolist()) == list(range(len(ids)))
    for shard, positions in routes:
        assert (where[positions] == shard).all() and list(positions) == sorted(positions)
    assert hd.route(ids[:0], 3) == []


def _directory(tmp_path, spec, shards=1):
    write_json_atomic(str(tmp_path / MANIFEST), {"format": MANIFEST_FORMAT, "version": 1, "routing": "splitmix64-mod",
                                                 "shards": shards, "spec": spec, "snapshots": [None] * shards})
    return str(tmp_path)


@pytest.mark.parametrize("change,match", [
    ({"format": "other"}, "not a sharded hashindex manifest"),
    ({"version": 99}, "newer than this hashindex reads"),
    ({"routing": "modulo"}, "routing 'modulo'"),
    ({"shards": 2}, "one snapshot entry per shard"),
    ({"snapshots": ["../escape.hx"]}, "invalid snapshot name"),
    ({"spec": {"kind": "hnsw"}}, "invalid index spec"),
    ({"spec": {"kind": "ivf", "nbits": 64, "nlist": 4}}, "invalid index spec"),
])
def test_manifest_is_checked(tmp_path, change, match):
    directory = _directory(tmp_path, {"kind": "flat", "nbits": 64, "m": None})
    manifest = __import__("json").loads((tmp_path / MANIFEST).read_text())
    write_json_atomic(str(tmp_path / MANIFEST), {**manifest, **change})
    with pytest.raises(hashindex.FormatError, match=match):
        hd.read_manifest(directory)


def test_log_round_trip_torn_tail_and_damage(tmp_path):
    path = str(tmp_path / "s.log")
    log = ShardLog(path, [2, 1])
    ids = np.array([4, 9], np.int64)
    codes = [np.array([[1, 2], [3, 4]], np.uint8), np.array([[5], [6]], np.uint8)]
    log.append(ADD, ids, codes)
    log.append(REMOVE, ids[:1])
    log.close()
    records = list(ShardLog(path, [2, 1]).records())
    assert [r[0] for r in records] == [ADD, REMOVE]
    np.testing.assert_array_equal(records[0][1], ids)
    np.testing.assert_array_equal(records[0][2][1], codes[1])
    whole = Path(path).read_bytes()
    with open(path, "wb") as f:  # a crash in the middle of the last record: dropped, file cut back
        f.write(whole[:-3])
    assert [r[0] for r in ShardLog(path, [2, 1]).records()] == [ADD]
    assert os.path.getsize(path) < len(whole) - 3
    data = bytearray(whole)
    data[len(LOG_MAGIC) + 1 + RECORD.size + 2] ^= 0xFF  # inside the first record, with one after it
    with open(path, "wb") as f:
        f.write(bytes(data))
    with pytest.raises(hashindex.FormatError, match="damaged record"):
        list(ShardLog(path, [2, 1]).records())


def test_a_shard_replays_its_log_and_filters_like_one_index(tmp_path):
    """One shard as its actor runs it: adds logged, a reopened shard replays them, and its search
    with allow / deny answers as a FlatIndex holding the same items."""
    rng = np.random.default_rng(3)
    directory = _directory(tmp_path, {"kind": "flat", "nbits": 64, "m": None})
    shard = Shard(directory, 0)
    codes = random_codes(rng, 300, 8, pool=40)
    ids = rng.permutation(10_000)[:300].astype(np.int64)
    assert shard.add(ids, [codes], None, retry=False) == 300
    assert shard.add(ids, [codes], None, retry=True) == 0  # a retry of an add that reached the log
    assert shard.remove(ids[:50], retry=False) == 50
    shard.log.close()
    reopened = Shard(directory, 0)
    assert os.path.exists(os.path.join(directory, shard_file(0, ".log")))
    np.testing.assert_array_equal(np.sort(reopened.ids()), np.sort(ids[50:]))
    assert reopened.info()["next_id"] == int(ids.max()) + 1
    q = codes[:5]
    allow = ids[rng.random(300) < 0.3]
    d, i = reopened.search(q, 7, None, {"allow": allow})
    kept = np.isin(ids[50:], allow)
    want = knn(q, codes[50:][kept], ids[50:][kept], 7, hashindex.PAD_DISTANCE)
    np.testing.assert_array_equal(i, want[1])
    np.testing.assert_array_equal(d, want[0])
    lims, rd, ri = reopened.range_search(q, 20, None, {"deny": allow})
    flat = hashindex.FlatIndex(64)
    flat.add(codes[50:], ids[50:])
    expected = flat.range_search(q, 20, deny=allow)
    np.testing.assert_array_equal(lims, expected.lims)
    np.testing.assert_array_equal(ri, expected.ids)
