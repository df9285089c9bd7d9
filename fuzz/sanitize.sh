#!/usr/bin/env bash
# Runs the test suite against hashindex built with AddressSanitizer + UndefinedBehaviorSanitizer.
#   fuzz/sanitize.sh [pytest arguments]      (default: the whole suite)
# Uses the active Python environment's test dependencies (pip install ".[test]" first); the
# sanitized build goes to build/sanitize/site, never over the installed package. Needs GCC or Clang.
set -euo pipefail
cd "$(dirname "$0")/.."
site="$PWD/build/sanitize/site"
rm -rf "$site"
HASHINDEX_SANITIZE=1 python -m pip install --quiet --no-deps --target "$site" .
cxx="${CXX:-c++}"
# ASan must be the first library loaded into python, which is not built with it; libstdc++ right after,
# or ASan's __cxa_throw interceptor finds no real one to call and aborts at the first C++ exception.
asan="$("$cxx" -print-file-name=libasan.so)"
stdcxx="$("$cxx" -print-file-name=libstdc++.so)"
[ -f "$asan" ] || { echo "sanitize.sh: $cxx has no libasan.so" >&2; exit 2; }
# detect_leaks=0: CPython and pybind11 keep interned objects for the process lifetime (not ours to fix).
# allocator_may_return_null=1: a huge request fails as MemoryError, as it does without ASan (tested).
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:${UBSAN_OPTIONS:-}"
PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" LD_PRELOAD="$asan $stdcxx" pytest -p no:cacheprovider "${@:-tests}"
