"""IVFIndex: exact at nprobe = nlist (against FlatIndex and the numpy oracle), the same recall as faiss's
IndexBinaryIVF on the same centroids, filters inside the scan, and the index's lifecycle."""
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracle import hamming_matrix, random_codes

import hashindex
from hashindex.bench import make_codes, recall_at_k


def clustered(rng, n, nbits, centres):
    return make_codes(rng, n, nbits, "clustered", centres)


@pytest.fixture
def trained():
    rng = np.random.default_rng(0)
    centres = rng.integers(0, 256, (40, 16), dtype=np.uint8)
    xb, xq = clustered(rng, 3001, 128, centres), clustered(rng, 25, 128, centres)
    ivf = hashindex.IVFIndex(128, 16)
    ivf.train(xb[:1000])
    return ivf, xb, xq


def test_exact_when_every_list_is_probed(trained, simd):
    ivf, xb, xq = trained
    ids = np.random.default_rng(1).permutation(10**6)[:len(xb)].astype(np.int64)
    ivf.add(xb, ids)
    flat = hashindex.FlatIndex(128)
    flat.add(xb, ids)
    for k in (1, 7, 5000):  # k > n pads
        got, want = ivf.search(xq, k, nprobe=16), flat.search(xq, k)
        np.testing.assert_array_equal(got.distances, want.distances)
        np.testing.assert_array_equal(got.ids, want.ids)  # ties by id too
    for q in range(4):  # one query: its 15 other lists cut between threads by what their bounds leave
        for k in (7, 5000):  # (k = 5000: every list read, two parts; k = 7: one)
            got, want = ivf.search(xq[q], k, nprobe=16, threads=2), flat.search(xq[q], k)
            np.testing.assert_array_equal(got.distances, want.distances)
            np.testing.assert_array_equal(got.ids, want.ids)
    r, w = ivf.range_search(xq, 40, nprobe=16), flat.range_search(xq, 40)
    np.testing.assert_array_equal(r.lims, w.lims)
    np.testing.assert_array_equal(r.ids, w.ids)
    st = ivf.last_search_stats
    assert st["queries"] == 25 and st["lists_probed"] == 25 * 16
    # radius 40 of 128 bits: some lists' bounds prove them empty of hits, and they are not compared
    assert st["codes_compared"] + st["codes_skipped"] == 25 * len(xb) and st["lists_skipped"] > 0


def test_probing_fewer_lists_finds_what_those_lists_hold(trained):
    ivf, xb, xq = trained
    ivf.add(xb)
    lists = ivf.assign(xb)
    centroids = ivf.centroids
    got = ivf.search(xq, 5, nprobe=3)
    d = hamming_matrix(xq, centroids)
    for q in range(len(xq)):  # the oracle: an exact search of the 3 nearest lists (ties by list id)
        probed = np.lexsort((np.arange(16), d[q]))[:3]
        members = np.flatnonzero(np.isin(lists, probed))
        dist = hamming_matrix(xq[q:q + 1], xb[members])[0]
        order = np.lexsort((members, dist))[:5]
        np.testing.assert_array_equal(got.ids[q], members[order])
        np.testing.assert_array_equal(got.distances[q], dist[order])
    assert ivf.list_sizes().sum() == len(xb) and (np.bincount(lists, minlength=16) == ivf.list_sizes()).all()


