"""hashindex.compat.faiss against faiss itself: the same calls, the same answers and result types
(up to the documented differences: tie order, exact MultiHash)."""
import numpy as np
import pytest
from oracle import hamming_matrix, random_codes

faiss = pytest.importorskip("faiss", reason="the side-by-side tests need faiss-cpu: pip install 'hashindex[bench]'")

import hashindex
from hashindex.compat import faiss as hx


def _same_up_to_ties(ours, theirs, queries, codes_by_id):
    (d1, i1), (d2, i2) = ours, theirs
    assert d1.dtype == d2.dtype and i1.dtype == i2.dtype and d1.shape == d2.shape
    np.testing.assert_array_equal(d1, d2)
    for q in range(len(d1)):
        real = i1[q] >= 0
        np.testing.assert_array_equal(real, i2[q] >= 0)
        got = hamming_matrix(queries[q:q + 1], codes_by_id(i1[q][real]))[0]
        np.testing.assert_array_equal(got, d1[q][real])  # our ids are at the distances faiss reports
        order = np.lexsort((i1[q][real], d1[q][real]))
        np.testing.assert_array_equal(order, np.arange(real.sum()))  # ties by id


@pytest.mark.parametrize("pool", [None, 5])
def test_flat_search_range_remove_like_faiss(pool):
    rng = np.random.default_rng(0)
    codes = random_codes(rng, 3000, 16, pool=pool)
    queries = random_codes(rng, 40, 16, pool=pool)
    ours, theirs = hx.IndexBinaryFlat(128), faiss.IndexBinaryFlat(128)
    for ix in (ours, theirs):
        ix.add(codes[:1000])
        ix.add(codes[1000:])
    assert ours.ntotal == theirs.ntotal and ours.code_size == theirs.code_size and ours.d == theirs.d
    _same_up_to_ties(ours.search(queries, 7), theirs.search(queries, 7), queries, lambda i: codes[i])
    a, b = ours.range_search(queries, 60), theirs.range_search(queries, 60)
    assert [x.dtype for x in a] == [x.dtype for x in b]
    np.testing.assert_array_equal(a[0], b[0])
    for q in range(len(queries)):
        s = slice(int(a[0][q]), int(a[0][q + 1]))
        assert sorted(zip(a[1][s], a[2][s])) == sorted(zip(b[1][s], b[2][s]))
    removed = np.array([0, 5, 2999, 1234])
    assert ours.remove_ids(removed) == theirs.remove_ids(removed) == 4
    assert ours.remove_ids(np.array([10**6])) == theirs.remove_ids(np.array([10**6])) == 0
    left = np.delete(codes, removed, axis=0)  # ids renumbered, as in faiss
    _same_up_to_ties(ours.search(queries, 5), theirs.search(queries, 5), queries, lambda i: left[i])
    np.testing.assert_array_equal(ours.reconstruct(7), theirs.reconstruct(7))
    np.testing.assert_array_equal(ours.reconstruct_n(3, 4), theirs.reconstruct_n(3, 4))
    d, i = ours.search(queries[:2], 5000)
    assert (i[:, -1] == -1).all() and (d[:, -1] == 2**31 - 1).all()
    assert ours.range_search(queries, 0)[0].tolist() == theirs.range_search(queries, 0)[0].tolist()


