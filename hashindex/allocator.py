"""Keeps glibc from handing large freed buffers back to the kernel between batches.

glibc serves every allocation above its mmap threshold (128 KiB, rising to at most 32 MiB) with a
fresh ``mmap`` and returns it with ``munmap`` on free, and it trims the top of the heap whenever more
than the trim threshold is free. A convolution's activations and numpy's temporaries are far larger,
so every batch of a loop faults its memory in again, 4 KiB at a time where transparent huge pages
are ``madvise`` (the default on most distributions). ``benchmarks/RESULTS.md`` ("The main job")
has what that costs the encoder and the demo.

``tune_allocator()`` raises both thresholds so freed blocks stay in the process and are reused. It
changes the whole process, so the library never calls it on import: the ``hashindex`` command does
(``HASHINDEX_MALLOC=system`` leaves glibc's defaults), and a program that embeds hashindex opts in by
calling it once, early. The price is that the process keeps its peak heap instead of returning it.
Elsewhere (musl, macOS, Windows) it does nothing and returns False.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters (<malloc.h>); values are C ints, so 2 GiB - 1 is the largest a caller can give.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_LARGEST = 2**31 - 1
ENV = "HASHINDEX_MALLOC"

_applied = False


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018 - glibc alone has it; musl's mallopt ignores these parameters
    except (OSError, AttributeError):
        return None
    return libc


def tune_allocator() -> bool:
    """Raises glibc's mmap and trim thresholds to 2 GiB for the rest of the process, so buffers that
    batch loops free (torch activations, numpy temporaries) are reused rather than unmapped and
    faulted in again. Returns True where it applied (glibc), False elsewhere. Idempotent."""
    global _applied
    if _applied:
        return True
    libc = _glibc()
    if libc is None:
        return False
    mallopt = libc.mallopt
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _applied = bool(mallopt(_M_MMAP_THRESHOLD, _LARGEST)) and bool(mallopt(_M_TRIM_THRESHOLD, _LARGEST))
    return _applied


def tune_allocator_for_command() -> bool:
    """What the ``hashindex`` command calls first: ``tune_allocator()`` unless ``HASHINDEX_MALLOC``
    is ``system``."""
    wanted = os.environ.get(ENV, "").strip().lower()
    if wanted not in ("", "tuned", "system"):
        raise ValueError(f"{ENV}: expected 'tuned' (the default) or 'system' (glibc's own thresholds), got {wanted!r}")
    return wanted != "system" and tune_allocator()


def allocator_tuned() -> bool:
    """Whether ``tune_allocator()`` has applied in this process."""
    return _applied


def worker_allocator():
    """The initializer for a process pool's workers: ``tune_allocator`` where this process has
    applied it (so workers started by forkserver or spawn, which begin with glibc's defaults, match
    their parent), else None."""
    return tune_allocator if _applied else None
