"""Writes valid payloads of every index kind (selector byte + payload, as fuzz_load.cpp reads them)."""
import sys
from pathlib import Path

import numpy as np

import hashindex

HEADER, TRAILER = 24, 4
# fuzz_load.cpp's selector: kind 1 + byte % 4, format version 2 where (byte / 4) % 2 (what to_bytes writes)
KIND_BYTE = {"FlatIndex": 4, "MIHIndex": 5, "MultiFieldIndex": 6, "IVFIndex": 7}

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)
for n in (0, 1, 5, 40):
    codes = rng.integers(0, 256, (n, 8), dtype=np.uint8)
    indexes = [hashindex.FlatIndex(64), hashindex.MIHIndex(64, m=4), hashindex.MultiFieldIndex({"a": 64, "b": 16}),
               hashindex.MultiFieldIndex({"a": 64, "b": 16}, mih=True)]
    indexes[0].add(codes)
    indexes[1].add(codes)
    for index in indexes[2:]:
        index.add({"a": codes, "b": codes[:, :2]}, groups=np.arange(n) % 3)
    # IVF: untrained and empty; trained, its lists in order; lists grown and holed after ordering
    # (bounds wider than the codes, members out of order).
    indexes.append(hashindex.IVFIndex(64, 4))
    if n:
        ivf = hashindex.IVFIndex(64, min(n, 4))
        ivf.train(codes)
        ivf.add(codes)
        ivf.remove(ivf.ids()[::3])
        ivf.add(codes[: n // 2], np.arange(n // 2) + 1000)
        indexes.append(ivf)
    for i, index in enumerate(indexes):
        image = index.to_bytes()
        kind = type(index).__name__
        (out / f"seed-{kind}-{n}-{i}").write_bytes(bytes([KIND_BYTE[kind]]) + image[HEADER:-TRAILER])
