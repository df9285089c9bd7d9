"""Inputs the fuzz targets found failing, replayed.

fuzz_regressions/*.bin (fuzz/fuzz_load.cpp): a selector byte and a payload; like the fuzz target, the
test wraps the payload in a valid header and CRC-32 and hands it to every index kind, which must load it
or raise FormatError. fuzz_regressions/api/*.bin (fuzz/fuzz_api.py): replayed through that target's
own checks (numpy model as oracle, named errors, all-or-nothing), as are a few hundred seeded random
inputs, so the target's checks run in every test run, not only when atheris is installed.
"""
import importlib.util
import random
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

import hashindex

CASES = sorted((Path(__file__).parent / "fuzz_regressions").glob("*.bin"))
API_CASES = sorted((Path(__file__).parent / "fuzz_regressions" / "api").glob("*.bin"))
MAGIC = b"\x89HXI\r\n\x1a\n"


def image(data: bytes) -> bytes:
    """As fuzz/fuzz_load.cpp: kind 1 + byte % 4, format version 1 or 2 by (byte // 4) % 2."""
    kind = 1 + data[0] % 4
    version = 1 if (data[0] // 4) % 2 == 0 else 2
    payload = data[1:]
    head = MAGIC + struct.pack("<IIQ", version, kind, len(payload)) + payload
    return head + struct.pack("<I", zlib.crc32(head))


def test_image_matches_the_writer():
    index = hashindex.FlatIndex(64)
    data = index.to_bytes()
    assert hashindex.FORMAT_VERSION == 2  # the selector below picks kind 1, version 2
    assert image(b"\x04" + data[24:-4]) == data
    ivf = hashindex.IVFIndex(64, 2)
    data = ivf.to_bytes()
    assert image(b"\x07" + data[24:-4]) == data  # kind 4, version 2: what fuzz/seeds.py writes for IVF


def test_empty_multi_field_file_loads_empty():
    # The first finding: a MultiFieldIndex file with fields and no items (UBSan: memcpy into null).
    (case,) = [c for c in CASES if c.name == "multi_field_empty_memcpy.bin"]
    index = hashindex.MultiFieldIndex.from_bytes(image(case.read_bytes()))
    assert len(index) == 0 and index.fields == {"a": 64, "b": 16}
    res = index.search({"a": np.zeros((1, 8), np.uint8), "b": np.zeros((1, 2), np.uint8)}, 2)
    assert list(res.ids[0]) == [-1, -1]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fuzz_regression(case):
    blob = image(case.read_bytes())
    for cls in (hashindex.FlatIndex, hashindex.MIHIndex, hashindex.MultiFieldIndex, hashindex.IVFIndex):
        try:
            cls.from_bytes(blob)
        except hashindex.FormatError:
            pass


def _api_target():
    path = Path(__file__).resolve().parent.parent / "fuzz" / "fuzz_api.py"
    spec = importlib.util.spec_from_file_location("hashindex_fuzz_api", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def api_target():
    return _api_target()


@pytest.mark.parametrize("case", API_CASES, ids=[c.name for c in API_CASES])
def test_api_fuzz_regression(api_target, case):
    api_target.one_input(case.read_bytes())


def test_api_fuzz_target_on_seeded_random_inputs(api_target):
    rng = random.Random(8)
    for _ in range(400):
        api_target.one_input(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300))))


@pytest.mark.parametrize("kind", [hashindex.FlatIndex, hashindex.IVFIndex])
def test_api_fuzz_target_reports_a_wrong_answer(api_target, monkeypatch, kind):
    """The target's oracle is live: an index that drops its last result is a finding."""
    original = kind.search

    def lossy(self, queries, k, **kw):
        result = original(self, queries, k, **kw)
        result.ids[:, -1] = -1
        return result

    monkeypatch.setattr(kind, "search", lossy)
    rng = random.Random(9)
    with pytest.raises(api_target.Finding):
        for _ in range(2000):
            api_target.one_input(bytes(rng.getrandbits(8) for _ in range(rng.randint(20, 300))))
