"""MultiFieldIndex against the numpy oracle: weighted sums, group rules, persistence, bad input."""
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracle import multi_field_knn, random_codes

import hashindex

FIELDS = {"normal": 64, "abnormal": 136}


def _data(rng, n, fields=FIELDS, pool=None, ngroups=6, grouped=True):
    codes = {f: random_codes(rng, n, b // 8, pool=pool) for f, b in fields.items()}
    groups = rng.integers(0, ngroups, n) if grouped else None
    return codes, groups


def _check(index, codes, ids, groups, queries, weights, k, exclude=None, one_per_group=False, threads=None):
    got = index.search(queries, k, weights=weights, exclude_groups=exclude, one_per_group=one_per_group,
                       threads=threads)
    g = np.full(len(ids), -1) if groups is None else groups
    want = multi_field_knn(queries, codes, ids, g, weights, k, exclude, one_per_group)
    np.testing.assert_array_equal(got.ids, want[1])
    np.testing.assert_array_equal(got.distances, want[0])
    assert got.distances.dtype == np.float64 and got.ids.dtype == np.int64


@given(
    n=st.integers(0, 300),
    k=st.integers(1, 40),
    pool=st.sampled_from([None, 3, 40]),
    w_normal=st.sampled_from([0.0, 0.5, 1.0, 3.0, 0.1]),
    w_abnormal=st.sampled_from([0.0, 1.0, 2.0, 0.3]),
    one_per_group=st.booleans(),
    exclude=st.booleans(),
    grouped=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_matches_oracle(simd, n, k, pool, w_normal, w_abnormal, one_per_group, exclude, grouped, seed):
    if w_normal == 0 and w_abnormal == 0:
        w_abnormal = 1.0
    rng = np.random.default_rng(seed)
    codes, groups = _data(rng, n, pool=pool, grouped=grouped)
    ids = rng.permutation(10 * n + 5)[:n].astype(np.int64)
    index = hashindex.MultiFieldIndex(FIELDS)
    index.add(codes, ids=ids, groups=groups)
    queries, _ = _data(rng, 7, pool=pool)
    weights = {"normal": w_normal, "abnormal": w_abnormal}
    # fields with weight 0 need no queries
    queries = {f: q for f, q in queries.items() if weights[f] > 0 or rng.random() < 0.5}
    ex = rng.integers(-1, 6, 7) if exclude else None
    _check(index, codes, ids, groups, queries, weights, k, ex, one_per_group)


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_large_index_single_query_split_across_threads(threads):
    rng = np.random.default_rng(1)
    n = 20_000  # above the size at which one query is split by item ranges
    codes, groups = _data(rng, n, pool=500, ngroups=50)
    ids = np.arange(n, dtype=np.int64) * 3
    index = hashindex.MultiFieldIndex(FIELDS)
    index.add(codes, ids=ids, groups=groups)
    queries = {f: c[:2] for f, c in _data(rng, 2, pool=500)[0].items()}
    for one in (False, True):
        _check(index, codes, ids, groups, {f: q[:1] for f, q in queries.items()}, {"normal": 1.0, "abnormal": 0.5},
               25, np.array([groups[0]]), one, threads)
        _check(index, codes, ids, groups, queries, {"abnormal": 1.0}, 25, None, one, threads)


def test_group_rules_return_k_results_when_they_exist():
    rng = np.random.default_rng(2)
    base = random_codes(rng, 1, 8)
    codes = {"normal": np.repeat(base, 30, axis=0), "abnormal": np.repeat(random_codes(rng, 1, 17), 30, axis=0)}
    groups = np.repeat(np.arange(10), 3)  # 10 groups of 3 identical items
    index = hashindex.MultiFieldIndex(FIELDS)
    index.add(codes, groups=groups)
    res = index.search({"normal": base}, 5, one_per_group=True, exclude_groups=0)
    np.testing.assert_array_equal(res.ids[0], [3, 6, 9, 12, 15])  # one per group 1..5, lowest ids
    res = index.search({"normal": base}, 12, one_per_group=True, exclude_groups=0)
    assert (res.ids[0] >= 0).sum() == 9 and np.all(res.distances[0, 9:] == np.inf)


def test_synthetic_query_mixes_fields_of_two_items():
    rng = np.random.default_rng(3)
    codes, groups = _data(rng, 200)
    index = hashindex.MultiFieldIndex(FIELDS)
    index.add(codes, groups=groups)
    mixed = {"normal": codes["normal"][[10]], "abnormal": codes["abnormal"][[20]]}
    res = index.search(mixed, 3)
    expected = multi_field_knn(mixed, codes, np.arange(200), groups, {"normal": 1, "abnormal": 1}, 3)
    np.testing.assert_array_equal(res.ids, expected[1])


def test_content_remove_persistence_and_pickle(tmp_path):
    rng = np.random.default_rng(4)
    codes, groups = _data(rng, 50)
    index = hashindex.MultiFieldIndex(FIELDS)
    index.add({f: c[:30] for f, c in codes.items()}, groups=groups[:30])
    index.add({f: c[30:] for f, c in codes.items()})  # no groups: -1
    assert len(index) == 50 and 49 in index and 50 not in index
    np.testing.assert_array_equal(index.get(np.array([3, 40]), "abnormal"), codes["abnormal"][[3, 40]])
    np.testing.assert_array_equal(index.groups(np.array([3, 40])), [groups[3], -1])
    assert set(index.reconstruct(7)) == set(FIELDS)
    index.remove(np.array([0, 5, 45]))
    keep = np.setdiff1d(np.arange(50), [0, 5, 45])
    g = np.r_[groups[:30], np.full(20, -1)]
    queries = {f: c[:4] for f, c in codes.items()}
    want = multi_field_knn(queries, {f: c[keep] for f, c in codes.items()}, keep, g[keep], {"normal": 1, "abnormal": 1}, 9,
                           None, True)
    for copy in (hashindex.MultiFieldIndex.from_bytes(index.to_bytes()), pickle.loads(pickle.dumps(index)),
                 _saved(index, tmp_path)):
        assert copy.fields == FIELDS
        res = copy.search(queries, 9, one_per_group=True)
        np.testing.assert_array_equal(res.ids, want[1])
        np.testing.assert_array_equal(copy.groups(np.array([40])), [-1])
    index.add({f: c[:1] for f, c in codes.items()})
    assert index.ids().max() == 50  # default ids continue after the largest ever added
    data = bytearray(index.to_bytes())
    data[40] ^= 1
    with pytest.raises(hashindex.FormatError, match="checksum"):
        hashindex.MultiFieldIndex.from_bytes(bytes(data))
    with pytest.raises(hashindex.FormatError, match="MultiFieldIndex"):
        hashindex.FlatIndex.from_bytes(index.to_bytes())


def _saved(index, tmp_path):
    path = tmp_path / "multi.hx"
    index.save(path)
    loaded = hashindex.load(path)
    assert isinstance(loaded, hashindex.MultiFieldIndex)
    return loaded


def test_empty_index_and_k_beyond_n():
    index = hashindex.MultiFieldIndex({"a": 8})
    res = index.search({"a": np.zeros((2, 1), np.uint8)}, 3)
    assert res.ids.shape == (2, 3) and np.all(res.ids == -1) and np.all(np.isinf(res.distances))


@pytest.mark.parametrize("call,error,match", [
    (lambda i: hashindex.MultiFieldIndex({}), TypeError, "fields"),
    (lambda i: hashindex.MultiFieldIndex({"a": 12}), ValueError, r"fields\['a'\]: nbits"),
    (lambda i: i.add({"normal": np.zeros((2, 8), np.uint8)}), ValueError, r"missing \['abnormal'\]"),
    (lambda i: i.add({"normal": np.zeros((2, 8), np.uint8), "abnormal": np.zeros((3, 17), np.uint8)}),
     ValueError, "same number of rows"),
    (lambda i: i.add({"normal": np.zeros((2, 8), np.uint8), "abnormal": np.zeros((2, 17), np.uint8)},
                     groups=np.array([0, -2])), ValueError, "groups: ids must be >= 0"),
    (lambda i: i.add({"normal": np.zeros((2, 8), np.float32), "abnormal": np.zeros((2, 17), np.uint8)}),
     TypeError, r"codes\['normal'\]: expected dtype uint8"),
    (lambda i: i.search({"normal": np.zeros((1, 8), np.uint8)}, 1, weights={"abnormal": 1.0}), ValueError,
     "field 'abnormal' has weight 1.0 but no queries"),
    (lambda i: i.search({"normal": np.zeros((1, 8), np.uint8)}, 1, weights={"normal": -1}), ValueError,
     r"weights\['normal'\]"),
    (lambda i: i.search({"normal": np.zeros((1, 8), np.uint8)}, 1, weights={"normal": float("nan")}), ValueError,
     r"weights\['normal'\]"),
    (lambda i: i.search({"normal": np.zeros((1, 8), np.uint8)}, 1, weights={"normal": 0}), ValueError,
     "at least one weight"),
    (lambda i: i.search({"other": np.zeros((1, 8), np.uint8)}, 1), ValueError, r"unknown fields \['other'\]"),
    (lambda i: i.search({"normal": np.zeros((1, 8), np.uint8)}, 0), ValueError, "k: expected an integer >= 1"),
    (lambda i: i.search({"normal": np.zeros((2, 8), np.uint8)}, 1, exclude_groups=np.array([1])), ValueError,
     r"exclude_groups: expected shape \(2,\)"),
    (lambda i: i.search({"normal": np.zeros((2, 8), np.uint8)}, 1, one_per_group="yes"), TypeError, "one_per_group"),
    (lambda i: i.get(np.array([0]), "other"), ValueError, "field"),
    (lambda i: i.remove(np.array([99])), KeyError, "99"),
])
def test_bad_input(call, error, match):
    index = hashindex.MultiFieldIndex(FIELDS)
    index.add({"normal": np.zeros((1, 8), np.uint8), "abnormal": np.zeros((1, 17), np.uint8)})
    with pytest.raises(error, match=match):
        call(index)
    assert len(index) == 1


_U8 = np.arange(24, dtype=np.uint8)


@pytest.mark.parametrize("queries,weights", [
    ({"normal": _U8[:12].reshape(3, 4)}, None),
    ({"normal": _U8[:4]}, None),  # one code
    ({"normal": _U8[:8].reshape(2, 4), "abnormal": _U8[:4].reshape(2, 2)}, {"normal": 1, "abnormal": 0.5}),
    ({"normal": _U8[:8].reshape(2, 4), "abnormal": _U8[:4].reshape(2, 2)}, {"abnormal": 2.0}),
    ({"normal": _U8[:8].reshape(2, 4), "abnormal": _U8[:4].reshape(2, 2)}, {"normal": 0}),
    ({"normal": _U8[:4]}, {"abnormal": 2.0}),
    ({"normal": _U8[:4]}, {"x": 1.0}),
    ({"normal": _U8[:4]}, {"normal": True}),
    ({"normal": _U8[:4]}, {"normal": float("nan")}),
    ({"normal": _U8[:4]}, {"normal": -1}),
    ({"normal": _U8[:4]}, {"normal": np.float32(2)}),
    ({"normal": None}, None),
    ({"normal": [1, 2, 3, 4]}, None),
    ({"normal": _U8[:15].reshape(3, 5)}, None),
    ({"normal": _U8[:12].reshape(3, 4), "abnormal": _U8[:4].reshape(2, 2)}, None),
    ({"normal": _U8[:12].reshape(3, 4), "other": _U8[:4]}, None),
    ({}, None),
    ({"normal": _U8[:4].astype(np.int16)}, None),
    ({"normal": _U8.reshape(3, 8)[:, ::2]}, None),  # not contiguous
])
def test_common_search_arguments_are_read_as_the_general_checks_read_them(queries, weights):
    """A multi-field search's common arguments (dicts) are checked by a short path; the same
    arguments as other mappings take the general checks: same arrays, weights and errors."""
    from types import MappingProxyType

    from hashindex._validate import field_search_args

    sizes = {"normal": 4, "abnormal": 2}

    def read(q, w):
        try:
            return field_search_args(q, 3, w, 1, True, sizes)
        except (TypeError, ValueError) as exc:
            return type(exc), str(exc)

    short = read(queries, weights)
    general = read(MappingProxyType(queries), None if weights is None else MappingProxyType(weights))
    if isinstance(general, tuple) and isinstance(general[0], type):
        assert short == general
        return
    (arrays, nq, w, k, exclude, one), (g_arrays, g_nq, g_w, g_k, g_exclude, g_one) = short, general
    assert (nq, w, k, one) == (g_nq, g_w, g_k, g_one) and np.array_equal(exclude, g_exclude)
    assert [a is None for a in arrays] == [a is None for a in g_arrays]
    for a, b in zip(arrays, g_arrays):
        assert a is None or (a.dtype == b.dtype and np.array_equal(a, b))


def test_concurrent_searches_while_items_are_added_and_removed():
    import threading

    rng = np.random.default_rng(7)
    codes, groups = _data(rng, 3000, pool=200, ngroups=50)
    index = hashindex.MultiFieldIndex(FIELDS)
    index.add(codes, groups=groups)
    queries = {f: c[:20] for f, c in codes.items()}
    want = multi_field_knn(queries, codes, np.arange(3000), groups, {"normal": 1, "abnormal": 1}, 10, None, True)
    # Items added meanwhile are the complement of query 0..19's codes: too far to enter any top 10.
    far = {f: ~c[:20] for f, c in codes.items()}
    errors, stop = [], threading.Event()

    def search():
        try:
            while not stop.is_set():
                res = index.search(queries, 10, one_per_group=True)
                np.testing.assert_array_equal(res.ids, want[1])
        except Exception as exc:  # surfaced below
            errors.append(exc)
            stop.set()

    def mutate():
        next_id = 10_000
        try:
            for _ in range(200):
                ids = np.arange(next_id, next_id + 20)
                index.add(far, ids=ids, groups=np.full(20, 99))
                index.remove(ids)
                next_id += 20
        except Exception as exc:
            errors.append(exc)
        finally:
            stop.set()

    threads = [threading.Thread(target=search) for _ in range(3)] + [threading.Thread(target=mutate)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(index) == 3000


@pytest.mark.parametrize("nq, threads", [(1, 2), (3, 2), (70, 2), (70, 1)])
def test_batched_scan_over_many_chunks_matches_oracle(simd, nq, threads):
    # 9,000 items span several 1,024-item chunks and a partial last block; 70 queries take the
    # batched path (blocks of queries per chunk), 1 and 3 the path that splits the items.
    rng = np.random.default_rng(21)
    codes, groups = _data(rng, 9001, pool=60, ngroups=40)
    ids = rng.permutation(50_000)[:9001].astype(np.int64)
    index = hashindex.MultiFieldIndex(FIELDS)
    index.add(codes, ids=ids, groups=groups)
    queries, _ = _data(rng, nq, pool=60)
    for weights, opg in [({"normal": 1.0, "abnormal": 1.0}, False), ({"normal": 0.3, "abnormal": 2.0}, True),
                         ({"abnormal": 1.0}, False)]:
        q = {f: queries[f] for f in weights}
        _check(index, codes, ids, groups, q, weights, 15, rng.integers(-1, 40, nq), opg, threads=threads)
