#!/usr/bin/env bash
# Runs the fuzz targets for a fixed time each.
#   fuzz/run.sh [seconds] [load|api|all]      (default: 60 s, all)
# load: fuzz/fuzz_load.cpp, the index file loaders, built with libFuzzer + ASan + UBSan
#       (needs clang++ with libFuzzer: apt-get install clang). Seeds: valid payloads of every kind.
# api:  fuzz/fuzz_api.py, the Python API against a numpy model (needs atheris: pip install ".[fuzz]";
#       with clang++ too, the core is rebuilt for native coverage and ASan). Seeds: tests/fuzz_regressions/api/.
# A finding leaves crash-<sha1> in build/fuzz/<target>/ and exits non-zero; keep it as a regression test
# (tests/fuzz_regressions/, replayed by tests/test_fuzz_regressions.py).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
which="${2:-all}"
root="$PWD"

run_load() {
    local out=build/fuzz/load
    mkdir -p "$out/obj" "$out/corpus"
    local flags=(-std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined -Icsrc)
    local objs=() src name isa obj
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
    (cd /tmp && python3 "$root/fuzz/seeds.py" "$root/$out/corpus") 2>/dev/null \
        || echo "(no seeds: hashindex not importable; starting from an empty corpus)"
    (cd "$out" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
        ./fuzz_load -max_total_time="$seconds" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 corpus)
}

# The API target on a copy of hashindex whose core is built with clang for libFuzzer's coverage and
# ASan, inside atheris's ASan+libFuzzer runtime: the fuzzer then steers by C++ edges too (coverage at
# start: 433 edges against 36 with Python's alone). Without clang or that runtime, it falls back to
# the installed hashindex, guided by Python coverage only.
build_native_api() {
    local src=build/fuzz/api/src site=build/fuzz/api/site
    rm -rf "$src" "$site"
    mkdir -p "$src"
    cp -r setup.py pyproject.toml README.md csrc hashindex encoder "$src/"
    (cd "$src" && CC=clang CXX=clang++ LDSHARED="clang++ -shared" HASHINDEX_BUILD_JOBS=2 \
        CFLAGS="-fsanitize=address,fuzzer-no-link -g" CXXFLAGS="-fsanitize=address,fuzzer-no-link -g" \
        python3 -m pip install --quiet --no-deps --target "$root/$site" .)
}

run_api() {
    local out=build/fuzz/api preload="" pythonpath="${PYTHONPATH:-}"
    mkdir -p "$out/corpus"
    cp tests/fuzz_regressions/api/*.bin "$out/corpus/" 2>/dev/null || true
    local runtime
    runtime="$(python3 -c 'import atheris, os; print(os.path.join(atheris.path(), "asan_with_fuzzer.so"))')"
    if command -v clang++ >/dev/null && [ -f "$runtime" ] && build_native_api; then
        preload="$runtime"
        pythonpath="$root/$out/site${pythonpath:+:$pythonpath}"
        echo "api: native coverage + ASan ($runtime)"
    else
        echo "api: Python coverage only, on the installed hashindex (no clang++ or no $runtime)"
    fi
    # From outside the source tree, so that a hashindex with its compiled core is imported.
    (cd "$out" && PYTHONPATH="$pythonpath" LD_PRELOAD="$preload" \
        ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:${ASAN_OPTIONS:-}" \
        python3 "$root/fuzz/fuzz_api.py" -max_total_time="$seconds" -max_len=2048 -timeout=20 \
        -rss_limit_mb=4096 -print_final_stats=1 corpus)
}

case "$which" in
    load) run_load ;;
    api) run_api ;;
    all) run_load && run_api ;;
    *) echo "usage: fuzz/run.sh [seconds] [load|api|all]" >&2; exit 2 ;;
esac