def test_batches_past_a_round_split_over_threads_equal_the_oracle(trained, simd):
    """More queries than one round (1024), on 1 to 3 threads, top-k, range and filters: each query's
    nearest list scanned first, its other lists per thread, merged: the exact answer over the probed
    lists, ties by id."""
    ivf, xb, _ = trained
    rng = np.random.default_rng(3)
    ids = rng.permutation(10**6)[:len(xb)].astype(np.int64)
    ivf.add(xb, ids)
    xq = clustered(rng, 1100, 128, np.unique(xb[::50], axis=0))
    d = hamming_matrix(xq, xb)
    lists = ivf.assign(xb)
    order = np.lexsort((np.broadcast_to(np.arange(16), (len(xq), 16)), hamming_matrix(xq, ivf.centroids)))
    allowed = ids[rng.random(len(ids)) < 0.6]
    for threads, nprobe, k in ((1, 5, 7), (2, 3, 40), (3, 16, 1)):
        probed = np.stack([np.isin(lists, order[q, :nprobe]) for q in range(len(xq))])
        got = ivf.search(xq, k, nprobe=nprobe, threads=threads)
        sub = ivf.search(xq, k, nprobe=nprobe, threads=threads, allow=allowed)
        ranged = ivf.range_search(xq, 30, nprobe=nprobe, threads=threads)
        for q in range(0, len(xq), 11):
            for result, keep in ((got, probed[q]), (sub, probed[q] & np.isin(ids, allowed))):
                best = np.lexsort((ids[keep], d[q][keep]))[:k]
                np.testing.assert_array_equal(result.ids[q, :len(best)], ids[keep][best])
                np.testing.assert_array_equal(result.distances[q, :len(best)], d[q][keep][best])
            within = np.flatnonzero(probed[q] & (d[q] <= 30))
            lo, hi = ranged.lims[q], ranged.lims[q + 1]
            assert sorted(zip(ranged.distances[lo:hi], ranged.ids[lo:hi])) == sorted(zip(d[q][within], ids[within]))


def test_max_codes_scans_lists_nearest_first_until_the_budget(trained):
    """max_codes (faiss's): a query scans its lists in probe order, each up to what is left of the
    budget (a list's codes in stored order: by distance to its centroid, ties in the order they
    were added), and probes none past it."""
    ivf, xb, xq = trained
    ivf.add(xb)
    lists, sizes = ivf.assign(xb), ivf.list_sizes()
    to_centroid = hamming_matrix(xb, ivf.centroids)
    order = np.lexsort((np.broadcast_to(np.arange(16), (len(xq), 16)), hamming_matrix(xq, ivf.centroids)))
    d = hamming_matrix(xq, xb)
    for max_codes in (1, 150, int(sizes.max()) + 7, 10**9):
        got = ivf.search(xq, 6, nprobe=5, max_codes=max_codes)
        compared = 0
        for q in range(len(xq)):
            left, scanned = max_codes, []
            for n in order[q, :5]:
                if left <= 0:
                    break
                members = np.flatnonzero(lists == n)
                members = members[np.argsort(to_centroid[members, n], kind="stable")][:left]
                scanned.append(members)
                left -= len(members)
            scanned = np.concatenate(scanned)
            compared += len(scanned)
            best = np.lexsort((scanned, d[q][scanned]))[:6]
            np.testing.assert_array_equal(got.ids[q, :len(best)], scanned[best])
            np.testing.assert_array_equal(got.distances[q, :len(best)], d[q][scanned][best])
        assert ivf.last_search_stats["codes_compared"] + ivf.last_search_stats["codes_skipped"] == compared
    ranged = ivf.range_search(xq, 128, nprobe=5, max_codes=40)
    assert (np.diff(ranged.lims) <= 40).all() and ivf.last_search_stats["codes_compared"] == 40 * len(xq)
    with pytest.raises(ValueError, match="max_codes"):
        ivf.search(xq, 3, max_codes=-1)


def test_filters_apply_inside_the_lists(trained):
    ivf, xb, xq = trained
    ivf.add(xb)
    allowed = np.arange(0, len(xb), 7)
    flat = hashindex.FlatIndex(128)
    flat.add(xb[allowed], allowed)
    got = ivf.search(xq, 6, nprobe=16, allow=allowed)
    np.testing.assert_array_equal(got.ids, flat.search(xq, 6).ids)
    denied = ivf.search(xq, 6, nprobe=16, deny=allowed)
    assert not np.isin(denied.ids, allowed).any()


