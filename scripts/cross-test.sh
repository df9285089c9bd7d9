#!/bin/sh
# The kernels' native test (tests/native/kernels_test.cpp) for one architecture:
#   scripts/cross-test.sh x86_64    # built with the host's g++, run natively at every level the CPU has
#   scripts/cross-test.sh aarch64   # built with g++-aarch64-linux-gnu, run under qemu-aarch64 (qemu-user)
#   CXX=clang++ scripts/cross-test.sh x86_64|aarch64   # built by clang (aarch64: --target, with the
#                                   # cross toolchain's headers and libraries), as macOS and Apple
#                                   # Silicon builds are; a compiler may get an intrinsic wrong the other does not
# Each kernel file gets the ISA flags and optimisation setup.py gives it, and nothing is built for the
# host's own CPU.
# Prints "N passed, 0 failed"; exits non-zero on a failure or a missing tool.
set -eu
arch=${1:?usage: scripts/cross-test.sh x86_64|aarch64}
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
case "$arch" in
    x86_64)
        cxx=${CXX:-g++}; run=""
        kernels="kernel_scalar.cpp: kernel_avx2.cpp:-mavx2,-mpopcnt kernel_avx512.cpp:-mavx512f,-mavx512bw,-mavx512dq,-mavx512vl,-mavx512vpopcntdq,-mpopcnt"
        link="" ;;
    aarch64)
        cxx=aarch64-linux-gnu-g++; run=qemu-aarch64
        case "${CXX:-}" in *clang*) cxx="$CXX --target=aarch64-linux-gnu" ;; esac
        kernels="kernel_scalar.cpp: kernel_neon.cpp:"
        link="-static" ;;
    *) echo "unknown architecture '$arch': expected x86_64 or aarch64" >&2; exit 2 ;;
esac
for tool in "${cxx%% *}" $run; do
    command -v "$tool" >/dev/null || { echo "$tool is missing (Debian: g++-aarch64-linux-gnu, qemu-user)" >&2; exit 2; }
done
objects=""
for entry in $kernels; do
    file=${entry%%:*}; flags=$(echo "${entry#*:}" | tr ',' ' ')
    # shellcheck disable=SC2086
    $cxx -std=c++17 -O3 $flags -I"$root/csrc" -c "$root/csrc/$file" -o "$out/${file%.cpp}.o"
    objects="$objects $out/${file%.cpp}.o"
done
# shellcheck disable=SC2086
$cxx -std=c++17 -O3 -I"$root/csrc" "$root/tests/native/kernels_test.cpp" "$root/csrc/dispatch.cpp" $objects $link -o "$out/kernels_test"
$run "$out/kernels_test"
