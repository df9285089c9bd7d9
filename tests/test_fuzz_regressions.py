"""Inputs that fuzz/fuzz_load.cpp found crashing, replayed through the Python loaders.

Each file is a selector byte and a payload; like the fuzz target, the test wraps the payload in a
valid header and CRC-32 and hands it to every index kind, which must load it or raise FormatError.
"""
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

import hashindex

CASES = sorted((Path(__file__).parent / "fuzz_regressions").glob("*.bin"))
MAGIC = b"\x89HXI\r\n\x1a\n"


def image(data: bytes) -> bytes:
    kind = 1 + data[0] % 3
    payload = data[1:]
    head = MAGIC + struct.pack("<IIQ", hashindex.FORMAT_VERSION, kind, len(payload)) + payload
    return head + struct.pack("<I", zlib.crc32(head))


def test_image_matches_the_writer():
    index = hashindex.FlatIndex(64)
    data = index.to_bytes()
    assert image(b"\x00" + data[24:-4]) == data


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
    for cls in (hashindex.FlatIndex, hashindex.MIHIndex, hashindex.MultiFieldIndex):
        try:
            cls.from_bytes(blob)
        except hashindex.FormatError:
            pass