def test_idmap_and_selectors_like_faiss():
    rng = np.random.default_rng(1)
    codes = random_codes(rng, 2000, 8, pool=40)
    ids = rng.permutation(10**6)[:2000].astype(np.int64)
    by_id = dict(zip(ids.tolist(), codes))
    queries = random_codes(rng, 20, 8, pool=40)
    ours, theirs = hx.IndexBinaryIDMap(hx.IndexBinaryFlat(64)), faiss.IndexBinaryIDMap(faiss.IndexBinaryFlat(64))
    for ix in (ours, theirs):
        ix.add_with_ids(codes, ids)
    with pytest.raises(RuntimeError):
        ours.add(codes)
    lookup = lambda i: np.array([by_id[int(x)] for x in i]).reshape(-1, 8)  # noqa: E731
    bitmap = np.packbits(rng.random(10**6) < 0.3, bitorder="little")
    for make in (lambda m: m.IDSelectorBatch(ids[::3]), lambda m: m.IDSelectorRange(0, 500_000),
                 lambda m: m.IDSelectorNot(m.IDSelectorRange(0, 500_000)), lambda m: m.IDSelectorBitmap(bitmap),
                 lambda m: m.IDSelectorArray(ids[:50])):
        _same_up_to_ties(ours.search(queries, 9, params=hx.SearchParameters(sel=make(hx))),
                         theirs.search(queries, 9, params=faiss.SearchParameters(sel=make(faiss))), queries, lookup)
    gone = np.concatenate([ids[:100], [10**7]])
    assert ours.remove_ids(gone) == theirs.remove_ids(gone) == 100
    assert ours.remove_ids(hx.IDSelectorRange(0, 10**5)) == theirs.remove_ids(faiss.IDSelectorRange(0, 10**5))
    assert ours.ntotal == theirs.ntotal
    _same_up_to_ties(ours.search(queries, 9), theirs.search(queries, 9), queries, lookup)
    D = np.empty((20, 9), np.int32)
    I = np.empty((20, 9), np.int64)  # noqa: E741
    ours.search(queries, 9, D=D, I=I)
    np.testing.assert_array_equal(I, ours.search(queries, 9)[1])


def test_multihash_is_exact_and_files_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    codes = random_codes(rng, 5000, 8, pool=300)
    queries = random_codes(rng, 30, 8, pool=300)
    ours, exact = hx.IndexBinaryMultiHash(64, 4, 16), faiss.IndexBinaryFlat(64)
    ours.add(codes)
    exact.add(codes)
    _same_up_to_ties(ours.search(queries, 10), exact.search(queries, 10), queries, lambda i: codes[i])
    for index in (ours, hx.IndexBinaryFlat(64), hx.IndexBinaryIDMap2(hx.IndexBinaryFlat(64))):
        if isinstance(index, hx.IndexBinaryIDMap):
            index.add_with_ids(codes, np.arange(10, 5010))
        elif not index.ntotal:
            index.add(codes)
        hx.write_index_binary(index, tmp_path / "x.hx")
        back = hx.read_index_binary(tmp_path / "x.hx")
        assert type(back).__name__ in (type(index).__name__, "IndexBinaryIDMap") and back.ntotal == 5000
        np.testing.assert_array_equal(back.search(queries, 4)[1], index.search(queries, 4)[1])
    faiss.write_index_binary(exact, str(tmp_path / "faiss.bin"))
    with pytest.raises(hashindex.FormatError):
        hx.read_index_binary(tmp_path / "faiss.bin")


def test_bad_input_names_the_argument():
    index = hx.IndexBinaryFlat(64)
    with pytest.raises(ValueError, match="x"):
        index.add(np.zeros((2, 7), np.uint8))
    with pytest.raises(ValueError, match="nhash"):
        hx.IndexBinaryMultiHash(64, 8, 16)
    with pytest.raises(TypeError, match="sel"):
        hx.SearchParameters(sel=[1, 2])
    with pytest.raises(ValueError, match="empty"):
        wrapped = hx.IndexBinaryFlat(64)
        wrapped.add(np.zeros((1, 8), np.uint8))
        hx.IndexBinaryIDMap(wrapped)


