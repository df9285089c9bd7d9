"""hashindex.distributed on a local Ray (num_cpus=2, no dashboard) against the numpy oracle and the
single-machine indexes: exactness, ties, removal, persistence, a shard killed mid-stream.

The local Ray is conftest's ``local_ray`` (loopback only).
"""
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from oracle import knn, multi_field_knn, random_codes, range_search

ray = pytest.importorskip("ray", reason="hashindex[distributed] (Ray) is not installed")

import hashindex
from hashindex import distributed as hd
from hashindex.distributed.log import LOG_MAGIC, RECORD
from hashindex.distributed.manifest import MANIFEST


@pytest.fixture
def sharded(local_ray, tmp_path):
    made = []

    def make(*args, cls=hd.ShardedIndex, **kw):
        kw.setdefault("directory", tmp_path / f"index{len(made)}")
        index = cls(*args, **kw)
        made.append(index)
        return index

    yield make
    for index in made:
        index.close()


def test_nothing_listens_beyond_loopback(local_ray):
    if not local_ray:
        pytest.skip("no privilege for a network namespace here: Ray listens on every interface")
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"]


def test_import_hashindex_never_imports_ray():
    code = "import sys, hashindex; assert 'ray' not in sys.modules, 'ray imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")


# --- one-field indexes ------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["flat", "mih"])
@pytest.mark.parametrize("pool", [None, 7])  # uniform, and duplicate-heavy (ties everywhere)
def test_knn_and_range_match_oracle(sharded, kind, pool):
    rng = np.random.default_rng(3)
    codes = random_codes(rng, 3000, 8, pool=pool)
    ids = rng.permutation(50_000)[:3000].astype(np.int64)
    index = sharded(64, shards=4, kind=kind, batch_size=64)  # several fan-out rounds
    index.add(codes[:1000], ids[:1000])
    index.add(codes[1000:], ids[1000:])
    queries = np.concatenate([random_codes(rng, 150, 8, pool=pool), codes[:50]])
    for k in (1, 10, 37):
        d, i = index.search(queries, k)
        wd, wi = knn(queries, codes, ids, k, hashindex.PAD_DISTANCE)
        np.testing.assert_array_equal(i, wi)
        np.testing.assert_array_equal(d, wd)
        assert d.dtype == np.int32 and i.dtype == np.int64
    got = index.range_search(queries, 22)
    for a, b in zip(got, range_search(queries, codes, ids, 22)):
        np.testing.assert_array_equal(a, b)
    assert len(index) == 3000 and index.ntotal == 3000
    np.testing.assert_array_equal(index.ids(), np.sort(ids))


