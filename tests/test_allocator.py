"""tune_allocator: freed large buffers are reused instead of unmapped and faulted in again; the
library never changes the allocator on import, the command does unless told not to."""
import subprocess
import sys
import textwrap

import pytest

import hashindex
from hashindex import allocator

GLIBC = allocator._glibc() is not None

# 40 rounds of a 64 MiB buffer written and freed: with glibc's defaults each round maps fresh pages
# (16,384 faults of 4 KiB, fewer where the kernel backs them with huge pages by itself); kept in the
# heap, only the first round faults.
CHURN = textwrap.dedent("""
    import ctypes, resource, sys
    import hashindex
    from hashindex.allocator import _glibc, allocator_tuned
    assert not allocator_tuned()  # importing hashindex leaves the allocator alone
    if sys.argv[1] == "tuned":
        assert hashindex.tune_allocator() and hashindex.tune_allocator() and allocator_tuned()
    libc = _glibc()  # malloc itself: numpy would ask for huge pages, torch does not
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(40):
        p = libc.malloc(64 << 20)
        ctypes.memset(p, 1, 64 << 20)
        libc.free(p)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")

def _faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", CHURN, mode], capture_output=True, text=True, check=True, cwd="/")
    return int(out.stdout)


@pytest.mark.skipif(not GLIBC, reason="mallopt's thresholds are glibc's")
def test_tuned_allocator_stops_the_fault_churn():
    default, tuned = _faults("system"), _faults("tuned")
    assert default > 10 * tuned, (default, tuned)  # every round faults its 64 MiB in again
    assert tuned < 3 * 16_384, (default, tuned)  # the first round only
    print(f"minor faults, 40 rounds: glibc defaults {default}, tuned {tuned}")


@pytest.mark.skipif(not GLIBC, reason="mallopt's thresholds are glibc's")
def test_the_command_tunes_unless_told_not_to(monkeypatch):
    monkeypatch.setattr(allocator, "_applied", False)
    monkeypatch.setenv(allocator.ENV, "system")
    assert not allocator.tune_allocator_for_command() and not allocator.allocator_tuned()
    monkeypatch.setenv(allocator.ENV, "bogus")
    with pytest.raises(ValueError, match=r"HASHINDEX_MALLOC: expected 'tuned' \(the default\) or 'system'.*'bogus'"):
        allocator.tune_allocator_for_command()
    monkeypatch.delenv(allocator.ENV)
    assert allocator.tune_allocator_for_command() and allocator.allocator_tuned()


def test_cli_reports_a_bad_malloc_setting(monkeypatch, capsys):
    from hashindex.cli import main

    monkeypatch.setenv(allocator.ENV, "bogus")
    assert main(["info"]) == 2
    assert "HASHINDEX_MALLOC" in capsys.readouterr().err


def test_elsewhere_it_does_nothing(monkeypatch):
    monkeypatch.setattr(allocator, "_applied", False)
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    assert hashindex.tune_allocator() is False and not allocator.allocator_tuned()
