"""Reliability: a process killed while saving leaves the previous file intact (saves are temp file + fsync +
rename); absurd k and radius values raise Python errors or clamp, never crash."""
import os
import signal
import subprocess
import sys
import time

import pytest

import hashindex

SAVER = r"""
import sys, numpy as np, hashindex
kind, path = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(int(sys.argv[3]))
codes = rng.integers(0, 256, (150_000, 32), dtype=np.uint8)
if kind == "multi":
    index = hashindex.MultiFieldIndex({"a": 256, "b": 64})
    add = lambda c: index.add({"a": c, "b": c[:, :8]})
else:
    index = hashindex.FlatIndex(256) if kind == "flat" else hashindex.MIHIndex(256)
    add = index.add
add(codes)
print("ready", flush=True)
while True:  # every save differs from the last by one more code
    add(rng.integers(0, 256, (1, 32), dtype=np.uint8))
    index.save(path)
"""


@pytest.mark.parametrize("kind", ["flat", "mih", "multi"])
def test_kill_during_save_keeps_a_loadable_file(tmp_path, kind):
    path = tmp_path / "index.hx"
    caught = 0
    for round_ in range(10):
        if caught == 3:
            break
        child = subprocess.Popen([sys.executable, "-c", SAVER, kind, str(path), str(round_)], stdout=subprocess.PIPE,
                                 cwd=tmp_path, text=True)
        assert child.stdout.readline().strip() == "ready"
        # Kill the moment the temporary file exists: the child is inside write/fsync/rename.
        temp = tmp_path / f"index.hx.tmp.{child.pid}"
        deadline = time.monotonic() + 20
        while not (path.exists() and temp.exists()) and time.monotonic() < deadline:
            pass
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        index = hashindex.load(path)  # the previous complete file, never a truncated one
        assert len(index) > 150_000
        if temp.exists():  # else the save finished between the check and the kill: try again
            caught += 1
            temp.unlink()
    assert caught == 3, "never killed the child inside a save"


@pytest.mark.parametrize("make", [
    lambda: hashindex.FlatIndex(64), lambda: hashindex.MIHIndex(64),
])
def test_huge_k_and_radius_raise_or_clamp(make):
    import numpy as np

    index = make()
    index.add(np.zeros((3, 8), np.uint8))
    q = np.zeros((2, 8), np.uint8)
    with pytest.raises(MemoryError):  # 1000 x 2^31 results (24 TB) fit nowhere: a Python error, not a crash
        index.search(np.zeros((1000, 8), np.uint8), 2**31 - 1)
    for k in (2**31, 2**64):
        with pytest.raises(ValueError, match="k: expected at most"):
            index.search(q, k)
    assert len(index.range_search(q, 10**12).ids) == 6  # a radius beyond nbits keeps everything


def test_multi_field_huge_k():
    import numpy as np

    index = hashindex.MultiFieldIndex({"a": 64})
    index.add({"a": np.zeros((3, 8), np.uint8)})
    with pytest.raises(ValueError, match="k: expected at most"):
        index.search({"a": np.zeros((1, 8), np.uint8)}, 2**40)