@pytest.mark.parametrize("kind", ["flat", "mih"])
def test_allow_and_deny_are_pushed_to_every_shard(sharded, kind):
    """A filtered sharded search answers as an index of only the items that pass: k results
    whenever k pass, however the filter's ids fall over the shards."""
    rng = np.random.default_rng(12)
    codes = random_codes(rng, 2000, 8, pool=60)
    ids = rng.permutation(40_000)[:2000].astype(np.int64)
    index = sharded(64, shards=3, kind=kind, batch_size=40)
    index.add(codes, ids)
    queries = np.concatenate([codes[:20], random_codes(rng, 60, 8)])
    few = ids[:5]  # fewer than k pass: padding after them
    for allow in (ids[rng.random(2000) < 0.1], few, set(ids[:300].tolist()), np.array([123_456_789])):
        kept = np.isin(ids, list(allow) if isinstance(allow, set) else allow)
        d, i = index.search(queries, 10, allow=allow)
        wd, wi = knn(queries, codes[kept], ids[kept], 10, hashindex.PAD_DISTANCE)
        np.testing.assert_array_equal(i, wi)
        np.testing.assert_array_equal(d, wd)
    denied = ids[:1500]
    d, i = index.search(queries, 10, deny=denied)
    wd, wi = knn(queries, codes[1500:], ids[1500:], 10, hashindex.PAD_DISTANCE)
    np.testing.assert_array_equal(i, wi)
    got = index.range_search(queries, 20, allow=ids[:700])
    for a, b in zip(got, range_search(queries, codes[:700], ids[:700], 20)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="give one of them"):
        index.search(queries, 3, allow=ids[:3], deny=ids[3:6])

    fields = sharded(FIELDS, shards=3, cls=hd.ShardedMultiFieldIndex, batch_size=40)
    mf = {f: random_codes(rng, 2000, b // 8, pool=30) for f, b in FIELDS.items()}
    groups = rng.integers(0, 25, 2000)
    fields.add(mf, ids, groups)
    q = {f: c[:30] for f, c in mf.items()}
    allow = ids[rng.random(2000) < 0.2]
    kept = np.isin(ids, allow)
    d, i = fields.search(q, 8, weights={"normal": 1, "abnormal": 2}, one_per_group=True, allow=allow)
    wd, wi = multi_field_knn(q, {f: c[kept] for f, c in mf.items()}, ids[kept], groups[kept],
                             {"normal": 1, "abnormal": 2}, 8, None, True)
    np.testing.assert_array_equal(i, wi)
    np.testing.assert_array_equal(d, wd)


def test_empty_k_beyond_n_and_no_queries(sharded):
    index = sharded(128, shards=3)
    q = np.zeros((2, 16), np.uint8)
    d, i = index.search(q, 5)
    assert (i == -1).all() and (d == hashindex.PAD_DISTANCE).all()
    index.add(np.ones((2, 16), np.uint8))
    d, i = index.search(q, 5)
    np.testing.assert_array_equal(i, [[0, 1, -1, -1, -1]] * 2)
    assert index.search(np.zeros((0, 16), np.uint8), 3).ids.shape == (0, 3)
    r = index.range_search(np.zeros((0, 16), np.uint8), 3)
    assert r.lims.tolist() == [0] and len(r.ids) == 0


def test_remove_get_and_errors_match_flat(sharded):
    rng = np.random.default_rng(4)
    codes = random_codes(rng, 500, 4)
    index, flat = sharded(32, shards=4), hashindex.FlatIndex(32)
    for x in (index, flat):
        x.add(codes)
        x.remove([3, 400, 77])
        x.add(codes[:5])  # default ids continue after the largest ever added
    np.testing.assert_array_equal(index.ids(), np.sort(flat.ids()))
    np.testing.assert_array_equal(index.get([500, 2, 499]), flat.get([500, 2, 499]))
    np.testing.assert_array_equal(index.reconstruct(9), codes[9])
    assert 3 not in index and 4 in index and "4" not in index and -1 not in index
    with pytest.raises(KeyError, match="id 3 "):
        index.remove([5, 3])
    assert 5 in index  # all or nothing
    with pytest.raises(KeyError):
        index.get([3])
    with pytest.raises(ValueError, match="already in the index"):
        index.add(codes[:2], ids=[1000, 4])
    assert 1000 not in index
    with pytest.raises(ValueError, match="appears twice"):
        index.add(codes[:2], ids=[7000, 7000])
    with pytest.raises(ValueError, match="code_size|bytes"):
        index.add(np.zeros((2, 5), np.uint8))
    q = random_codes(rng, 20, 4)
    np.testing.assert_array_equal(index.search(q, 8).ids, flat.search(q, 8).ids)


@pytest.mark.parametrize("bad", [dict(kind="ivf"), dict(shards=0), dict(recovery_timeout=-1), dict(batch_size=0)])
def test_bad_options(sharded, bad):
    with pytest.raises((ValueError, TypeError)):
        sharded(64, **bad)


# --- multi-field ------------------------------------------------------------------------------

FIELDS = {"normal": 64, "abnormal": 40}


@pytest.mark.parametrize("pool", [None, 4])
@pytest.mark.parametrize("mih", [False, True])
def test_multi_field_matches_oracle(sharded, pool, mih, tmp_path):
    rng = np.random.default_rng(5)
    n = 2000
    codes = {f: random_codes(rng, n, b // 8, pool=pool) for f, b in FIELDS.items()}
    ids = rng.permutation(10 * n)[:n].astype(np.int64)
    groups = rng.integers(0, 40, n)  # a group's items sit on every shard
    groups[:100] = -1  # some items without a group
    index = sharded(FIELDS, shards=4, cls=hd.ShardedMultiFieldIndex, batch_size=50, mih=mih)
    assert index.mih == mih
    index.add({f: c[100:] for f, c in codes.items()}, ids[100:], groups[100:])
    index.add({f: c[:100] for f, c in codes.items()}, ids[:100])
    queries = {f: random_codes(rng, 120, b // 8, pool=pool) for f, b in FIELDS.items()}
    exclude = rng.integers(-1, 40, 120)
    for weights, ex, opg in [(None, None, False), ({"normal": 1, "abnormal": 2.5}, exclude, False),
                             ({"abnormal": 1}, None, True), ({"normal": 0.5, "abnormal": 1}, exclude, True)]:
        q = queries if weights is None else {f: queries[f] for f in weights}
        d, i = index.search(q, 12, weights=weights, exclude_groups=ex, one_per_group=opg)
        w = weights or {f: 1.0 for f in FIELDS}
        wd, wi = multi_field_knn(q, codes, ids, groups, w, 12, ex, opg)
        np.testing.assert_array_equal(i, wi)
        np.testing.assert_array_equal(d, wd)
    np.testing.assert_array_equal(index.groups(ids[95:105]), groups[95:105])
    got = index.get(ids[:3])
    for f in FIELDS:
        np.testing.assert_array_equal(got[f], codes[f][:3])
    np.testing.assert_array_equal(index.get(ids[:3], field="abnormal"), codes["abnormal"][:3])
    index.remove(ids[:500])
    keep = slice(500, None)
    d, i = index.search(queries, 7, one_per_group=True)
    wd, wi = multi_field_knn(queries, {f: c[keep] for f, c in codes.items()}, ids[keep], groups[keep],
                             {f: 1.0 for f in FIELDS}, 7, None, True)
    np.testing.assert_array_equal(i, wi)
    index.save(tmp_path / "copy")
    again = hd.load(tmp_path / "copy")
    try:
        assert again.mih == mih and ("mih=True" in repr(again)) == mih
        np.testing.assert_array_equal(again.search(queries, 7, one_per_group=True)[1], wi)
    finally:
        again.close()


# --- persistence ------------------------------------------------------------------------------

def test_checkpoint_copy_and_reopen(sharded, tmp_path):
    rng = np.random.default_rng(6)
    codes = random_codes(rng, 1200, 16, pool=30)
    index = sharded(128, shards=3, kind="mih")
    index.add(codes[:800])
    index.save()  # checkpoint: snapshots + manifest, logs emptied
    index.add(codes[800:])  # only in the logs
    index.remove([5, 900])
    index.save(tmp_path / "copy")
    q = random_codes(rng, 40, 16, pool=30)
    want = index.search(q, 9)
    index.close()
    for where in (index.directory, tmp_path / "copy"):
        again = hd.load(where)
        assert isinstance(again, hd.ShardedIndex) and again.kind == "mih" and again.nshards == 3
        got = again.search(q, 9)
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.distances, want.distances)
        assert len(again) == 1198
        again.add(codes[:1])  # the next default id continues
        assert 1200 in again
        again.close()
    snapshots = hd.read_manifest(str(tmp_path / "copy"))["snapshots"]
    assert sorted(n for n in os.listdir(tmp_path / "copy") if n.endswith(".hx")) == sorted(snapshots)


def test_ivf_shards_answer_as_one_ivf_with_the_same_centroids(sharded, tmp_path):
    """Kind 'ivf': trained on the driver, every shard probes the same lists, so each nprobe gives one
    IVFIndex's answers (ties by id, filters, range search); the centroids, the training and nprobe
    come back from the manifest, in place and in a copy, before and after a shard's first snapshot."""
    rng = np.random.default_rng(9)
    centres = random_codes(rng, 12, 16)
    xb = centres[rng.integers(0, 12, 2000)] ^ random_codes(rng, 2000, 16, pool=40) & np.uint8(3)  # near centres
    xq = xb[rng.integers(0, 2000, 30)] ^ np.uint8(1)
    ids = rng.permutation(10**6)[:2000].astype(np.int64)
    index = sharded(128, shards=3, kind="ivf", nlist=16)
    with pytest.raises(ValueError, match="not trained"):
        index.add(xb[:5])
    index.train(xb[:600], seed=4)
    local = hashindex.IVFIndex(128, 16)
    local.train(xb[:600], seed=4)
    np.testing.assert_array_equal(index.centroids, local.centroids)  # the same training as one machine's
    index.add(xb, ids)
    local.add(xb, ids)
    with pytest.raises(ValueError, match="holds codes"):
        index.train(xb[:600])
    allow = ids[rng.random(2000) < 0.3]
    for nprobe in (1, 3, 16):
        for got, want in ((index.search(xq, 7, nprobe=nprobe), local.search(xq, 7, nprobe=nprobe)),
                          (index.search(xq, 7, nprobe=nprobe, allow=allow), local.search(xq, 7, nprobe=nprobe, allow=allow)),
                          (index.range_search(xq, 20, nprobe=nprobe), local.range_search(xq, 20, nprobe=nprobe))):
            for a, b in zip(got, want):
                np.testing.assert_array_equal(a, b)
    index.nprobe = 3
    np.testing.assert_array_equal(index.search(xq, 7).ids, local.search(xq, 7, nprobe=3).ids)
    index.save(tmp_path / "copy")
    want = index.search(xq, 7)
    index.close()
    for where in (index.directory, tmp_path / "copy"):  # the original's shards never snapshotted: their logs
        again = hd.load(where)
        assert (again.kind, again.nlist, again.is_trained) == ("ivf", 16, True)
        for a, b in zip(again.search(xq, 7, nprobe=3), want):
            np.testing.assert_array_equal(a, b)
        again.close()
    with hd.load(tmp_path / "copy") as copy:
        assert copy.nprobe == 3  # saved with the copy's manifest
    with pytest.raises(ValueError, match="nlist"):
        hd.ShardedIndex(64, 2, "flat", nlist=4)
    flat = sharded(64, shards=2)
    with pytest.raises(ValueError, match="nprobe"):
        flat.search(random_codes(rng, 2, 8), 1, nprobe=2)
    with pytest.raises(AttributeError, match="ivf"):
        flat.train(random_codes(rng, 10, 8))


def test_manifest_and_shard_files_are_checked(sharded, tmp_path):
    index = sharded(64, shards=2)
    index.add(np.zeros((10, 8), np.uint8))
    index.save()
    index.close()
    manifest = os.path.join(index.directory, MANIFEST)
    text = Path(manifest).read_text()
    with pytest.raises(FileExistsError, match="already holds"):
        hd.ShardedIndex(64, directory=index.directory)
    with open(manifest, "w") as f:
        f.write(text.replace('"version": 1', '"version": 99'))
    with pytest.raises(hashindex.FormatError, match="newer"):
        hd.load(index.directory)
    with open(manifest, "w") as f:
        f.write(text)
    snapshot = next(n for n in os.listdir(index.directory) if n.endswith(".hx"))
    with open(os.path.join(index.directory, snapshot), "r+b") as f:
        f.seek(40)
        f.write(b"\xff\xff")
    with pytest.raises(hashindex.FormatError, match="could not open"):
        hd.load(index.directory)
    with pytest.raises(FileNotFoundError, match="manifest"):
        hd.load(tmp_path)


def test_torn_log_tail_is_dropped_and_damage_inside_is_refused(sharded):
    index = sharded(64, shards=1)
    index.add(np.zeros((3, 8), np.uint8))
    index.add(np.ones((2, 8), np.uint8))
    index.close()
    log = os.path.join(index.directory, "shard-00000.log")
    whole = Path(log).read_bytes()
    with open(log, "wb") as f:  # a crash in the middle of the second add's record
        f.write(whole[:-7])
    again = hd.load(index.directory)
    np.testing.assert_array_equal(again.ids(), [0, 1, 2])
    again.add(np.ones((1, 8), np.uint8))  # appends after the cut
    again.close()
    data = bytearray(Path(log).read_bytes())
    data[len(LOG_MAGIC) + 1 + RECORD.size + 3] ^= 0xFF  # inside the first record's payload
    with open(log, "wb") as f:
        f.write(bytes(data))
    with pytest.raises(hashindex.FormatError, match="damaged record"):
        hd.load(index.directory)


# --- failures ---------------------------------------------------------------------------------

@pytest.mark.parametrize("no_restart", [False, True])  # Ray restarts it / it is gone and we recreate it
def test_shard_killed_mid_stream_loses_nothing_acknowledged(sharded, no_restart):
    rng = np.random.default_rng(7)
    index = sharded(64, shards=4, kind="flat")
    acknowledged: list[np.ndarray] = []
    stop = threading.Event()
    kills = []

    def killer():
        while not stop.is_set() and len(kills) < 3:
            time.sleep(0.15)
            victim = len(kills) % 4
            kills.append(index.shard_actors[victim]._actor_id.hex())
            ray.kill(index.shard_actors[victim], no_restart=no_restart)

    codes = random_codes(rng, 12_000, 8, pool=500)
    thread = threading.Thread(target=killer)
    thread.start()
    try:
        for b in range(0, len(codes), 200):
            index.add(codes[b:b + 200])
            acknowledged.append(np.arange(b, min(b + 200, len(codes))))
            q = codes[b:b + 3]
            d, i = index.search(q, 5)  # complete answers while shards die and return
            assert (i >= 0).all()
    finally:
        stop.set()
        thread.join()
    assert len(kills) == 3
    ids = np.concatenate(acknowledged)
    assert len(index) == len(ids)
    np.testing.assert_array_equal(index.ids(), ids)
    flat = hashindex.FlatIndex(64)
    flat.add(codes)
    q = random_codes(rng, 60, 8, pool=500)
    np.testing.assert_array_equal(index.search(q, 10).ids, flat.search(q, 10).ids)
    np.testing.assert_array_equal(index.get(ids[::997]), codes[ids[::997]])


def test_a_query_in_flight_when_its_shard_dies_is_answered_whole(sharded):
    rng = np.random.default_rng(9)
    codes = random_codes(rng, 100_000, 8)
    index = sharded(64, shards=2, batch_size=1 << 20)  # one long call per shard
    index.add(codes)
    flat = hashindex.FlatIndex(64)
    flat.add(codes)
    queries = random_codes(rng, 4000, 8)
    want = flat.search(queries, 10)
    for _ in range(10):  # until a kill lands while a call runs
        answer = {}
        search = threading.Thread(target=lambda answer=answer: answer.update(r=index.search(queries, 10)))
        search.start()
        time.sleep(0.03)
        ray.kill(index.shard_actors[1], no_restart=False)
        search.join()
        np.testing.assert_array_equal(answer["r"].ids, want.ids)
        if index.recoveries:
            break
    assert index.recoveries >= 1


def test_a_shard_that_cannot_recover_raises_instead_of_answering_partially(sharded):
    index = sharded(64, shards=2, recovery_timeout=1.5)
    index.add(np.zeros((40, 8), np.uint8))
    log = os.path.join(index.directory, "shard-00001.log")
    data = bytearray(Path(log).read_bytes())
    data[len(LOG_MAGIC) + 1 + RECORD.size] ^= 0xFF  # its only record, now damaged
    with open(log, "wb") as f:
        f.write(bytes(data) + bytes(data[len(LOG_MAGIC) + 1:]))  # ... with a record after it
    ray.kill(index.shard_actors[1], no_restart=False)
    t = time.monotonic()
    with pytest.raises(hd.ShardUnavailableError, match="shard 1 did not recover"):
        for _ in range(100):  # ray.kill returns at once: the old actor may still answer the first calls
            index.search(np.zeros((1, 8), np.uint8), 3)
            time.sleep(0.05)
    assert time.monotonic() - t < 30


def test_read_only_copies_search_in_parallel_drivers(sharded):
    rng = np.random.default_rng(8)
    codes = random_codes(rng, 2000, 8, pool=50)
    index = sharded(64, shards=3)
    index.add(codes)

    @ray.remote
    def answer(copy, queries):
        return copy.search(queries, 6)

    queries = random_codes(rng, 90, 8, pool=50)
    parts = ray.get([answer.remote(index, q) for q in np.array_split(queries, 3)])
    flat = hashindex.FlatIndex(64)
    flat.add(codes)
    want = flat.search(queries, 6)
    np.testing.assert_array_equal(np.concatenate([p.ids for p in parts]), want.ids)
    copy = pickle.loads(pickle.dumps(index))
    with pytest.raises(RuntimeError, match="read-only copy"):
        copy.add(codes[:1])
    copy.close()  # forgets the actors, stops nothing
    assert len(index) == 2000
