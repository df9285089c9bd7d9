"""load(mmap=True) and compact ids: answers identical to the in-memory index, copy on write, the
file never written through the mapping, checks that do and do not run, format-1 files, and ids
0..n-1 that take no memory until a removal or an explicit id needs them."""
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from oracle import knn, multi_field_knn, random_codes, range_search

import hashindex

FIELDS = {"normal": 128, "abnormal": 40}


def _flat(rng, n=3000, ids=None):
    index = hashindex.FlatIndex(128)
    codes = random_codes(rng, n, 16, pool=200)
    index.add(codes, ids)
    return index, codes


@pytest.mark.parametrize("explicit_ids", [False, True])
def test_flat_mapped_answers_like_the_original(simd, tmp_path, explicit_ids):
    rng = np.random.default_rng(0)
    ids = rng.permutation(10**6)[:3001].astype(np.int64) if explicit_ids else None
    index, codes = _flat(rng, 3001, ids)
    ids = index.ids()
    index.save(tmp_path / "f.hx")
    mapped = hashindex.load(tmp_path / "f.hx", mmap=True)
    assert isinstance(mapped, hashindex.FlatIndex) and len(mapped) == 3001
    q = random_codes(rng, 30, 16, pool=200)
    for k in (1, 10, 3001, 4000):
        got = mapped.search(q, k)
        want = knn(q, codes, ids, k, hashindex.PAD_DISTANCE)
        np.testing.assert_array_equal(got.ids, want[1])
        np.testing.assert_array_equal(got.distances, want[0])
    for a, b in zip(mapped.range_search(q, 50), range_search(q, codes, ids, 50)):
        np.testing.assert_array_equal(a, b)
    allow = ids[::7]
    np.testing.assert_array_equal(mapped.search(q, 5, allow=allow).ids, index.search(q, 5, allow=allow).ids)
    np.testing.assert_array_equal(mapped.get(ids[:9]), codes[:9])
    assert ids[5] in mapped and (10**7) not in mapped
    assert mapped.memory_bytes < index.memory_bytes  # the codes stay in the file


def test_writes_copy_on_write_and_never_touch_the_file(tmp_path):
    rng = np.random.default_rng(1)
    index, codes = _flat(rng)
    path = tmp_path / "f.hx"
    index.save(path)
    before = path.read_bytes()
    mapped = hashindex.FlatIndex.load(path, mmap=True)
    mapped.add(codes[:5])
    mapped.remove([0, 1, 2])
    assert path.read_bytes() == before
    assert len(mapped) == 3002 and 0 not in mapped and 3004 in mapped
    q = codes[:20]
    expected = hashindex.FlatIndex.load(path)
    expected.add(codes[:5])
    expected.remove([0, 1, 2])
    np.testing.assert_array_equal(mapped.search(q, 8).ids, expected.search(q, 8).ids)
    mapped.save(path)  # replacing the file under a mapping of it is safe (rename)
    again = hashindex.load(path, mmap=True)
    np.testing.assert_array_equal(again.search(q, 8).ids, expected.search(q, 8).ids)
    again.reset()
    assert len(again) == 0 and hashindex.load(path).ntotal == 3002


