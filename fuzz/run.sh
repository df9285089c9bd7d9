#!/usr/bin/env bash
# Builds the libFuzzer target of the index file loaders with ASan + UBSan and runs it.
#   fuzz/run.sh [seconds]      (default 60; needs clang++ with libFuzzer: apt-get install clang)
# Seeds: valid payloads of every index kind written by the installed hashindex, when it imports.
# A crash leaves crash-<sha1> in build/fuzz/ and exits non-zero; add it as a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
out=build/fuzz
mkdir -p "$out/obj" "$out/corpus"
flags=(-std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined -Icsrc)
objs=()
for src in csrc/*.cpp; do
    name=$(basename "$src" .cpp)
    [ "$name" = bindings ] && continue
    isa=()
    [ "$name" = kernel_avx2 ] && isa=(-mavx2 -mpopcnt)
    [ "$name" = kernel_avx512 ] && isa=(-mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512vpopcntdq -mpopcnt)
    obj="$out/obj/$name.o"
    if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ -n "$(find csrc -name '*.h' -newer "$obj")" ]; then
        clang++ "${flags[@]}" -fsanitize=fuzzer-no-link "${isa[@]}" -c "$src" -o "$obj" &
    fi
    objs+=("$obj")
done
wait
clang++ "${flags[@]}" -fsanitize=fuzzer fuzz/fuzz_load.cpp "${objs[@]}" -lpthread -o "$out/fuzz_load"
python3 fuzz/seeds.py "$out/corpus" 2>/dev/null || echo "(no seeds: hashindex not importable; starting from an empty corpus)"
cd "$out"
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ./fuzz_load -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 corpus