def test_lifecycle_and_files(trained, tmp_path):
    ivf, xb, xq = trained
    ivf.add(xb[:2000])
    ivf.add(xb[2000:])  # default ids continue
    assert len(ivf) == len(xb) and ivf.next_id == len(xb) and 2999 in ivf
    np.testing.assert_array_equal(ivf.get(np.array([5, 2999])), xb[[5, 2999]])
    ivf.remove(np.arange(0, 3000, 2))
    assert len(ivf) == 1501 and 2 not in ivf
    with pytest.raises(KeyError):
        ivf.remove(np.array([2]))
    left = np.arange(1, 3000, 2)
    flat = hashindex.FlatIndex(128)
    flat.add(xb[left], left)
    flat.add(xb[3000:], np.array([3000]))
    np.testing.assert_array_equal(ivf.search(xq, 4, nprobe=16).ids, flat.search(xq, 4).ids)
    assert ivf.nprobe == 1
    for a, b in zip(ivf.search(xq, 4), ivf.search(xq, 4, nprobe=1)):  # no nprobe named: the index's
        np.testing.assert_array_equal(a, b)
    ivf.nprobe = 3
    path = tmp_path / "ivf.hx"
    ivf.save(path)
    again = hashindex.load(path)
    assert isinstance(again, hashindex.IVFIndex) and again.nlist == 16 and again.next_id == ivf.next_id
    assert again.nprobe == 3  # saved with it, as faiss saves its nprobe
    np.testing.assert_array_equal(again.centroids, ivf.centroids)
    for a, b in zip(again.search(xq, 4), ivf.search(xq, 4, nprobe=3)):
        np.testing.assert_array_equal(a, b)
    expected = ivf.range_search(xq, 40, nprobe=3)
    np.testing.assert_array_equal(again.range_search(xq, 40).ids, expected.ids)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    with pytest.raises(hashindex.FormatError):
        hashindex.loads(bytes(data))
    ivf.reset()
    assert len(ivf) == 0 and ivf.is_trained  # the centroids stay


def test_bad_input_and_untrained():
    ivf = hashindex.IVFIndex(64, 4)
    codes = random_codes(np.random.default_rng(2), 10, 8)
    with pytest.raises(ValueError, match="not trained"):
        ivf.add(codes)
    with pytest.raises(ValueError, match="not trained"):
        ivf.search(codes, 1)
    with pytest.raises(ValueError, match="at least nlist"):
        ivf.train(codes[:3])
    with pytest.raises(ValueError, match="nlist"):
        hashindex.IVFIndex(64, 0)
    ivf.train(codes)
    with pytest.raises(ValueError, match="nprobe"):
        ivf.search(codes, 1, nprobe=0)
    for bad in (0, -1, 1 << 25, 2.5):
        with pytest.raises((ValueError, TypeError), match="nprobe"):
            ivf.nprobe = bad
    assert ivf.nprobe == 1
    with pytest.raises(ValueError, match="centroids"):
        ivf.centroids = codes[:3]
    assert ivf.search(codes, 3, nprobe=2).ids.tolist() == [[-1, -1, -1]] * 10  # empty
    ivf.add(codes)
    with pytest.raises(ValueError, match="empty|holds codes"):
        ivf.train(codes)
    with pytest.raises(ValueError, match="already in the index"):
        ivf.add(codes[:1], np.array([3]))


def test_training_is_seeded_and_k_majority():
    rng = np.random.default_rng(3)
    centres = rng.integers(0, 256, (8, 8), dtype=np.uint8)
    xb = clustered(rng, 2000, 64, centres)
    a, b = hashindex.IVFIndex(64, 8), hashindex.IVFIndex(64, 8)
    a.train(xb, seed=5)
    b.train(xb, seed=5)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    # each centroid is (a fixed point of) the bitwise majority of its members
    lists = a.assign(xb)
    for c in range(8):
        members = np.unpackbits(xb[lists == c], axis=1)
        if len(members):
            majority = members.mean(0)
            bits = np.unpackbits(a.centroids[c])
            decided = majority != 0.5
            np.testing.assert_array_equal(bits[decided], (majority[decided] > 0.5).astype(np.uint8))