@pytest.mark.parametrize("description", ["BFlat", "IDMap,BFlat", "IDMap2,BFlat", "BHash16", "BHash2x16"])
def test_factory_serialize_and_downcast_like_faiss(description):
    rng = np.random.default_rng(4)
    codes, queries = random_codes(rng, 1500, 8, pool=60), random_codes(rng, 15, 8, pool=60)
    ours, theirs = hx.index_binary_factory(64, description), faiss.index_binary_factory(64, description)
    assert type(ours).__name__ == type(faiss.downcast_IndexBinary(theirs)).__name__
    assert hx.downcast_IndexBinary(ours) is ours
    ids = np.arange(5000, 6500, dtype=np.int64)
    for ix in (ours, theirs):
        ix.add_with_ids(codes, ids) if "IDMap" in description else ix.add(codes)
    by_id = dict(zip((ids if "IDMap" in description else np.arange(1500)).tolist(), codes))
    lookup = lambda i: np.array([by_id[int(x)] for x in i]).reshape(-1, 8)  # noqa: E731
    if "Hash" in description:  # ours exact, faiss's approximate: ours answer as the flat index does
        exact = faiss.IndexBinaryFlat(64)
        exact.add(codes)
        np.testing.assert_array_equal(ours.search(queries, 6)[0], exact.search(queries, 6)[0])
    else:
        _same_up_to_ties(ours.search(queries, 6), theirs.search(queries, 6), queries, lookup)
    blob = hx.serialize_index_binary(ours)
    assert blob.dtype == np.uint8 and blob.ndim == 1
    again = hx.deserialize_index_binary(blob)
    for a, b in zip(again.search(queries, 6), ours.search(queries, 6)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(hashindex.FormatError):
        hx.deserialize_index_binary(faiss.serialize_index_binary(faiss.IndexBinaryFlat(64)))


def test_factory_refuses_what_it_does_not_build():
    for description in ("IDMap,BIVF8", "Flat", "Shards,BFlat", "BIVF8_BFlat", "BFlat,IDMap3"):
        with pytest.raises(ValueError, match="description"):
            hx.index_binary_factory(64, description)
    with pytest.raises(TypeError, match="description"):
        hx.index_binary_factory(64, 3)


@pytest.mark.parametrize("n", [1001, 7])
def test_shards_and_replicas_like_faiss(n):
    rng = np.random.default_rng(5)
    codes, queries = random_codes(rng, n, 16, pool=30), random_codes(rng, 12, 16, pool=30)
    ours, theirs = hx.IndexBinaryShards(128), faiss.IndexBinaryShards(128)
    shards = []
    for m, ix in ((hx, ours), (faiss, theirs)):
        for _ in range(3):
            shards.append(m.IndexBinaryFlat(128))
            ix.add_shard(shards[-1])
        ix.add(codes)
        with pytest.raises(RuntimeError):
            ix.add(codes[:2])  # successive ids: one add only, in both
    assert ours.ntotal == theirs.ntotal == n and ours.count() == theirs.count() == 3
    assert [ours.at(i).ntotal for i in range(3)] == [theirs.at(i).ntotal for i in range(3)]
    _same_up_to_ties(ours.search(queries, 8), theirs.search(queries, 8), queries, lambda i: codes[i])
    flat = faiss.IndexBinaryFlat(128)  # faiss's shards have no range search; ours answer as one index
    flat.add(codes)
    lims, d, i = ours.range_search(queries, 50)
    rl, rd, ri = flat.range_search(queries, 50)
    np.testing.assert_array_equal(lims, rl)
    for q in range(len(queries)):
        s = slice(int(lims[q]), int(lims[q + 1]))
        assert sorted(zip(d[s], i[s])) == sorted(zip(rd[s], ri[s]))
    # A selector names the shards' global ids here; faiss hands it to each shard, which reads its own
    # local ids (a documented difference): ours answer as one flat index with the selector does.
    sel = np.arange(0, n, 3, dtype=np.int64)
    _same_up_to_ties(ours.search(queries, 5, params=hx.SearchParameters(sel=hx.IDSelectorBatch(sel))),
                     flat.search(queries, 5, params=faiss.SearchParameters(sel=faiss.IDSelectorBatch(sel))),
                     queries, lambda i: codes[i])
    reps, theirs_r = hx.IndexBinaryReplicas(128), faiss.IndexBinaryReplicas(128)
    kept = []  # faiss keeps raw pointers: its sub-indexes must outlive it
    for m, ix in ((hx, reps), (faiss, theirs_r)):
        for _ in range(2):
            kept.append(m.IndexBinaryFlat(128))
            ix.add_replica(kept[-1])
        ix.add(codes)
    with pytest.raises(ValueError, match="already"):
        reps.add_replica(reps.at(0))
    assert reps.ntotal == theirs_r.ntotal == n
    _same_up_to_ties(reps.search(queries, 8), theirs_r.search(queries, 8), queries, lambda i: codes[i])


def test_shards_of_idmaps_keep_their_ids():
    rng = np.random.default_rng(6)
    codes, queries = random_codes(rng, 300, 8), random_codes(rng, 5, 8)
    ids = rng.permutation(10**6)[:300].astype(np.int64)
    ours, theirs = hx.IndexBinaryShards(64, False, False), faiss.IndexBinaryShards(64, False, False)
    kept = []
    for m, ix in ((hx, ours), (faiss, theirs)):
        for _ in range(2):
            kept.append(m.IndexBinaryFlat(64))
            kept.append(m.IndexBinaryIDMap(kept[-1]))
            ix.add_shard(kept[-1])
        ix.add_with_ids(codes, ids)
    by_id = dict(zip(ids.tolist(), codes))
    _same_up_to_ties(ours.search(queries, 4), theirs.search(queries, 4), queries,
                     lambda i: np.array([by_id[int(x)] for x in i]).reshape(-1, 8))


def test_assign_metric_threads_and_sized_selectors():
    rng = np.random.default_rng(7)
    codes, queries = random_codes(rng, 500, 8), random_codes(rng, 9, 8)
    ours, theirs = hx.IndexBinaryFlat(64), faiss.IndexBinaryFlat(64)
    for ix in (ours, theirs):
        ix.add(codes)
    assert ours.metric_type == theirs.metric_type == faiss.METRIC_L2 == hx.METRIC_L2
    labels = ours.assign(queries, 3)
    np.testing.assert_array_equal(hamming_matrix(queries, codes)[np.arange(9)[:, None], labels],
                                  theirs.search(queries, 3)[0])
    hx.omp_set_num_threads(1)
    try:
        assert hx.omp_get_max_threads() == 1
        _same_up_to_ties(ours.search(queries, 4), theirs.search(queries, 4), queries, lambda i: codes[i])
    finally:
        hx._threads[0] = None
    chosen = np.arange(100, 200, dtype=np.int64)
    # faiss honours n in the pointer form; ours in the array form, as the same selection
    want = theirs.search(queries, 4, params=faiss.SearchParameters(
        sel=faiss.IDSelectorBatch(10, faiss.swig_ptr(chosen))))
    got = ours.search(queries, 4, params=hx.SearchParameters(sel=hx.IDSelectorBatch(10, chosen)))
    _same_up_to_ties(got, want, queries, lambda i: codes[i])
    assert set(got[1].ravel()) <= set(range(100, 110))
    bitmap = np.packbits(np.ones(500, bool), bitorder="little")
    got = ours.search(queries, 4, params=hx.SearchParameters(sel=hx.IDSelectorBitmap(40, bitmap)))
    assert (got[1] < 40).all()
    with pytest.raises(ValueError, match="n"):
        hx.IDSelectorBatch(11, np.arange(10))
    with pytest.raises(ValueError, match="n"):
        hx.IDSelectorBitmap(81, np.zeros(10, np.uint8))


def test_other_faiss_names_come_from_faiss(monkeypatch):
    assert hx.IndexFlatL2 is faiss.IndexFlatL2 and hx.normalize_L2 is faiss.normalize_L2
    monkeypatch.setitem(__import__("sys").modules, "faiss", None)  # as if faiss-cpu were not installed
    with pytest.raises(ImportError, match="IndexFlatL2.*pip install faiss-cpu"):
        hx.IndexFlatL2  # noqa: B018


@pytest.mark.parametrize("d", [64, 200])
def test_binary_from_float_is_faiss_and_agrees_with_our_flat(d):
    """IndexBinaryFromFloat (a binary index over a float one) needs faiss's float indexes: the name
    resolves to faiss's class, and a script mixing it with our binary indexes gets one set of answers."""
    assert hx.IndexBinaryFromFloat is faiss.IndexBinaryFromFloat
    codes = random_codes(np.random.default_rng(d), 500, d // 8, pool=300)  # ties and duplicates
    queries = codes[:20] ^ np.uint8(1)
    from_float = hx.IndexBinaryFromFloat(hx.IndexFlatL2(d))
    from_float.add(codes)
    flat = hx.IndexBinaryFlat(d)
    flat.add(codes)
    (d1, i1), (d2, i2) = from_float.search(queries, 7), flat.search(queries, 7)
    np.testing.assert_array_equal(d1, d2)
    for q in range(len(queries)):  # each one's ids at the distances both report
        for ids in (i1[q], i2[q]):
            np.testing.assert_array_equal(hamming_matrix(queries[q:q + 1], codes[ids])[0], d2[q])


def test_ivf_like_faiss_on_the_same_centroids(tmp_path):
    rng = np.random.default_rng(8)
    centres = rng.integers(0, 256, (60, 16), dtype=np.uint8)
    codes = centres[rng.integers(0, 60, 4000)] ^ (rng.random((4000, 16)) < 0.03).astype(np.uint8)
    queries = centres[rng.integers(0, 60, 30)] ^ (rng.random((30, 16)) < 0.03).astype(np.uint8)
    trainer = hx.IndexBinaryIVF(hx.IndexBinaryFlat(128), 128, 32)
    trainer.train(codes[:2000])
    assert trainer.is_trained and trainer.quantizer.ntotal == 32
    ours_q, theirs_q = hx.IndexBinaryFlat(128), faiss.IndexBinaryFlat(128)
    for q in (ours_q, theirs_q):
        q.add(trainer.quantizer.reconstruct_n(0, 32))  # the same centroids in both quantizers
    ours, theirs = hx.IndexBinaryIVF(ours_q, 128, 32), faiss.IndexBinaryIVF(theirs_q, 128, 32)
    theirs.is_trained = True
    for ix in (ours, theirs):
        ix.add(codes)
    for nprobe in (1, 3, 32):
        ours.nprobe = theirs.nprobe = nprobe
        _same_up_to_ties(ours.search(queries, 6), theirs.search(queries, 6), queries, lambda i: codes[i])
    _same_up_to_ties(ours.search(queries, 6, params=hx.SearchParametersIVF(nprobe=2)),
                     theirs.search(queries, 6, params=faiss.SearchParametersIVF(nprobe=2)), queries, lambda i: codes[i])
    # faiss's binary IVF refuses selectors; ours apply them in the lists (all of them here: exact)
    sel = np.arange(0, 4000, 5, dtype=np.int64)
    flat = faiss.IndexBinaryFlat(128)
    flat.add(codes)
    _same_up_to_ties(ours.search(queries, 6, params=hx.SearchParametersIVF(nprobe=32, sel=hx.IDSelectorBatch(sel))),
                     flat.search(queries, 6, params=faiss.SearchParameters(sel=faiss.IDSelectorBatch(sel))),
                     queries, lambda i: codes[i])
    assert ours.remove_ids(np.arange(100)) == theirs.remove_ids(np.arange(100)) == 100
    assert ours.ntotal == theirs.ntotal
    path = tmp_path / "ivf.hx"
    hx.write_index_binary(ours, str(path))
    again = hx.read_index_binary(str(path))
    assert type(again).__name__ == "IndexBinaryIVF" and again.quantizer.ntotal == 32
    again.nprobe = ours.nprobe
    for a, b in zip(again.search(queries, 6), ours.search(queries, 6)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(RuntimeError, match="not trained"):
        hx.IndexBinaryIVF(hx.IndexBinaryFlat(128), 128, 32).add(codes)
    built = hx.index_binary_factory(128, "BIVF16")
    built.train(codes)
    built.add(codes)
    built.nprobe = 16  # every list: exact
    exact = faiss.IndexBinaryFlat(128)
    exact.add(codes)
    np.testing.assert_array_equal(built.search(queries, 5)[0], exact.search(queries, 5)[0])


def test_ivf_over_a_float_quantizer_probes_what_it_chooses():
    """A quantizer that cannot give its centroids back (faiss's IndexBinaryFromFloat over a float HNSW)
    places codes and picks the lists by its own search, as faiss does: both indexes on one quantizer
    give the same answers."""
    rng = np.random.default_rng(9)
    centres = rng.integers(0, 256, (40, 16), dtype=np.uint8)
    codes = centres[rng.integers(0, 40, 3000)] ^ (rng.random((3000, 16)) < 0.03).astype(np.uint8)
    queries = codes[:25] ^ np.uint8(4)
    trainer = hx.IndexBinaryIVF(hx.IndexBinaryFlat(128), 128, 24)
    trainer.train(codes[:1500])
    floats = ((trainer.quantizer.reconstruct_n(0, 24)[:, :, None] >> np.arange(8)) & 1).reshape(24, 128)
    hnsw = faiss.IndexHNSWFlat(128, 8)
    hnsw.add((2.0 * floats - 1).astype(np.float32))
    quantizer = faiss.IndexBinaryFromFloat(hnsw)
    ours, theirs = hx.IndexBinaryIVF(quantizer, 128, 24), faiss.IndexBinaryIVF(quantizer, 128, 24)
    assert ours.is_trained and theirs.is_trained
    for ix in (ours, theirs):
        ix.add(codes)
    assert [ours.invlists.list_size(n) for n in range(24)] == [theirs.invlists.list_size(n) for n in range(24)]
    for nprobe in (1, 4, 24):
        ours.nprobe = theirs.nprobe = nprobe
        _same_up_to_ties(ours.search(queries, 8), theirs.search(queries, 8), queries, lambda i: codes[i])
    lims, d, i = ours.range_search(queries, 20)
    want_lims, want_d, want_i = theirs.range_search(queries, 20)
    np.testing.assert_array_equal(lims, want_lims)
    for q in range(len(queries)):
        a, b = slice(lims[q], lims[q + 1]), slice(want_lims[q], want_lims[q + 1])
        assert sorted(zip(d[a], i[a])) == sorted(zip(want_d[b], want_i[b]))
    with pytest.raises(ValueError, match="cannot give its centroids back"):
        hx.serialize_index_binary(ours)


def test_ivf_stats_count_like_faiss():
    """cvar.indexIVF_stats counts our IVF searches as faiss's counts its own: queries, lists probed,
    codes compared (the same lists on the same centroids), and resets."""
    rng = np.random.default_rng(11)
    codes = random_codes(rng, 2000, 16, pool=400)
    queries = codes[:15] ^ np.uint8(2)
    ours = hx.IndexBinaryIVF(hx.IndexBinaryFlat(128), 128, 20)
    ours.train(codes)
    quantizer = faiss.IndexBinaryFlat(128)
    quantizer.add(ours.quantizer.reconstruct_n(0, 20))
    theirs = faiss.IndexBinaryIVF(quantizer, 128, 20)
    for ix in (ours, theirs):
        ix.add(codes)
        ix.nprobe = 3
    for mine, stats in ((ours, hx.cvar.indexIVF_stats), (theirs, faiss.cvar.indexIVF_stats)):
        stats.reset()
        mine.search(queries, 5)
        mine.search(queries[:4], 5)
    a, b = hx.cvar.indexIVF_stats, faiss.cvar.indexIVF_stats
    assert (a.nq, a.nlist, a.ndis) == (b.nq, b.nlist, b.ndis) == (19, 57, a.ndis) and a.ndis > 0
    for q in range(len(queries)):  # max_codes: the same codes compared, the same answers
        for mine, stats, params in ((ours, a, hx.SearchParametersIVF(nprobe=4, max_codes=130)),
                                    (theirs, b, faiss.SearchParametersIVF(nprobe=4, max_codes=130))):
            stats.reset()
            mine.search(queries[q:q + 1], 5, params=params)
        assert a.ndis == b.ndis <= 130 and a.nlist == b.nlist
    # max_codes: as many codes as faiss compares, but which codes of a list differs: faiss takes the
    # first added, ours the first in stored order (by distance to the centroid), as IVFIndex does.
    ours.max_codes = theirs.max_codes = 60
    (d1, i1), (_, i2) = ours.search(queries, 5), theirs.search(queries, 5)
    np.testing.assert_array_equal(i1 >= 0, i2 >= 0)
    direct = ours._index.search(queries, 5, nprobe=3, max_codes=60)
    np.testing.assert_array_equal(d1, direct.distances)
    np.testing.assert_array_equal(i1, direct.ids)
    assert a.search_time > 0 and isinstance(hx.cvar.indexIVF_stats, hx.IndexIVFStats)
    a.reset()
    assert (a.nq, a.ndis) == (0, 0)
    assert hx.cvar.indexIVF_stats is a  # one object, as faiss's global


def test_ivf_lists_chosen_by_the_caller():
    """IVFIndex.add(lists=) and search(lists=) (faiss's add_core and search_preassigned): an untrained
    index takes codes where it is told, a search probes exactly the lists named (-1: none, a list
    named twice probed once), and bad lists name the argument."""
    rng = np.random.default_rng(10)
    codes = random_codes(rng, 600, 16, pool=100)
    ids = rng.permutation(10**5)[:600].astype(np.int64)
    where = rng.integers(0, 9, 600)
    ivf = hashindex.IVFIndex(128, 9)
    ivf.add(codes, ids, lists=where)
    np.testing.assert_array_equal(ivf.list_sizes(), np.bincount(where, minlength=9))
    queries = random_codes(rng, 12, 16, pool=100)
    lists = np.stack([rng.permutation(9)[:4] for _ in range(12)])
    lists[0, 1], lists[1] = -1, [2, 2, -1, 5]
    got = ivf.search(queries, 7, lists=lists)
    d = hamming_matrix(queries, codes)
    for q in range(12):
        keep = np.isin(where, lists[q][lists[q] >= 0])
        best = np.lexsort((ids[keep], d[q][keep]))[:7]
        np.testing.assert_array_equal(got.ids[q, :len(best)], ids[keep][best])
        np.testing.assert_array_equal(got.distances[q, :len(best)], d[q][keep][best])
    assert ivf.last_search_stats["lists_probed"] == (lists >= 0).sum() - 1  # list 2 twice for query 1
    with pytest.raises(ValueError, match="lists: expected list numbers in \\[-1, nlist = 9\\)"):
        ivf.search(queries, 3, lists=np.full((12, 2), 9))
    with pytest.raises(ValueError, match="lists: expected shape"):
        ivf.search(queries, 3, lists=lists[:5])
    with pytest.raises(ValueError, match="nprobe"):
        ivf.search(queries, 3, lists=lists, nprobe=2)
    with pytest.raises(TypeError, match="lists"):
        ivf.search(queries, 3, lists=lists.astype(float))
    with pytest.raises(ValueError, match="\\[0, nlist"):
        ivf.add(codes[:2], lists=np.array([-1, 0]))
    assert len(ivf) == 600  # nothing added by the refused call
    with pytest.raises(ValueError, match="not trained"):
        ivf.search(queries, 3)  # without lists it needs centroids


def test_faiss_scripts_ivf_settings_files_and_graph_kinds(tmp_path):
    """What faiss's own binary tests do to an IVF index and its neighbours, through the compat import:
    clustering settings, list sizes, direct-map calls, nprobe kept by the file, replicas built
    without d, the wrapper after the kind, and the graph kinds that are faiss's own (their files too)."""
    rng = np.random.default_rng(11)
    xt, xb, xq = (random_codes(rng, n, 4) for n in (300, 1500, 50))
    flat = hx.IndexBinaryFlat(32)
    flat.add(xb)
    ivf = hx.IndexBinaryIVF(hx.IndexBinaryFlat(32), 32, 8)
    ivf.cp.min_points_per_centroid = 5  # accepted
    ivf.train(xt)
    again = hx.IndexBinaryIVF(hx.IndexBinaryFlat(32), 32, 8)
    again.train(xt)
    np.testing.assert_array_equal(ivf._index.centroids, again._index.centroids)  # cp.seed: the same
    other = hx.IndexBinaryIVF(hx.IndexBinaryFlat(32), 32, 8)
    other.cp.seed = 7
    other.train(xt)
    assert not np.array_equal(ivf._index.centroids, other._index.centroids)
    ivf.add(xb)
    ivf.set_direct_map_type(faiss.DirectMap.Array)
    np.testing.assert_array_equal(ivf.reconstruct(13), xb[13])
    assert ivf.invlists.nlist == 8 and sum(ivf.invlists.list_size(i) for i in range(8)) == len(xb)
    with pytest.raises(ValueError, match="list_no"):
        ivf.invlists.list_size(8)
    ivf.nprobe = 3
    hx.write_index_binary(ivf, tmp_path / "ivf.hx")
    loaded = hx.read_index_binary(tmp_path / "ivf.hx")
    assert loaded.nprobe == 3
    for a, b in zip(loaded.search(xq, 5), ivf.search(xq, 5)):
        np.testing.assert_array_equal(a, b)

    replicas = hx.IndexBinaryReplicas()  # d from the first replica, as faiss
    for _ in range(3):
        sub = hx.IndexBinaryFlat(32)
        sub.add(xb)
        replicas.addIndex(sub)
    assert replicas.d == 32 and replicas.code_size == 4
    for a, b in zip(replicas.search(xq, 5), flat.search(xq, 5)):
        np.testing.assert_array_equal(a, b)
    assert isinstance(hx.index_binary_factory(16, "BFlat,IDMap2"), hx.IndexBinaryIDMap2)

    graph = hx.index_binary_factory(32, "BHNSW16")
    assert isinstance(graph, faiss.IndexBinaryHNSW)
    graph.add(xb)
    hx.write_index_binary(graph, tmp_path / "hnsw.faissindex")
    read = hx.read_index_binary(tmp_path / "hnsw.faissindex")
    assert isinstance(read, faiss.IndexBinaryHNSW)
    for a, b in zip(read.search(xq, 5), graph.search(xq, 5)):
        np.testing.assert_array_equal(a, b)
    assert hx.deserialize_index_binary(hx.serialize_index_binary(flat)).ntotal == len(xb)
    copied = hx.deserialize_index_binary(hx.serialize_index_binary(graph))  # faiss's own bytes, both ways
    assert isinstance(copied, faiss.IndexBinaryHNSW) and copied.ntotal == len(xb)
    faiss.write_index_binary(faiss.IndexBinaryFlat(32), str(tmp_path / "theirs.faissindex"))
    with pytest.raises(hashindex.FormatError):  # faiss's own file of a kind built here: not read as ours
        hx.read_index_binary(tmp_path / "theirs.faissindex")

    on_graph = hx.IndexBinaryIVF(faiss.IndexBinaryHNSW(32, 16), 32, 8)  # a quantizer of faiss itself
    on_graph.train(xt)
    assert on_graph.quantizer.ntotal == 8
    on_graph.add(xb)
    on_graph.nprobe = 8
    np.testing.assert_array_equal(on_graph.search(xq, 5)[0], flat.search(xq, 5)[0])  # every list: exact
