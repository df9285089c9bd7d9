"""allow / deny filters on every index kind: the same answers as the numpy oracle over only the items
that pass, k results whenever k pass; small allow lists (gathered) and large ones (a mask), deny
lists, sets and bitmaps, ids the index does not hold, removals and MIH's unindexed tail."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracle import knn, multi_field_knn, random_codes, range_search

import hashindex


def _passing(ids, allow, deny):
    if allow is not None:
        return np.isin(ids, np.asarray(sorted(allow) if isinstance(allow, set) else allow, dtype=np.int64))
    if deny is not None:
        return ~np.isin(ids, np.asarray(deny, dtype=np.int64))
    return np.ones(len(ids), bool)


def _filters(rng, ids):
    absent = np.array([10**9, 10**9 + 7])
    small = rng.choice(ids, size=min(len(ids), 5), replace=False) if len(ids) else np.zeros(0, np.int64)
    half = rng.choice(ids, size=len(ids) // 2, replace=False)
    return [
        dict(allow=small),                                  # gathered: < 1/16 of the index
        dict(allow=np.concatenate([small, small, absent])),  # repeats and absent ids
        dict(allow=half),                                   # a mask
        dict(allow=set(half.tolist())),
        dict(allow=[]),                                     # nothing passes
        dict(deny=half),
        dict(deny=np.concatenate([small, absent])),
        dict(deny=ids),                                     # nothing passes
    ]


@pytest.mark.parametrize("kind", ["flat", "mih"])
@given(seed=st.integers(0, 2**32 - 1), pool=st.sampled_from([None, 6]), k=st.integers(1, 30))
def test_single_field_filters_match_oracle(simd, kind, seed, pool, k):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 400))
    codes = random_codes(rng, n, 8, pool=pool)
    ids = rng.permutation(20 * n + 10)[:n].astype(np.int64)
    index = hashindex.FlatIndex(64) if kind == "flat" else hashindex.MIHIndex(64)
    index.add(codes[: n // 2], ids[: n // 2])
    index.add(codes[n // 2:], ids[n // 2:])  # for MIH, a tail that is not yet in the tables
    queries = random_codes(rng, 6, 8, pool=pool)
    for f in _filters(rng, ids):
        keep = _passing(ids, f.get("allow"), f.get("deny"))
        got = index.search(queries, k, **f)
        want = knn(queries, codes[keep], ids[keep], k, hashindex.PAD_DISTANCE)
        np.testing.assert_array_equal(got.ids, want[1], err_msg=str(f))
        np.testing.assert_array_equal(got.distances, want[0])
        r = index.range_search(queries, 25, **f)
        for a, b in zip(r, range_search(queries, codes[keep], ids[keep], 25)):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["flat", "mih"])
def test_filters_after_removals_and_at_scale(kind):
    rng = np.random.default_rng(11)
    n = 60_000
    codes = random_codes(rng, n, 8, pool=3000)  # clustered enough for MIH to probe
    index = hashindex.FlatIndex(64) if kind == "flat" else hashindex.MIHIndex(64)
    index.add(codes)
    removed = rng.choice(n, 5000, replace=False)
    index.remove(removed)
    ids = np.setdiff1d(np.arange(n), removed)
    codes_left = codes[ids]
    queries = codes[rng.integers(0, n, 20)]
    for f in [dict(allow=rng.choice(n, 2000, replace=False)),   # gathered; includes removed ids
              dict(allow=rng.choice(n, 30_000, replace=False)),  # a mask
              dict(deny=rng.choice(n, 30_000, replace=False)),
              dict(allow=np.isin(np.arange(n), rng.choice(n, 20_000, replace=False)))]:  # a bitmap
        keep = _passing(ids, np.flatnonzero(f["allow"]) if isinstance(f.get("allow"), np.ndarray)
                        and f["allow"].dtype == bool else f.get("allow"), f.get("deny"))
        got = index.search(queries, 10, **f)
        want = knn(queries, codes_left[keep], ids[keep], 10, hashindex.PAD_DISTANCE)
        np.testing.assert_array_equal(got.ids, want[1])
        np.testing.assert_array_equal(got.distances, want[0])


def test_k_results_whenever_k_pass():
    index = hashindex.FlatIndex(64)
    index.add(np.zeros((1000, 8), np.uint8))
    allowed = np.arange(500, 1000, 37)
    d, i = index.search(np.zeros(8, np.uint8), 10, allow=allowed)
    np.testing.assert_array_equal(i[0], allowed[:10])


@given(seed=st.integers(0, 2**32 - 1), one_per_group=st.booleans(), exclude=st.booleans())
def test_multi_field_filters_match_oracle(simd, seed, one_per_group, exclude):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 300))
    fields = {"normal": 64, "abnormal": 40}
    codes = {f: random_codes(rng, n, b // 8, pool=8) for f, b in fields.items()}
    ids = rng.permutation(5 * n + 3)[:n].astype(np.int64)
    groups = rng.integers(0, 7, n)
    index = hashindex.MultiFieldIndex(fields)
    index.add(codes, ids, groups)
    queries = {f: random_codes(rng, 5, b // 8, pool=8) for f, b in fields.items()}
    weights = {"normal": 1.0, "abnormal": 2.0}
    ex = rng.integers(-1, 7, 5) if exclude else None
    for f in _filters(rng, ids):
        keep = _passing(ids, f.get("allow"), f.get("deny"))
        got = index.search(queries, 8, weights=weights, exclude_groups=ex, one_per_group=one_per_group, **f)
        want = multi_field_knn(queries, {x: c[keep] for x, c in codes.items()}, ids[keep], groups[keep], weights,
                               8, ex, one_per_group)
        np.testing.assert_array_equal(got.ids, want[1], err_msg=str(f))
        np.testing.assert_array_equal(got.distances, want[0])


@pytest.mark.parametrize("bad, error, match", [
    (dict(allow=[1], deny=[2]), ValueError, "not both"),
    (dict(allow=[-1]), ValueError, "got -1"),
    (dict(deny=np.array([1.5])), TypeError, "integer"),
    (dict(allow="1,2"), TypeError, "allow"),
    (dict(allow=np.zeros((2, 2), bool)), ValueError, "1-D"),
])
def test_bad_filters_say_what_is_wrong(bad, error, match):
    for index in (hashindex.FlatIndex(64), hashindex.MIHIndex(64)):
        with pytest.raises(error, match=match):
            index.search(np.zeros((1, 8), np.uint8), 3, **bad)
    multi = hashindex.MultiFieldIndex({"a": 64})
    with pytest.raises(error, match=match):
        multi.search({"a": np.zeros((1, 8), np.uint8)}, 3, **bad)
