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


# Sweeps the address-space limit across the allocations of one large add: every add either completes or
# raises MemoryError and leaves the index exactly as it was (contents and answers), never half-added.
OOM_CHILD = r"""
import json, resource, sys, numpy as np, hashindex
kind = sys.argv[1]
rng = np.random.default_rng(3)
base = rng.integers(0, 256, (50_000, 32), dtype=np.uint8)
big = rng.integers(0, 256, (400_000, 32), dtype=np.uint8)
if kind == "multi":
    index = hashindex.MultiFieldIndex({"a": 128, "b": 128})
    add = lambda c: index.add({"a": c[:, :16], "b": c[:, 16:]}, groups=np.arange(len(c)) % 7)
    search = lambda: index.search({"a": base[:8, :16], "b": base[:8, 16:]}, 5)
else:
    index = hashindex.FlatIndex(256) if kind == "flat" else hashindex.MIHIndex(256)
    add = index.add
    search = lambda: index.search(base[:8] ^ 1, 5)
add(base)
expect, ids_before = search(), np.sort(index.ids())
def vm_bytes():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
_, hard = resource.getrlimit(resource.RLIMIT_AS)
outcomes = []
for extra_mb in range(0, 200):  # 1 MB steps: every allocation of the add fails in some step
    resource.setrlimit(resource.RLIMIT_AS, (vm_bytes() + extra_mb * 2**20, hard))
    try:
        add(big)
        outcome = "added"
    except MemoryError:
        outcome = "MemoryError"
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
    if outcome == "added":
        assert len(index) == len(base) + len(big)
        index.remove(np.setdiff1d(index.ids(), ids_before))
    assert np.array_equal(np.sort(index.ids()), ids_before), (extra_mb, outcome)
    now = search()
    assert np.array_equal(now.ids, expect.ids) and np.array_equal(now.distances, expect.distances), (extra_mb, outcome)
    outcomes.append(outcome)
    if outcomes[-3:] == ["added"] * 3:
        break
print(json.dumps(outcomes))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc/self/status are Linux's")
@pytest.mark.parametrize("kind", ["flat", "mih", "multi"])
def test_add_that_runs_out_of_memory_changes_nothing(tmp_path, kind):
    import json

    if "asan" in os.environ.get("LD_PRELOAD", ""):
        pytest.skip("AddressSanitizer reserves terabytes of address space: RLIMIT_AS cannot be swept under it")
    run = subprocess.run([sys.executable, "-c", OOM_CHILD, kind], capture_output=True, text=True, cwd=tmp_path,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    outcomes = json.loads(run.stdout.splitlines()[-1])
    # The sweep spans the add's allocations: the first limits refuse it, the last let it through.
    assert outcomes[0] == "MemoryError" and outcomes[-1] == "added", outcomes
