"""Inputs that fuzz/fuzz_load.cpp found crashing, replayed through the Python loaders.

Each file is a selector byte and a payload; like the fuzz target, the test wraps the payload in a
valid header and CRC-32 and hands it to every index kind, which must load it or raise FormatError.
"""
import struct
import zlib
from pathlib import Path

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


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_fuzz_regression(case):
    blob = image(case.read_bytes())
    for cls in (hashindex.FlatIndex, hashindex.MIHIndex, hashindex.MultiFieldIndex):
        try:
            cls.from_bytes(blob)
        except hashindex.FormatError:
            pass
