"""save/load/pickle round trips, and damaged or foreign files rejected with FormatError."""
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from oracle import random_codes

import hashindex


@pytest.fixture
def index():
    rng = np.random.default_rng(1)
    idx = hashindex.FlatIndex(136)
    idx.add(random_codes(rng, 1234, 17), rng.permutation(9999)[:1234].astype(np.int64))
    idx.remove(idx.ids()[:34])
    return idx


def assert_same(a, b):
    assert (a.nbits, len(a)) == (b.nbits, len(b))
    ids = np.sort(a.ids())
    np.testing.assert_array_equal(np.sort(b.ids()), ids)
    np.testing.assert_array_equal(a.get(ids), b.get(ids))
    q = np.random.default_rng(2).integers(0, 256, (7, a.code_size), dtype=np.uint8)
    for x, y in zip(a.search(q, 15), b.search(q, 15)):
        np.testing.assert_array_equal(x, y)


def test_save_load_round_trip(tmp_path, index):
    path = tmp_path / "flat.hx"
    index.save(path)
    assert_same(index, hashindex.load(path))
    assert_same(index, hashindex.FlatIndex.load(str(path)))
    assert os.listdir(tmp_path) == ["flat.hx"]  # the temporary file was renamed away


def test_default_ids_survive_round_trip(tmp_path):
    idx = hashindex.FlatIndex(8)
    idx.add(np.zeros((3, 1), np.uint8))
    idx.remove(np.array([2]))
    idx.save(tmp_path / "a.hx")
    back = hashindex.load(tmp_path / "a.hx")
    back.add(np.zeros((1, 1), np.uint8))
    assert sorted(back.ids().tolist()) == [0, 1, 3]


def test_empty_round_trip(tmp_path):
    idx = hashindex.FlatIndex(2048)
    idx.save(tmp_path / "e.hx")
    back = hashindex.load(tmp_path / "e.hx")
    assert len(back) == 0 and back.nbits == 2048


def test_pickle_round_trip(index):
    assert_same(index, pickle.loads(pickle.dumps(index)))


def test_overwrite_replaces_atomically(tmp_path, index):
    path = tmp_path / "x.hx"
    hashindex.FlatIndex(8).save(path)
    index.save(path)
    assert_same(index, hashindex.load(path))


def test_header_layout_and_checksum_match_zlib(index):
    data = index.to_bytes()
    assert data[:8] == b"\x89HXI\r\n\x1a\n"
    version, kind, payload = struct.unpack_from("<IIQ", data, 8)
    assert version == hashindex.FORMAT_VERSION and kind == 1 and len(data) == 24 + payload + 4
    assert struct.unpack("<I", data[-4:])[0] == zlib.crc32(data[:-4])
    nbits, _, ntotal = struct.unpack_from("<IIQ", data, 24)
    assert (nbits, ntotal) == (136, 1200)


def test_truncated_file(tmp_path, index):
    data = index.to_bytes()
    for cut in (0, 5, 23, 30, len(data) // 2, len(data) - 1):
        (tmp_path / "t.hx").write_bytes(data[:cut])
        with pytest.raises(hashindex.FormatError, match="truncated|bad magic"):
            hashindex.load(tmp_path / "t.hx")


def test_trailing_garbage(index):
    with pytest.raises(hashindex.FormatError, match="trailing bytes"):
        hashindex.FlatIndex.from_bytes(index.to_bytes() + b"\0")


def test_foreign_file(tmp_path):
    (tmp_path / "f.npy").write_bytes(b"\x93NUMPY" + b"\0" * 100)
    with pytest.raises(hashindex.FormatError, match="not a hashindex file"):
        hashindex.load(tmp_path / "f.npy")


def test_every_flipped_byte_is_caught(index):
    data = bytearray(index.to_bytes())
    rng = np.random.default_rng(0)
    for pos in list(range(8, 40)) + rng.integers(40, len(data), 50).tolist():
        bad = bytearray(data)
        bad[pos] ^= 0x10
        with pytest.raises(hashindex.FormatError):
            hashindex.FlatIndex.from_bytes(bytes(bad))


def test_newer_version_rejected(index):
    data = bytearray(index.to_bytes())
    struct.pack_into("<I", data, 8, hashindex.FORMAT_VERSION + 1)
    struct.pack_into("<I", data, len(data) - 4, zlib.crc32(bytes(data[:-4])))
    with pytest.raises(hashindex.FormatError, match=f"format version {hashindex.FORMAT_VERSION + 1} is not readable"):
        hashindex.FlatIndex.from_bytes(bytes(data))


def test_unknown_kind_rejected(tmp_path, index):
    data = bytearray(index.to_bytes())
    struct.pack_into("<I", data, 12, 77)
    struct.pack_into("<I", data, len(data) - 4, zlib.crc32(bytes(data[:-4])))
    (tmp_path / "k.hx").write_bytes(bytes(data))
    with pytest.raises(hashindex.FormatError, match="kind"):
        hashindex.load(tmp_path / "k.hx")
    with pytest.raises(hashindex.FormatError, match="not a FlatIndex"):
        hashindex.FlatIndex.from_bytes(bytes(data))


def test_corrupt_payload_with_valid_checksum_rejected():
    # A well-formed container whose ids repeat: the payload check must catch it.
    idx = hashindex.FlatIndex(8)
    idx.add(np.zeros((2, 1), np.uint8), np.array([3, 4]))
    data = bytearray(idx.to_bytes())
    ids_at = 64 + 64  # format 2: codes in one 64-byte block at offset 64, then the ids
    struct.pack_into("<q", data, ids_at + 8, 3)
    struct.pack_into("<I", data, len(data) - 4, zlib.crc32(bytes(data[:-4])))
    with pytest.raises(hashindex.FormatError, match="invalid ids"):
        hashindex.FlatIndex.from_bytes(bytes(data))


def test_file_system_errors_are_oserrors_with_errno(tmp_path):
    # Before: RuntimeError for a missing file, and MemoryError (std::bad_alloc) for a directory.
    with pytest.raises(FileNotFoundError) as missing:
        hashindex.load(tmp_path / "nope.hx")
    assert missing.value.filename == str(tmp_path / "nope.hx")
    with pytest.raises(IsADirectoryError):
        hashindex.load(tmp_path)
    with pytest.raises(IsADirectoryError):
        hashindex.FlatIndex.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="creating"):
        hashindex.FlatIndex(8).save(tmp_path / "no_such_dir" / "x.hx")
    (tmp_path / "d").mkdir()
    with pytest.raises(IsADirectoryError, match="renaming"):
        hashindex.FlatIndex(8).save(tmp_path / "d")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]  # no temporary file left behind


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_endless_or_foreign_streams_are_refused_after_the_header():
    # Reading stops where the header says the file ends: /dev/zero is refused, not read until memory runs out.
    for path in ("/dev/zero", "/dev/urandom", "/dev/null"):
        with pytest.raises(hashindex.FormatError, match="not a hashindex file"):
            hashindex.load(path)


