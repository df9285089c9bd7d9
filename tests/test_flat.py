"""FlatIndex against the numpy brute-force oracle (tests/oracle.py) and faiss."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracle import knn, random_codes, range_search

import hashindex

PAD = hashindex.PAD_DISTANCE


@st.composite
def databases(draw, max_n=3000):
    nbits = 8 * draw(st.sampled_from([1, 2, 3, 5, 7, 8, 9, 13, 16, 24, 32, 33, 64, 128, 200, 256]))
    n = draw(st.integers(0, max_n))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    pool = draw(st.sampled_from([None, 1, 3, 50]))  # small pools: duplicates and ties everywhere
    xb = random_codes(rng, n, nbits // 8, pool=pool)
    xq = np.concatenate([random_codes(rng, draw(st.integers(0, 9)), nbits // 8), xb[: draw(st.integers(0, 3))]])
    custom_ids = draw(st.booleans())
    ids = rng.permutation(10 * n + 1)[:n].astype(np.int64) if custom_ids else np.arange(n, dtype=np.int64)
    return nbits, xb, xq, ids


def build(nbits, xb, ids):
    index = hashindex.FlatIndex(nbits)
    index.add(xb, ids)
    return index


@given(db=databases(), k_extra=st.integers(-50, 3), threads=st.sampled_from([1, 2]))
def test_search_matches_oracle(simd, db, k_extra, threads):
    nbits, xb, xq, ids = db
    k = max(1, len(xb) + k_extra)
    index = build(nbits, xb, ids)
    got = index.search(xq, k, threads=threads)
    want = knn(xq, xb, ids, k, PAD)
    np.testing.assert_array_equal(got.distances, want[0])
    np.testing.assert_array_equal(got.ids, want[1])
    assert got.distances.dtype == np.int32 and got.ids.dtype == np.int64


@given(db=databases(max_n=1500), radius=st.integers(0, 40), threads=st.sampled_from([1, 2]))
def test_range_search_matches_oracle(simd, db, radius, threads):
    nbits, xb, xq, ids = db
    index = build(nbits, xb, ids)
    lims, dist, out = index.range_search(xq, radius, threads=threads)
    want = range_search(xq, xb, ids, radius)
    np.testing.assert_array_equal(lims, want[0])
    np.testing.assert_array_equal(dist, want[1])
    np.testing.assert_array_equal(out, want[2])


@pytest.mark.parametrize("kind", ["flat", "mih", "ivf"])
def test_many_hits_in_runs_of_ties_come_in_distance_then_id_order(simd, kind):
    """Past a few dozen hits the results are ordered by a count per distance, then by id within each
    distance: k cutting a run of ties, k past n, and range searches of thousands of hits, against the oracle."""
    rng = np.random.default_rng(5)
    xb = random_codes(rng, 3000, 8, pool=40)  # runs of about 75 equal codes: ties at every distance
    xb[::3] = random_codes(rng, 1000, 8)      # and spread distances
    ids = rng.permutation(10**6)[:len(xb)].astype(np.int64)
    xq = np.concatenate([xb[:3], random_codes(rng, 2, 8)])
    if kind == "ivf":
        index = hashindex.IVFIndex(64, 4)
        index.train(xb, seed=1)
    else:
        index = hashindex.FlatIndex(64) if kind == "flat" else hashindex.MIHIndex(64)
    index.add(xb, ids)
    probe = {"nprobe": 4} if kind == "ivf" else {}
    for k in (1, 63, 64, 65, 100, 500, 2999, 3001):
        got = index.search(xq, k, **probe)
        want = knn(xq, xb, ids, k, PAD)
        np.testing.assert_array_equal(got.distances, want[0], err_msg=f"k={k}")
        np.testing.assert_array_equal(got.ids, want[1], err_msg=f"k={k}")
    for radius in (0, 12, 30, 64):
        lims, dist, out = index.range_search(xq, radius, **probe)
        want = range_search(xq, xb, ids, radius)
        np.testing.assert_array_equal(lims, want[0])
        np.testing.assert_array_equal(dist, want[1])
        np.testing.assert_array_equal(out, want[2])


@pytest.mark.parametrize("nbits", [64, 200, 2048])
@pytest.mark.parametrize("nq", [1, 3])
def test_split_database_path(simd, nbits, nq):
    """Few queries on many codes: the scan is split across threads, then merged."""
    rng = np.random.default_rng(nbits + nq)
    n = 3_000_000 // (nbits // 8) + 3  # 3 MB: large enough to be split (csrc/scan.h kMinBytesPerTask)
    xb = random_codes(rng, n, nbits // 8)
    xb[::7] = xb[0]  # many exact ties at distance 0 spread over every thread's range
    xq = np.concatenate([xb[:1], random_codes(rng, nq - 1, nbits // 8)])
    ids = rng.permutation(n).astype(np.int64)
    index = build(nbits, xb, ids)
    for k in (1, 10, 100):
        got = index.search(xq, k, threads=2)
        want = knn(xq, xb, ids, k, PAD)
        np.testing.assert_array_equal(got.distances, want[0])
        np.testing.assert_array_equal(got.ids, want[1])
    lims, dist, out = index.range_search(xq, nbits // 2 - 5, threads=2)
    want = range_search(xq, xb, ids, nbits // 2 - 5)
    np.testing.assert_array_equal(lims, want[0])
    np.testing.assert_array_equal(out, want[2])


def test_large_nbits_and_every_threshold(simd):
    """Up to 4096 bits scans count hits per distance (CountingSink); longer codes buffer them
    (TopKSink): both sides of the boundary."""
    rng = np.random.default_rng(7)
    for nbits in (1000, 2048, 4096, 4096 + 8):
        xb = random_codes(rng, 999, nbits // 8)
        xq = random_codes(rng, 5, nbits // 8)
        index = build(nbits, xb, np.arange(999))
        got = index.search(xq, 25)
        want = knn(xq, xb, np.arange(999), 25, PAD)
        np.testing.assert_array_equal(got.distances, want[0])
        np.testing.assert_array_equal(got.ids, want[1])


def test_distances_equal_faiss():
    faiss = pytest.importorskip("faiss")
    rng = np.random.default_rng(3)
    for nbits in (64, 256, 1024):
        xb = random_codes(rng, 5000, nbits // 8)
        xq = random_codes(rng, 50, nbits // 8)
        ref = faiss.IndexBinaryFlat(nbits)
        ref.add(xb)
        fd, _ = ref.search(xq, 20)
        index = build(nbits, xb, None)
        np.testing.assert_array_equal(index.search(xq, 20).distances, fd)


def test_empty_index_pads():
    index = hashindex.FlatIndex(64)
    d, i = index.search(np.zeros((3, 8), np.uint8), 4)
    assert (d == PAD).all() and (i == -1).all() and d.shape == (3, 4)
    lims, dist, ids = index.range_search(np.zeros((2, 8), np.uint8), 64)
    assert list(lims) == [0, 0, 0] and len(dist) == len(ids) == 0


def test_no_queries():
    index = build(16, np.ones((10, 2), np.uint8), None)
    d, i = index.search(np.zeros((0, 2), np.uint8), 3)
    assert d.shape == (0, 3) and i.shape == (0, 3)


def test_single_code_and_query_are_1d():
    index = hashindex.FlatIndex(16)
    index.add(np.array([1, 2], np.uint8))
    index.add(np.array([[1, 3]], np.uint8))
    d, i = index.search(np.array([1, 2], np.uint8), 5)
    assert d.tolist() == [[0, 1, PAD, PAD, PAD]] and i.tolist() == [[0, 1, -1, -1, -1]]


def test_default_ids_continue_after_largest():
    index = hashindex.FlatIndex(8)
    index.add(np.zeros((2, 1), np.uint8))
    index.add(np.zeros((1, 1), np.uint8), np.array([10]))
    index.add(np.zeros((2, 1), np.uint8))
    assert sorted(index.ids().tolist()) == [0, 1, 10, 11, 12]


def test_remove_get_reconstruct_against_oracle(simd):
    rng = np.random.default_rng(11)
    xb = random_codes(rng, 2000, 12, pool=300)
    ids = rng.permutation(5000)[:2000].astype(np.int64)
    index = build(96, xb, ids)
    gone = rng.choice(ids, 777, replace=False)
    index.remove(gone)
    keep = ~np.isin(ids, gone)
    assert len(index) == keep.sum() and index.ntotal == keep.sum()
    assert sorted(index.ids().tolist()) == sorted(ids[keep].tolist())
    np.testing.assert_array_equal(index.get(ids[keep][:50]), xb[keep][:50])
    np.testing.assert_array_equal(index.reconstruct(int(ids[keep][3])), xb[keep][3])
    assert int(gone[0]) not in index and int(ids[keep][0]) in index
    xq = random_codes(rng, 20, 12)
    got = index.search(xq, 30)
    want = knn(xq, xb[keep], ids[keep], 30, PAD)
    np.testing.assert_array_equal(got.distances, want[0])
    np.testing.assert_array_equal(got.ids, want[1])
    index.remove(ids[keep])
    assert len(index) == 0 and (index.search(xq, 2).ids == -1).all()


def test_remove_missing_id_is_atomic():
    index = build(8, np.arange(5, dtype=np.uint8)[:, None], None)
    with pytest.raises(KeyError, match="99"):
        index.remove(np.array([1, 99]))
    assert len(index) == 5
    with pytest.raises(KeyError):
        index.get(np.array([7]))
    with pytest.raises(ValueError, match="twice"):
        index.remove(np.array([1, 1]))
    assert len(index) == 5


def test_duplicate_ids_rejected_and_add_is_atomic():
    index = build(8, np.zeros((3, 1), np.uint8), np.array([4, 5, 6]))
    with pytest.raises(ValueError, match="already in the index"):
        index.add(np.zeros((2, 1), np.uint8), np.array([7, 5]))
    with pytest.raises(ValueError, match="twice"):
        index.add(np.zeros((2, 1), np.uint8), np.array([8, 8]))
    assert len(index) == 3 and sorted(index.ids().tolist()) == [4, 5, 6]


def test_reset():
    index = build(8, np.zeros((3, 1), np.uint8), None)
    index.reset()
    assert len(index) == 0
    index.add(np.zeros((1, 1), np.uint8))
    assert index.ids().tolist() == [0]


def test_radius_beyond_nbits_returns_everything():
    index = build(16, np.arange(40, dtype=np.uint8).reshape(20, 2), None)
    lims, _, ids = index.range_search(np.zeros((1, 2), np.uint8), 10**12)
    assert lims.tolist() == [0, 20] and sorted(ids.tolist()) == list(range(20))


def test_non_contiguous_and_read_only_inputs_are_read_correctly():
    rng = np.random.default_rng(5)
    big = random_codes(rng, 400, 16)
    xb = big[::2, ::2]  # strided in both axes: 8 bytes per code
    assert not xb.flags.c_contiguous
    index = hashindex.FlatIndex(64)
    index.add(xb)
    xq = big[1::40, 1::2]
    xq.setflags(write=False)
    want = knn(np.ascontiguousarray(xq), np.ascontiguousarray(xb), np.arange(200), 5, PAD)
    got = index.search(xq, 5)
    np.testing.assert_array_equal(got.distances, want[0])
    np.testing.assert_array_equal(got.ids, want[1])
    np.testing.assert_array_equal(index.get(np.arange(200)), xb)


def test_result_type_unpacks_and_has_names():
    index = build(8, np.zeros((1, 1), np.uint8), None)
    res = index.search(np.zeros((1, 1), np.uint8), 1)
    d, i = res
    assert res.distances is d and res.ids is i
    assert repr(index) == "FlatIndex(nbits=8, ntotal=1)"
