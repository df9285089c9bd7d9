// The machine's ceilings that benchmarks put scan speeds beside (see roofline.h).
#include "roofline.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <numeric>
#include <vector>

#include "code_store.h"
#include "dispatch.h"
#include "errors.h"
#include "parallel.h"
#include "scan.h"

namespace hashindex {

namespace {
// Published so the compiler cannot drop the measured work as dead code.
std::atomic<uint64_t> g_bandwidth_sink{0};
}  // namespace

double popcount_peak(int threads, double seconds, int repeats) {
    HX_CHECK(seconds > 0 && repeats >= 1, "seconds must be > 0 and repeats >= 1, got " + std::to_string(seconds) + " and " +
                                                std::to_string(repeats));
    threads = resolve_threads(threads);
    const PeakFn peak = active_kernels().peak;
    uint64_t sink = 0;
    int64_t iters = 1 << 16;
    for (;;) {  // calibrate: rounds for about `seconds` on one thread
        const auto t0 = std::chrono::steady_clock::now();
        peak(iters, 7, &sink);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (s >= seconds / 4 || iters > (int64_t{1} << 40)) {
            iters = static_cast<int64_t>(static_cast<double>(iters) * seconds / std::max(s, 1e-9)) + 1;
            break;
        }
        iters *= 4;
    }
    std::vector<double> rates;
    std::vector<uint64_t> sinks(static_cast<std::size_t>(threads) * 8, 0);
    for (int r = 0; r < repeats; ++r) {
        std::atomic<int64_t> bytes{0};
        const auto t0 = std::chrono::steady_clock::now();
        parallel_for(threads, threads, [&](int64_t t) {
            bytes += peak(iters, 11 + static_cast<uint64_t>(t), &sinks[static_cast<std::size_t>(t) * 8]);
        });
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        rates.push_back(static_cast<double>(bytes.load()) / s / 1e9);
    }
    g_bandwidth_sink.store(std::accumulate(sinks.begin(), sinks.end(), sink), std::memory_order_relaxed);
    std::sort(rates.begin(), rates.end());
    return rates[rates.size() / 2];
}

double read_bandwidth(int64_t nbytes, int threads, int repeats) {
    HX_CHECK(nbytes >= 4096 && repeats >= 1, "nbytes must be >= 4096 and repeats >= 1, got " + std::to_string(nbytes) + " and " +
                                                   std::to_string(repeats));
    threads = resolve_threads(threads);
    const int64_t words = nbytes / 8;
    std::vector<uint64_t, CacheAligned<uint64_t>> buf(static_cast<std::size_t>(words));
    for (int64_t i = 0; i < words; ++i) buf[static_cast<std::size_t>(i)] = static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ULL;
    std::vector<uint64_t> sums(static_cast<std::size_t>(threads) * 8, 0);
    std::vector<double> rates;
    for (int r = 0; r < repeats; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        const int64_t per = (words + threads - 1) / threads;
        parallel_for(threads, threads, [&](int64_t t) {
            uint64_t a = 0, b = 0, c = 0, d = 0;
            const uint64_t* p = buf.data();
            const int64_t end = std::min(words, (t + 1) * per);
            for (int64_t i = t * per; i + 4 <= end; i += 4) {
                a += p[i];
                b += p[i + 1];
                c += p[i + 2];
                d += p[i + 3];
            }
            sums[static_cast<std::size_t>(t) * 8] += a ^ b ^ c ^ d;
        });
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        rates.push_back(static_cast<double>(words * 8) / s / 1e9);
    }
    g_bandwidth_sink.store(std::accumulate(sums.begin(), sums.end(), uint64_t{0}), std::memory_order_relaxed);
    std::sort(rates.begin(), rates.end());
    return rates[rates.size() / 2];
}

}  // namespace hashindex