def test_multi_field_mapped_with_and_without_groups(simd, tmp_path):
    rng = np.random.default_rng(2)
    n = 2500
    codes = {f: random_codes(rng, n, b // 8, pool=50) for f, b in FIELDS.items()}
    for groups in (rng.integers(0, 30, n), None):
        index = hashindex.MultiFieldIndex(FIELDS)
        index.add(codes, groups=groups)
        index.save(tmp_path / "m.hx")
        mapped = hashindex.load(tmp_path / "m.hx", mmap=True)
        g = np.full(n, -1) if groups is None else groups
        q = {f: random_codes(rng, 12, b // 8, pool=50) for f, b in FIELDS.items()}
        w = {"normal": 1.0, "abnormal": 2.5}
        ex = rng.integers(-1, 30, 12)
        got = mapped.search(q, 9, weights=w, exclude_groups=ex, one_per_group=True)
        want = multi_field_knn(q, codes, np.arange(n), g, w, 9, ex, True)
        np.testing.assert_array_equal(got.ids, want[1])
        np.testing.assert_array_equal(got.distances, want[0])
        np.testing.assert_array_equal(mapped.groups(np.arange(0, n, 97)), g[::97])
        mapped.add({f: c[:3] for f, c in codes.items()}, groups=[4, 4, 4])  # copy on write, groups too
        assert list(mapped.groups([n, n + 2])) == [4, 4] and mapped.groups([0])[0] == g[0]


def test_ivf_mapped_scans_its_lists_in_place(simd, tmp_path):
    """Each list's codes stay in the file: the same answers, copy on write, the file untouched,
    an id map that refuses an id in two lists."""
    rng = np.random.default_rng(5)
    codes = random_codes(rng, 4000, 16, pool=300)
    ids = rng.permutation(10**6)[:4000].astype(np.int64)
    index = hashindex.IVFIndex(128, 12)
    index.train(codes, seed=1)
    index.add(codes[:3000], ids[:3000])
    index.add(codes[3000:])  # default ids past the largest
    index.nprobe = 3
    path = tmp_path / "ivf.hx"
    index.save(path)
    before = path.read_bytes()
    mapped = hashindex.load(path, mmap=True, verify=True)
    assert isinstance(mapped, hashindex.IVFIndex) and mapped.nprobe == 3 and len(mapped) == 4000
    assert mapped.memory_bytes < index.memory_bytes / 2  # the codes stay in the file
    q = random_codes(rng, 25, 16, pool=300)
    for nprobe in (1, 3, 12):
        for k in (1, 9, 5000):
            got, want = mapped.search(q, k, nprobe=nprobe), index.search(q, k, nprobe=nprobe)
            np.testing.assert_array_equal(got.ids, want.ids)
            np.testing.assert_array_equal(got.distances, want.distances)
    every = index.ids()
    np.testing.assert_array_equal(mapped.get(every[::97]), index.get(every[::97]))
    for changed in (index, mapped):
        changed.add(codes[:7])
        changed.remove(every[:50])
    assert path.read_bytes() == before
    np.testing.assert_array_equal(mapped.search(q, 9, nprobe=12).ids, index.search(q, 9, nprobe=12).ids)
    np.testing.assert_array_equal(mapped.list_sizes(), index.list_sizes())
    # one id in two lists: the body of a list is valid on its own, the index's id map is not
    twice = hashindex.IVFIndex(128, 2)
    twice.centroids = np.stack([codes[0], ~codes[0]])
    twice.add(np.stack([codes[0], ~codes[0]]), [7, 8])
    data = bytearray(twice.to_bytes())
    at = data.rfind(struct.pack("<q", 8))
    data[at:at + 8] = struct.pack("<q", 7)
    data[-4:] = struct.pack("<I", zlib.crc32(bytes(data[:-4])))
    with pytest.raises(hashindex.FormatError, match="invalid ids"):
        hashindex.loads(bytes(data))


def test_mih_and_format1_files_open_with_mmap(tmp_path):
    rng = np.random.default_rng(3)
    codes = random_codes(rng, 20_000, 8, pool=2000)
    mih = hashindex.MIHIndex(64)
    mih.add(codes)
    mih.save(tmp_path / "mih.hx")
    mapped = hashindex.load(tmp_path / "mih.hx", mmap=True)  # tables built in memory from the mapping
    np.testing.assert_array_equal(mapped.search(codes[:10], 5).ids, mih.search(codes[:10], 5).ids)
    fixtures = Path(__file__).parent / "fixtures" / "format1"
    for name in ("flat.hx", "mih.hx", "multi_field.hx"):
        shutil.copy(fixtures / name, tmp_path / name)
        a, b = hashindex.load(tmp_path / name, mmap=True), hashindex.load(tmp_path / name)
        assert type(a) is type(b) and len(a) == len(b)
        np.testing.assert_array_equal(np.sort(a.ids()), np.sort(b.ids()))


def test_what_mmap_checks_and_what_verify_adds(tmp_path):
    rng = np.random.default_rng(4)
    index, _ = _flat(rng, 500, np.arange(1000, 1500))
    path = tmp_path / "f.hx"
    index.save(path)
    data = bytearray(path.read_bytes())
    with pytest.raises(hashindex.FormatError, match="truncated"):
        (tmp_path / "t.hx").write_bytes(bytes(data[:-10]))
        hashindex.load(tmp_path / "t.hx", mmap=True)
    bad = bytearray(data)
    bad[100] ^= 0xFF  # a code byte: the checksum no longer matches
    (tmp_path / "b.hx").write_bytes(bytes(bad))
    assert len(hashindex.load(tmp_path / "b.hx", mmap=True)) == 500  # not read, so not checked
    with pytest.raises(hashindex.FormatError, match="checksum"):
        hashindex.load(tmp_path / "b.hx", mmap=True, verify=True)
    with pytest.raises(hashindex.FormatError, match="checksum"):
        hashindex.load(tmp_path / "b.hx")
    dup = bytearray(data)  # a repeated id with a valid checksum: verify reads the ids
    ids_at = len(dup) - 4 - 500 * 8  # the ids end the payload
    struct.pack_into("<q", dup, ids_at + 8, 1000)
    struct.pack_into("<I", dup, len(dup) - 4, zlib.crc32(bytes(dup[:-4])))
    (tmp_path / "d.hx").write_bytes(bytes(dup))
    with pytest.raises(hashindex.FormatError, match="appears twice"):
        hashindex.load(tmp_path / "d.hx", mmap=True, verify=True)
    with pytest.raises(hashindex.FormatError, match="invalid ids"):
        hashindex.load(tmp_path / "d.hx")
    with pytest.raises(hashindex.FormatError, match="holds a FlatIndex"):
        hashindex.MIHIndex.load(path, mmap=True)

    class Mine(hashindex.FlatIndex):  # a user's subclass opens its kind's files
        pass

    assert type(Mine.load(path, mmap=True)) is Mine
    with pytest.raises(TypeError, match="mmap"):
        hashindex.load(path, mmap="yes")
    with pytest.raises(IsADirectoryError):
        hashindex.load(tmp_path, mmap=True)
    with pytest.raises(FileNotFoundError):
        hashindex.load(tmp_path / "nope.hx", mmap=True)
    (tmp_path / "empty.hx").write_bytes(b"")
    with pytest.raises(hashindex.FormatError, match="not a hashindex file"):
        hashindex.load(tmp_path / "empty.hx", mmap=True)


def test_compact_ids_take_no_memory_until_needed(tmp_path):
    rng = np.random.default_rng(5)
    codes = random_codes(rng, 4000, 8)
    index = hashindex.FlatIndex(64)
    index.add(codes[:2000])
    index.add(codes[2000:], ids=np.arange(2000, 4000))  # explicit, but still the slots
    assert index.memory_bytes == 4000 * 8  # the codes alone: 8 bytes per 64-bit code
    index.save(tmp_path / "dense.hx")
    assert os.path.getsize(tmp_path / "dense.hx") == 64 + 4000 * 8 + 4  # header, codes, checksum
    index.remove([17])  # ids are no longer the slots: now stored
    assert index.memory_bytes > 4000 * 16
    index.save(tmp_path / "sparse.hx")
    back = hashindex.load(tmp_path / "sparse.hx")
    assert 17 not in back and 3999 in back and back._index.next_id == 4000
    back.add(codes[:1])
    assert 4000 in back  # ids retired by the removal stay retired
    q = codes[:30]
    want = knn(q, np.delete(codes, 17, axis=0), np.delete(np.arange(4000), 17), 6, hashindex.PAD_DISTANCE)
    np.testing.assert_array_equal(hashindex.load(tmp_path / "sparse.hx", mmap=True).search(q, 6).ids, want[1])
    other = hashindex.FlatIndex(64)
    other.add(codes[:10], ids=np.arange(5, 15))  # not the slots
    assert other.memory_bytes > 10 * 8
    assert hashindex.load(tmp_path / "dense.hx", mmap=True).memory_bytes == 0
    mih = hashindex.MIHIndex(64)
    mih.add(codes)
    mih.save(tmp_path / "mih.hx")
    assert os.path.getsize(tmp_path / "mih.hx") == 24 + 32 + 4000 * 8 + 4  # header, fields, codes, checksum
    mih.remove([5])
    mih.save(tmp_path / "mih.hx")
    back = hashindex.load(tmp_path / "mih.hx")
    assert 5 not in back and len(back) == 3999 and back._index.next_id == 4000
    np.testing.assert_array_equal(back.search(q, 6).ids, mih.search(q, 6).ids)
