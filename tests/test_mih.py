"""MIHIndex returns exactly what FlatIndex (and the numpy oracle) return, and probes sub-linearly."""
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracle import knn, random_codes, range_search

import hashindex
from hashindex import _core

PAD = hashindex.PAD_DISTANCE


def clustered_codes(rng, n, code_size, *, centres=20, flips=3):
    """Codes as real hashes look: cluster centres with a few bits flipped."""
    base = rng.integers(0, 256, (centres, code_size), dtype=np.uint8)
    codes = base[rng.integers(0, centres, n)].copy()
    bits = np.unpackbits(codes, axis=1)
    for row in bits:
        row[rng.integers(0, bits.shape[1], rng.integers(0, flips + 1))] ^= 1
    return np.packbits(bits, axis=1)


@pytest.fixture(params=[1.0, 1e4], ids=["cost-model", "probe-more"])
def budget(request):
    """Runs once with the cost model as shipped and once with probing favoured,
    so that the probe path is checked even on databases small enough to scan."""
    _core.set_mih_budget_scale(request.param)
    yield request.param
    _core.set_mih_budget_scale(1.0)


@st.composite
def cases(draw):
    nbits = 8 * draw(st.sampled_from([1, 2, 3, 4, 5, 8, 9, 16, 32, 64]))
    lo = -(-nbits // 64)
    m = draw(st.one_of(st.none(), st.integers(lo, max(lo, min(nbits // 4, 24)))))
    n = draw(st.integers(0, 2500))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["uniform", "clustered", "duplicates"]))
    if kind == "uniform":
        xb = random_codes(rng, n, nbits // 8)
    elif kind == "clustered":
        xb = clustered_codes(rng, n, nbits // 8)
    else:
        xb = random_codes(rng, n, nbits // 8, pool=5)
    xq = np.concatenate([random_codes(rng, draw(st.integers(0, 4)), nbits // 8),
                         xb[rng.integers(0, n, draw(st.integers(0, 4)))] ^ np.uint8(5) if n else xb[:0],
                         xb[: draw(st.integers(0, 3))]])
    ids = rng.permutation(4 * n + 1)[:n].astype(np.int64)
    batches = draw(st.integers(1, 3))
    return nbits, m, xb, xq, ids, batches, rng


def build_both(nbits, m, xb, ids, batches):
    mih, flat = hashindex.MIHIndex(nbits, m), hashindex.FlatIndex(nbits)
    for part in np.array_split(np.arange(len(xb)), batches):
        mih.add(xb[part], ids[part])
        flat.add(xb[part], ids[part])
    return mih, flat


def assert_same_search(mih, flat, xq, k, threads=1):
    got, want = mih.search(xq, k, threads=threads), flat.search(xq, k, threads=threads)
    np.testing.assert_array_equal(got.distances, want.distances)
    np.testing.assert_array_equal(got.ids, want.ids)


@given(case=cases(), k_extra=st.integers(-30, 3), threads=st.sampled_from([1, 2]))
def test_knn_identical_to_flat(budget, simd, case, k_extra, threads):
    nbits, m, xb, xq, ids, batches, _ = case
    mih, flat = build_both(nbits, m, xb, ids, batches)
    k = max(1, min(len(xb) + k_extra, 60))
    assert_same_search(mih, flat, xq, k, threads)
    want = knn(xq, xb, ids, k, PAD)
    np.testing.assert_array_equal(mih.search(xq, k).ids, want[1])


@given(case=cases(), radius=st.integers(0, 20))
def test_range_identical_to_oracle(budget, case, radius):
    nbits, m, xb, xq, ids, batches, _ = case
    mih, _ = build_both(nbits, m, xb, ids, batches)
    got = mih.range_search(xq, radius)
    want = range_search(xq, xb, ids, radius)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


@given(case=cases(), k=st.integers(1, 20))
def test_after_removals_and_round_trips(budget, case, k):
    nbits, m, xb, xq, ids, batches, rng = case
    mih, flat = build_both(nbits, m, xb, ids, batches)
    gone = rng.choice(ids, len(ids) // 3, replace=False) if len(ids) else ids
    mih.remove(gone)
    flat.remove(gone)
    assert len(mih) == len(flat) and set(mih.ids().tolist()) == set(flat.ids().tolist())
    assert_same_search(mih, flat, xq, k)
    for copy in (pickle.loads(pickle.dumps(mih)), hashindex.MIHIndex.from_bytes(mih.to_bytes())):
        assert isinstance(copy, hashindex.MIHIndex)
        assert m is None or len(copy) == 0 or copy.m == m  # automatic m is re-chosen for the codes left
        assert_same_search(copy, flat, xq, k)
    keep = ids[~np.isin(ids, gone)]
    np.testing.assert_array_equal(mih.get(keep), flat.get(keep))


def test_clustered_data_is_searched_sub_linearly():
    rng = np.random.default_rng(0)
    n = 300_000
    data = clustered_codes(rng, n + 40, 8, centres=3000, flips=2)  # queries from the same clusters
    xb, xq = data[:n], data[n:]
    mih, flat = build_both(64, None, xb, np.arange(n), 1)
    probed = candidates = 0
    for q in xq:  # single queries: the case where a scan costs the most per query
        assert_same_search(mih, flat, q, 10)
        stats = mih.last_search_stats
        assert stats["queries"] == 1 and stats["by_mih"] + stats["by_scan"] == 1
        probed += stats["by_mih"]
        candidates += stats["candidates"]
    assert probed >= 30, probed
    assert candidates < 0.01 * n * probed, candidates
    assert mih.m == 4  # 64 bits / min(16, log2 n)


def test_uniform_small_radius_range_search_probes_little():
    rng = np.random.default_rng(1)
    xb = random_codes(rng, 100_000, 16)
    mih, flat = build_both(128, None, xb, np.arange(100_000), 1)
    xq = xb[:20] ^ np.uint8(3)
    got = mih.range_search(xq, 6)
    want = flat.range_search(xq, 6)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    stats = mih.last_search_stats
    assert stats["by_mih"] == 20 and stats["candidates"] < 20 * 2000, stats


def test_cost_model_scans_when_probing_would_not_pay():
    rng = np.random.default_rng(2)
    xb = random_codes(rng, 2000, 8)
    mih, flat = build_both(64, None, xb, np.arange(2000), 1)
    xq = random_codes(rng, 10, 8)
    assert_same_search(mih, flat, xq, 100)
    assert mih.last_search_stats["by_scan"] == 10


def test_m_is_rechosen_as_the_index_grows():
    rng = np.random.default_rng(3)
    mih = hashindex.MIHIndex(128)
    assert mih.m == 0
    mih.add(random_codes(rng, 300, 16))
    small = mih.m
    mih.add(random_codes(rng, 100_000, 16))
    assert small > mih.m == 8  # 128 bits / 16-bit substrings
    fixed = hashindex.MIHIndex(128, m=5)
    fixed.add(random_codes(rng, 3000, 16))
    assert fixed.m == 5


def test_tail_is_merged_and_then_indexed():
    rng = np.random.default_rng(4)
    xb = clustered_codes(rng, 20_000, 8)
    mih, flat = build_both(64, None, xb, np.arange(20_000), 1)
    extra = clustered_codes(rng, 100, 8)
    mih.add(extra)
    flat.add(extra)
    xq = xb[:30]
    assert_same_search(mih, flat, xq, 15)
    assert mih.last_search_stats["tail"] == 100
    more = clustered_codes(rng, 2000, 8)
    mih.add(more)
    flat.add(more)
    assert_same_search(mih, flat, xq, 15)
    assert mih.last_search_stats["tail"] == 0  # the tail outgrew 1/64 of the index: rebuilt


def test_empty_and_k_beyond_n():
    mih = hashindex.MIHIndex(32)
    d, i = mih.search(np.zeros((2, 4), np.uint8), 3)
    assert (d == PAD).all() and (i == -1).all()
    mih.add(np.arange(8, dtype=np.uint8).reshape(2, 4))
    d, i = mih.search(np.zeros((1, 4), np.uint8), 5)
    assert i[0, :2].tolist() == [0, 1] and (i[0, 2:] == -1).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="m: expected between 2"):
        hashindex.MIHIndex(128, m=1)
    with pytest.raises(ValueError, match="m: expected"):
        hashindex.MIHIndex(16, m=17)
    with pytest.raises(ValueError, match="m"):
        hashindex.MIHIndex(16, m=0)
    with pytest.raises(TypeError, match="m"):
        hashindex.MIHIndex(16, m=2.0)
    mih = hashindex.MIHIndex(16)
    with pytest.raises(TypeError, match="queries"):
        mih.search(np.zeros((1, 2), np.float32), 1)
    with pytest.raises(ValueError, match="k"):
        mih.search(np.zeros((1, 2), np.uint8), 0)
    mih.add(np.zeros((3, 2), np.uint8))
    with pytest.raises(ValueError, match="already in the index"):
        mih.add(np.zeros((1, 2), np.uint8), np.array([1]))
    with pytest.raises(KeyError):
        mih.remove(np.array([0, 77]))
    assert len(mih) == 3


def test_kinds_do_not_mix_and_convert(tmp_path):
    flat = hashindex.FlatIndex(64)
    flat.add(np.arange(80, dtype=np.uint8).reshape(10, 8), np.arange(10, 20))
    flat.save(tmp_path / "flat.hx")
    with pytest.raises(hashindex.FormatError, match="holds a FlatIndex.*not a MIHIndex"):
        hashindex.MIHIndex.load(tmp_path / "flat.hx")
    mih = hashindex.MIHIndex.from_index(hashindex.load(tmp_path / "flat.hx"))
    mih.save(tmp_path / "mih.hx")
    back = hashindex.load(tmp_path / "mih.hx")
    assert isinstance(back, hashindex.MIHIndex)
    assert_same_search(back, flat, np.arange(16, dtype=np.uint8).reshape(2, 8), 4)
    with pytest.raises(hashindex.FormatError, match="holds a MIHIndex"):
        hashindex.FlatIndex.load(tmp_path / "mih.hx")


def test_concurrent_searches_adds_and_removes():
    import threading

    rng = np.random.default_rng(5)
    xb = clustered_codes(rng, 30_000, 8)
    mih = hashindex.MIHIndex(64)
    mih.add(xb)
    xq = xb[:20] ^ np.uint8(2)
    want = mih.search(xq, 5)
    errors = []

    def searcher():
        try:
            for _ in range(10):
                got = mih.search(xq, 5, threads=2)
                # Only codes with new ids come and go: distances never get worse than at the start.
                assert (got.distances <= want.distances).all()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def writer():
        for i in range(10):
            ids = np.arange(100_000 + 1000 * i, 100_000 + 1000 * i + 500)
            mih.add(clustered_codes(np.random.default_rng(i), 500, 8), ids)
            mih.remove(ids[:250])

    threads = [threading.Thread(target=searcher) for _ in range(3)] + [threading.Thread(target=writer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(mih) == 30_000 + 10 * 250


def test_default_ids_continue_after_largest_ever_added():
    """As in FlatIndex: an id removed from the unindexed tail is not handed out again."""
    mih = hashindex.MIHIndex(64)
    mih.add(np.zeros((2000, 8), np.uint8))  # ids 0..1999, indexed
    mih.add(np.ones((1, 8), np.uint8))  # id 2000, in the tail
    mih.remove(np.array([2000]))
    mih.add(np.ones((1, 8), np.uint8))
    assert 2001 in mih and 2000 not in mih
    back = hashindex.MIHIndex.from_bytes(mih.to_bytes())
    back.add(np.ones((1, 8), np.uint8))
    assert 2002 in back
