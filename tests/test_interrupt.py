"""Ctrl-C stops a long search: scans poll Python's signal handlers from the calling (main) thread,
every index kind, one thread or all; afterwards the index answers exactly as before."""
import json
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
from oracle import knn

import hashindex

# Each call below would take minutes (1M queries x 1M codes of 256 bits, ~200 s for a FlatIndex on
# 2 cores): a child that is not interrupted cannot finish inside the parent's timeout.
N = 1_000_000
CHILD = r"""
import json, os, signal, sys, threading, numpy as np, hashindex
# Python's Ctrl-C handler, whatever this child inherited: a command run in the background by a shell
# without job control starts with SIGINT ignored, and Python then installs no handler for it.
signal.signal(signal.SIGINT, signal.default_int_handler)
kind, threads = sys.argv[1], None if sys.argv[2] == "all" else int(sys.argv[2])
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (N, 32), dtype=np.uint8)
q = rng.integers(0, 256, (N, 32), dtype=np.uint8)
if kind == "multi":
    index = hashindex.MultiFieldIndex({"a": 128, "b": 128})
    index.add({"a": x[:, :16], "b": x[:, 16:]})
    calls = {"knn": lambda: index.search({"a": q[:, :16], "b": q[:, 16:]}, 10, threads=threads)}
    check = lambda: index.search({"a": q[:2, :16], "b": q[:2, 16:]}, 3)
else:
    index = hashindex.FlatIndex(256) if kind == "flat" else hashindex.MIHIndex(256)
    index.add(x)
    calls = {"knn": lambda: index.search(q, 10, threads=threads),
             "range": lambda: index.range_search(q, 90, threads=threads)}
    check = lambda: index.search(q[:2], 3)
for name, call in calls.items():
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT)).start()
    try:
        call()
        print(name, "completed", flush=True)
    except KeyboardInterrupt:
        print(name, "interrupted", flush=True)
r = check()
print(json.dumps([r.distances.tolist(), r.ids.tolist()]), flush=True)
""".replace("N, 32", f"{N}, 32")


@pytest.mark.parametrize("kind,threads", [("flat", "all"), ("flat", "1"), ("mih", "all"), ("multi", "all")])
def test_ctrl_c_stops_a_long_search(tmp_path, kind, threads):
    try:
        out = subprocess.run([sys.executable, "-c", CHILD, kind, threads], capture_output=True, text=True,
                             cwd=tmp_path, timeout=120).stdout
    except subprocess.TimeoutExpired:
        pytest.fail(f"{kind} search with threads={threads} was not interrupted by SIGINT")
    lines = out.splitlines()
    names = ["knn"] if kind == "multi" else ["knn", "range"]
    assert lines[:-1] == [f"{name} interrupted" for name in names]
    distances, ids = json.loads(lines[-1])
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (N, 32), dtype=np.uint8)
    q = rng.integers(0, 256, (N, 32), dtype=np.uint8)[:2]
    expect_d, expect_i = knn(q, x, np.arange(N), 3, hashindex.PAD_DISTANCE)
    assert distances == expect_d.tolist() and ids == expect_i.tolist()


def test_signal_handler_that_returns_does_not_stop_a_search():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (500_000, 32), dtype=np.uint8)
    q = rng.integers(0, 256, (8_000, 32), dtype=np.uint8)
    index = hashindex.FlatIndex(256)
    index.add(x)
    quiet = index.search(q, 5, threads=1)  # one thread: ~1.4 s here, so the signals land mid-search
    handled = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: handled.append(1))
    try:
        timers = [threading.Timer(t, os.kill, (os.getpid(), signal.SIGUSR1)) for t in (0.05, 0.15, 0.25)]
        for t in timers:
            t.start()
        noisy = index.search(q, 5, threads=1)
        for t in timers:
            t.join()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    # Python calls a handler once for all the deliveries of a signal that wait until the search returns
    # (the build before polling: one call); polls inside the search handle them one by one.
    assert len(handled) >= 2, handled
    np.testing.assert_array_equal(noisy.distances, quiet.distances)
    np.testing.assert_array_equal(noisy.ids, quiet.ids)
    expect_d, expect_i = knn(q[:5], x, np.arange(len(x)), 5, hashindex.PAD_DISTANCE)
    np.testing.assert_array_equal(noisy.distances[:5], expect_d)
    np.testing.assert_array_equal(noisy.ids[:5], expect_i)
