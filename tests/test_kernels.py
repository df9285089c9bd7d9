"""The SIMD kernels directly: every level gives the oracle's distances."""
import pathlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from oracle import hamming_matrix

import hashindex


@given(
    code_size=st.integers(1, 300),
    nx=st.integers(0, 20),
    ny=st.integers(0, 100),
    seed=st.integers(0, 2**32 - 1),
)
def test_hamming_distances_match_oracle(simd, code_size, nx, ny, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (nx, code_size), dtype=np.uint8)
    y = rng.integers(0, 256, (ny, code_size), dtype=np.uint8)
    np.testing.assert_array_equal(hashindex.hamming_distances(x, y), hamming_matrix(x, y))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_hamming_distances_over_a_database_split_between_threads(simd, threads):
    """Few queries over more than 2 MB of codes: the scan cuts the database between the threads, each
    part writing its own columns of the rows (and ny not a multiple of the 8-code block)."""
    rng = np.random.default_rng(threads)
    x = rng.integers(0, 256, (3, 32), dtype=np.uint8)
    y = rng.integers(0, 256, (70_001, 32), dtype=np.uint8)
    np.testing.assert_array_equal(hashindex.hamming_distances(x, y, threads=threads), hamming_matrix(x, y))


@pytest.mark.parametrize("code_size", [8, 32, 128, 248, 256, 264])
def test_extreme_codes(simd, code_size):
    """All-zero vs all-one words: maximal per-byte counts (the AVX2 byte counters must not overflow)."""
    x = np.vstack([np.zeros(code_size, np.uint8), np.full(code_size, 255, np.uint8)])
    d = hashindex.hamming_distances(x, x)
    assert d.tolist() == [[0, 8 * code_size], [8 * code_size, 0]]


def test_levels_reported_and_forced():
    levels = hashindex.supported_simd_levels()
    assert levels[0] == "scalar" and hashindex.simd_level() == levels[-1]
    for level in levels:
        hashindex.set_simd_level(level)
        assert hashindex.simd_level() == level
    hashindex.set_simd_level(levels[-1])
    with pytest.raises(ValueError, match="unknown SIMD level 'sse9'"):
        hashindex.set_simd_level("sse9")
    with pytest.raises(TypeError):
        hashindex.set_simd_level(2)


def test_this_machine_runs_avx512_when_it_has_it():
    cpuinfo = pathlib.Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if cpuinfo.exists() else ""
    if "avx512_vpopcntdq" not in flags:
        pytest.skip("CPU without AVX-512 VPOPCNTDQ")
    assert "avx512" in hashindex.supported_simd_levels()


def test_no_popcount_builtin_outside_the_kernels():
    """Translation units outside the kernel files are built without ISA flags: there a popcount
    builtin compiles to a library call per word on x86-64, outside the dispatch. Code words go
    through the active level's kernels; small keys through probe_util.h's popcount32."""
    import re

    csrc = pathlib.Path(__file__).resolve().parents[1] / "csrc"
    if not csrc.is_dir():
        pytest.skip("no csrc/ beside the tests (an installed copy of the tests)")
    offenders = []
    for path in sorted(csrc.glob("*.[ch]*")):
        if path.name.startswith("kernel_"):
            continue
        code = re.sub(r"//[^\n]*|/\*.*?\*/", "", path.read_text(), flags=re.S)  # comments may name it
        offenders += [f"{path.name}: {m}" for m in re.findall(r"__builtin_popcount\w*|_mm\w*popcnt\w*", code)]
    assert not offenders, offenders


def test_native_kernel_test_passes_at_every_level_of_this_machine():
    """tests/native/kernels_test.cpp (every kernel of every level against the scalar one, no Python),
    built and run by scripts/cross-test.sh for this machine; CI also runs it for AArch64 under qemu."""
    import platform
    import shutil
    import subprocess

    script = pathlib.Path(__file__).resolve().parents[1] / "scripts" / "cross-test.sh"
    arch = platform.machine().lower()
    if not script.is_file() or arch not in ("x86_64", "aarch64") or not shutil.which("g++"):
        pytest.skip("needs the repository's scripts/, g++, and an x86-64 or AArch64 host")
    out = subprocess.run([str(script), arch], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and " 0 failed" in out.stdout, out.stdout[-3000:] + out.stderr[-3000:]
    assert "levels: " + ", ".join(hashindex.supported_simd_levels()) in out.stdout