def test_recall_equals_faiss_on_the_same_centroids():
    faiss = pytest.importorskip("faiss", reason="the side-by-side test needs faiss-cpu: pip install 'hashindex[bench]'")
    rng = np.random.default_rng(4)
    centres = rng.integers(0, 256, (300, 32), dtype=np.uint8)
    xb, xq = clustered(rng, 20_000, 256, centres), rng.integers(0, 256, (100, 32), dtype=np.uint8)
    xq[:50] = clustered(rng, 50, 256, centres)
    ivf = hashindex.IVFIndex(256, 64)
    ivf.train(xb[:5000])
    ivf.add(xb)
    quantizer = faiss.IndexBinaryFlat(256)
    quantizer.add(ivf.centroids)
    ref = faiss.IndexBinaryIVF(quantizer, 256, 64)
    ref.is_trained = True
    ref.add(xb)
    exact = hashindex.FlatIndex(256)
    exact.add(xb)
    truth = exact.search(xq, 10).distances
    for nprobe in (1, 4, 16):
        ref.nprobe = nprobe
        ours = recall_at_k(ivf.search(xq, 10, nprobe=nprobe).distances, truth)
        theirs = recall_at_k(ref.search(xq, 10)[0], truth)
        assert abs(ours - theirs) <= 0.01, (nprobe, ours, theirs)


@given(nbytes=st.sampled_from([1, 3, 8, 17]), n=st.integers(1, 300), nlist=st.integers(1, 12), pool=st.sampled_from([None, 4]),
       k=st.integers(1, 40), removed=st.integers(0, 100), seed=st.integers(0, 2**16))
