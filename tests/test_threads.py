"""Threads: the GIL is released, concurrent use is safe, results do not depend on threads."""
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
from oracle import knn, random_codes

import hashindex


def test_concurrent_searches_and_adds_from_python_threads():
    rng = np.random.default_rng(0)
    xb = random_codes(rng, 30_000, 16)
    index = hashindex.FlatIndex(128)
    index.add(xb)
    xq = random_codes(rng, 40, 16)
    want = index.search(xq, 7)
    errors = []

    def searcher():
        try:
            for _ in range(5):
                got = index.search(xq, 7, threads=2)
                # Later adds only append ids >= 30000 at random distances: the answer may
                # improve, never get worse, and the original ids keep their distances.
                assert (got.distances <= want.distances).all()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def adder():
        for _ in range(5):
            index.add(random_codes(np.random.default_rng(), 500, 16))

    workers = [threading.Thread(target=searcher) for _ in range(3)] + [threading.Thread(target=adder)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors
    assert len(index) == 32_500


def test_gil_released_during_search():
    rng = np.random.default_rng(1)
    index = hashindex.FlatIndex(1024)
    index.add(random_codes(rng, 100_000, 128))
    xq = random_codes(rng, 256, 128)  # one call of tens of ms: ticks can only land inside it if the GIL is free
    ticks = []
    stop = threading.Event()

    def ticker():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    time.sleep(0.01)
    before = len(ticks)
    index.search(xq, 10, threads=1)
    during = len(ticks) - before
    stop.set()
    t.join()
    assert during >= 3, "a Python thread could not run while search held the GIL"


def test_results_independent_of_thread_count():
    rng = np.random.default_rng(2)
    xb = random_codes(rng, 50_000, 8, pool=2000)
    index = hashindex.FlatIndex(64)
    index.add(xb, rng.permutation(50_000).astype(np.int64))
    for nq in (1, 2, 3, 64):
        xq = random_codes(rng, nq, 8)
        base = index.search(xq, 50, threads=1)
        for threads in (2, 3, 8):
            got = index.search(xq, 50, threads=threads)
            np.testing.assert_array_equal(got.ids, base.ids)
            np.testing.assert_array_equal(got.distances, base.distances)
        ids = index.ids()
        want = knn(xq, index.get(ids), ids, 50, hashindex.PAD_DISTANCE)
        np.testing.assert_array_equal(base.ids, want[1])


def _run(code, **env):
    # From a neutral directory, so that the source tree does not shadow the installed package.
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=120, cwd=tempfile.gettempdir())


def test_import_does_not_import_torch():
    r = _run("import sys, hashindex; assert 'torch' not in sys.modules, 'torch imported'")
    assert r.returncode == 0, r.stderr


def test_env_var_forces_level():
    r = _run("import hashindex; print(hashindex.simd_level())", HASHINDEX_SIMD="scalar")
    assert r.returncode == 0 and r.stdout.strip() == "scalar", r.stderr
    r = _run("import warnings, hashindex; print(hashindex.simd_level())", HASHINDEX_SIMD="bogus")
    assert r.returncode == 0 and "HASHINDEX_SIMD ignored" in r.stderr
    assert r.stdout.strip() == hashindex.supported_simd_levels()[-1]


def test_search_works_in_forked_child():
    code = (
        "import os, numpy as np, hashindex\n"
        "i = hashindex.FlatIndex(64); i.add(np.zeros((40000, 8), np.uint8))\n"
        "i.search(np.zeros((1, 8), np.uint8), 3, threads=2)\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    d, _ = i.search(np.zeros((1, 8), np.uint8), 3, threads=2); os._exit(0 if d[0, 0] == 0 else 3)\n"
        "_, status = os.waitpid(pid, 0); assert os.waitstatus_to_exitcode(status) == 0, status\n"
    )
    r = _run(code)
    assert r.returncode == 0, r.stderr


def test_small_batches_same_answers_on_every_task_split(simd):
    """The scan driver's task shapes (one thread under its byte floor, one task per thread for small
    batches over a database larger than a chunk, two per thread otherwise, the database split for a
    single query) give the oracle's answers at every thread count; ties come from a small pool."""
    rng = np.random.default_rng(9)
    for n, code_size in ((40, 8), (700, 32), (9_000, 32), (3_000, 128)):  # 320 B .. 384 KiB
        xb = random_codes(rng, n, code_size, pool=max(8, n // 3))
        index = hashindex.FlatIndex(8 * code_size)
        index.add(xb)
        for nq in (1, 2, 3, 4, 5, 7, 8, 9, 17):
            xq = np.concatenate([xb[:1], random_codes(rng, nq - 1, code_size)])
            want = knn(xq, xb, np.arange(n, dtype=np.int64), 12, hashindex.PAD_DISTANCE)
            for threads in (1, 2, 3, 5):
                got = index.search(xq, 12, threads=threads)
                np.testing.assert_array_equal(got.distances, want[0], err_msg=f"{n} {nq} {threads}")
                np.testing.assert_array_equal(got.ids, want[1], err_msg=f"{n} {nq} {threads}")