def test_trailing_garbage_in_a_file(tmp_path, index):
    (tmp_path / "t.hx").write_bytes(index.to_bytes() + b"x" * 1000)
    with pytest.raises(hashindex.FormatError, match="trailing bytes"):
        hashindex.load(tmp_path / "t.hx")


FIXTURES = Path(__file__).parent / "fixtures" / "format1"


def test_format1_fixtures_load():
    """Files written by format 1 (see fixtures/format1/README.md) load with their contents, their
    default-id counters and exact answers, whatever format this version writes."""
    rng = np.random.default_rng(2026)
    codes = rng.integers(0, 256, (40, 8), dtype=np.uint8)
    abnormal = rng.integers(0, 256, (40, 16), dtype=np.uint8)

    flat = hashindex.load(FIXTURES / "flat.hx")
    assert isinstance(flat, hashindex.FlatIndex) and flat.nbits == 64
    keep = np.setdiff1d(np.arange(40), [3, 39])
    np.testing.assert_array_equal(np.sort(flat.ids()), keep)
    np.testing.assert_array_equal(flat.get(keep), codes[keep])
    flat.add(codes[:1])
    assert 40 in flat and 39 not in flat  # the counter survived: retired ids stay retired

    mih = hashindex.load(FIXTURES / "mih.hx")
    assert isinstance(mih, hashindex.MIHIndex) and mih._index.m_requested == 4
    np.testing.assert_array_equal(np.sort(mih.ids()), np.arange(101, 140))
    d, i = mih.search(codes[:5], 3)
    ref = hashindex.FlatIndex(64)
    ref.add(codes[1:], ids=np.arange(101, 140))
    d_ref, i_ref = ref.search(codes[:5], 3)
    np.testing.assert_array_equal(d, d_ref)
    np.testing.assert_array_equal(i, i_ref)

    multi = hashindex.load(FIXTURES / "multi_field.hx")
    assert isinstance(multi, hashindex.MultiFieldIndex) and multi.fields == {"normal": 64, "abnormal": 128}
    rows = np.setdiff1d(np.arange(40), [7])
    np.testing.assert_array_equal(np.sort(multi.ids()), rows)
    np.testing.assert_array_equal(multi.get(rows, "abnormal"), abnormal[rows])
    np.testing.assert_array_equal(multi.groups(rows), rows // 4)


def test_loads_opens_every_kind_from_bytes():
    rng = np.random.default_rng(11)
    codes = rng.integers(0, 256, (50, 8), dtype=np.uint8)
    flat, mih = hashindex.FlatIndex(64), hashindex.MIHIndex(64)
    multi = hashindex.MultiFieldIndex({"a": 64, "b": 64})
    flat.add(codes)
    mih.add(codes, np.arange(100, 150))
    multi.add({"a": codes, "b": codes[::-1]}, groups=np.arange(50) % 5)
    for index in (flat, mih, multi):
        again = hashindex.loads(index.to_bytes())
        assert type(again) is type(index) and len(again) == len(index)
        np.testing.assert_array_equal(again.ids(), index.ids())
    with pytest.raises(TypeError, match="data"):
        hashindex.loads("not bytes")
    with pytest.raises(hashindex.FormatError, match="<bytes>"):
        hashindex.loads(flat.to_bytes()[:-3])