def test_every_list_probed_equals_the_oracle(nbytes, n, nlist, pool, k, removed, seed):
    """Random sizes, duplicated codes (ties), removals, k past n: probing every list is the exhaustive answer."""
    rng = np.random.default_rng(seed)
    xb = random_codes(rng, max(n, nlist), nbytes, pool=pool)
    xq = random_codes(rng, 5, nbytes, pool=pool)
    ids = rng.permutation(10**6)[:len(xb)].astype(np.int64)
    ivf = hashindex.IVFIndex(8 * nbytes, nlist)
    ivf.train(xb, iterations=3, seed=seed)
    ivf.add(xb, ids)
    gone = ids[:min(removed, len(ids))]
    ivf.remove(gone)  # moves members between blocks: their bounds only widen
    back = rng.permutation(len(gone))[:len(gone) // 2]
    ivf.add(xb[:len(gone)][back], gone[back] + 10**6)  # appended: the lists' bounds widen
    xb, ids = np.concatenate([xb, xb[:len(gone)][back]]), np.concatenate([ids, gone[back] + 10**6])
    keep = ~np.isin(ids, gone)
    d = hamming_matrix(xq, xb[keep])
    got = ivf.search(xq, k, nprobe=nlist)
    radius = int(rng.integers(0, 8 * nbytes + 1))
    ranged = ivf.range_search(xq, radius, nprobe=nlist)
    for q in range(len(xq)):
        order = np.lexsort((ids[keep], d[q]))[:k]
        m = len(order)
        np.testing.assert_array_equal(got.distances[q, :m], d[q][order])
        np.testing.assert_array_equal(got.ids[q, :m], ids[keep][order])
        assert (got.ids[q, m:] == -1).all()
        within = np.flatnonzero(d[q] <= radius)
        lo, hi = ranged.lims[q], ranged.lims[q + 1]
        assert sorted(zip(ranged.distances[lo:hi], ranged.ids[lo:hi])) == sorted(zip(d[q][within], ids[keep][within]))


def test_lists_and_blocks_the_bounds_rule_out_are_not_compared(trained, tmp_path):
    """Each list keeps how far its members lie from its centroid, per block of 8: lists and blocks
    that the triangle inequality puts past a query's k-th distance are skipped, with the same answers.
    The bounds travel in the file: checked against the codes when these are read, trusted in a
    mapping opened without verify, computed for a file that has none."""
    ivf, xb, xq = trained
    ivf.add(xb)
    ivf.remove(np.arange(0, len(xb), 3))
    ivf.add(xb[:500], np.arange(len(xb), len(xb) + 500))
    ivf.remove(np.array([len(xb) + 499]))  # the largest id gone: the next default id must survive a file
    want = ivf.search(xq, 5, nprobe=8)
    st = ivf.last_search_stats
    assert st["codes_skipped"] > st["codes_compared"] and st["lists_skipped"] > 0  # clustered: most ruled out
    order = np.lexsort((np.broadcast_to(np.arange(16), (len(xq), 16)), hamming_matrix(xq, ivf.centroids)))
    assert st["codes_compared"] + st["codes_skipped"] == ivf.list_sizes()[order[:, :8]].sum()
    path = tmp_path / "ivf.hx"
    ivf.save(path)

    def same(index):
        got = index.search(xq, 5, nprobe=8)
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.distances, want.distances)

    for index in (hashindex.load(path), hashindex.load(path, mmap=True), hashindex.load(path, mmap=True, verify=True)):
        same(index)
        assert index.next_id == ivf.next_id == len(xb) + 500
    data = bytearray(path.read_bytes())
    payload = struct.unpack_from("<Q", data, 16)[0]
    nbounds = sum(2 * ((int(n) + 7) // 8) for n in ivf.list_sizes())
    end = 24 + payload
    first = end - 4 * nbounds
    assert struct.unpack_from("<ii", data, first) != (0, 0)
    bad = bytearray(data)
    struct.pack_into("<ii", bad, first, 0, 0)  # valid numbers, but the block's codes lie farther
    struct.pack_into("<I", bad, len(bad) - 4, zlib.crc32(bytes(bad[:-4])))
    with pytest.raises(hashindex.FormatError, match="bounds of list"):
        hashindex.loads(bytes(bad))
    (tmp_path / "bad.hx").write_bytes(bad)
    with pytest.raises(hashindex.FormatError, match="bounds of list"):
        hashindex.load(tmp_path / "bad.hx", mmap=True, verify=True)
    struct.pack_into("<ii", bad, first, 5, 2)  # near past far: refused even unverified
    struct.pack_into("<I", bad, len(bad) - 4, zlib.crc32(bytes(bad[:-4])))
    (tmp_path / "bad.hx").write_bytes(bad)
    with pytest.raises(hashindex.FormatError, match="invalid bounds"):
        hashindex.load(tmp_path / "bad.hx", mmap=True)
    old = data[:first] + data[end:-4]  # as earlier builds wrote it: no bounds, flag bit 1 clear
    struct.pack_into("<Q", old, 16, payload - 4 * nbounds)
    struct.pack_into("<I", old, 32, struct.unpack_from("<I", old, 32)[0] & ~2)
    old += struct.pack("<I", zlib.crc32(bytes(old)))
    (tmp_path / "old.hx").write_bytes(old)
    for index in (hashindex.loads(bytes(old)), hashindex.load(tmp_path / "old.hx", mmap=True)):
        same(index)
        assert index.next_id == ivf.next_id


def test_lists_chosen_by_the_caller_of_a_trained_index_are_bounded_as_probed_ones(trained):
    """search(lists=) on a trained index: each chosen list's centroid distance is computed for its
    bounds, so lists and blocks are skipped there too; answers are the oracle's over those lists
    (-1 probes nothing, a list named twice is probed once)."""
    ivf, xb, xq = trained
    ivf.add(xb)
    where = ivf.assign(xb)
    rng = np.random.default_rng(5)
    lists = rng.integers(-1, 16, (len(xq), 5))
    lists[:, 0] = ivf.assign(xq)  # each query's own list first, so that its k-th distance is tight
    lists[1, 3] = lists[1, 2]
    d = hamming_matrix(xq, xb)
    got = ivf.search(xq, 6, lists=lists)
    assert ivf.last_search_stats["codes_skipped"] > 0
    ranged = ivf.range_search(xq, 20, lists=lists)
    for q in range(len(xq)):
        members = np.flatnonzero(np.isin(where, lists[q][lists[q] >= 0]))
        best = members[np.lexsort((members, d[q][members]))[:6]]
        np.testing.assert_array_equal(got.ids[q, :len(best)], best)
        np.testing.assert_array_equal(got.distances[q, :len(best)], d[q][best])
        within = members[d[q][members] <= 20]
        lo, hi = ranged.lims[q], ranged.lims[q + 1]
        assert sorted(zip(ranged.distances[lo:hi], ranged.ids[lo:hi])) == sorted(zip(d[q][within], within))


def test_lists_kept_in_order_are_read_from_the_blocks_nearest_the_query(trained):
    """Each list is kept in order by distance to its centroid (put in order again as adds and
    removals disorder it), so that a block's bound is tight and a query reads its nearest list from
    the blocks nearest it by that bound outward, stopping where the bound passes its k-th distance:
    at nprobe 1 most of the list is not compared, with the answers of the whole list, whether the
    codes came in one add or a few at a time."""
    ivf, xb, xq = trained
    few = hashindex.IVFIndex(128, 16)
    few.centroids = ivf.centroids
    ivf.add(xb)
    for i in range(0, len(xb), 7):
        few.add(xb[i:i + 7], np.arange(i, min(i + 7, len(xb))))
    few.remove(np.arange(0, len(xb), 5))
    few.add(xb[:len(xb):5], np.arange(0, len(xb), 5))  # the same codes again, appended
    lists, nearest, d = ivf.assign(xb), ivf.assign(xq), hamming_matrix(xq, xb)
    compared = {}
    for name, index in (("one add", ivf), ("a few at a time", few)):
        got = index.search(xq, 5, nprobe=1)
        st = index.last_search_stats
        compared[name] = st["codes_compared"]
        assert st["codes_compared"] + st["codes_skipped"] == ivf.list_sizes()[nearest].sum()
        assert st["codes_skipped"] > st["codes_compared"], (name, st)
        for q in range(len(xq)):
            members = np.flatnonzero(lists == nearest[q])
            best = members[np.lexsort((members, d[q][members]))[:5]]
            np.testing.assert_array_equal(got.ids[q], best)
            np.testing.assert_array_equal(got.distances[q], d[q][best])
    assert compared["a few at a time"] <= 1.5 * compared["one add"], compared


@given(n=st.integers(1, 400), nlist=st.integers(1, 9), nprobe=st.integers(1, 9), k=st.integers(1, 30),
       batch=st.sampled_from([1, 5, 400]), removed=st.integers(0, 60), every=st.sampled_from([None, 2, 3]),
       seed=st.integers(0, 2**16))
def test_probing_some_lists_equals_the_oracle_of_those_lists(n, nlist, nprobe, k, batch, removed, every, seed):
    """Clustered codes added in batches (each list put in order again as they come), some removed,
    an allow filter or none: the k best of the nprobe nearest lists (ties by list, then by id), for
    every query, k-NN and range search, as the oracle finds them among those lists' members."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 256, (6, 8), dtype=np.uint8)
    xb, xq = clustered(rng, n, 64, centres), clustered(rng, 6, 64, centres)
    ivf = hashindex.IVFIndex(64, nlist)
    ivf.train(np.concatenate([xb, clustered(rng, nlist, 64, centres)]), iterations=3, seed=seed)
    for i in range(0, n, batch):
        ivf.add(xb[i:i + batch], np.arange(i, min(n, i + batch)))
    gone = rng.permutation(n)[:min(removed, n)]
    ivf.remove(gone)
    held = np.setdiff1d(np.arange(n), gone)
    allow = None if every is None else held[::every]
    passing = held if allow is None else allow
    lists, near = ivf.assign(xb), hamming_matrix(xq, ivf.centroids)
    d = hamming_matrix(xq, xb)
    nprobe = min(nprobe, nlist)
    got = ivf.search(xq, k, nprobe=nprobe, allow=allow)
    radius = int(rng.integers(0, 65))
    ranged = ivf.range_search(xq, radius, nprobe=nprobe, allow=allow)
    for q in range(len(xq)):
        probed = np.lexsort((np.arange(nlist), near[q]))[:nprobe]
        members = passing[np.isin(lists[passing], probed)]
        order = members[np.lexsort((members, d[q][members]))[:k]]
        np.testing.assert_array_equal(got.ids[q, :len(order)], order)
        np.testing.assert_array_equal(got.distances[q, :len(order)], d[q][order])
        assert (got.ids[q, len(order):] == -1).all()
        within = members[d[q][members] <= radius]
        lo, hi = ranged.lims[q], ranged.lims[q + 1]
        assert sorted(ranged.ids[lo:hi]) == sorted(within)
