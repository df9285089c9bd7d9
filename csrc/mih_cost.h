// The cost model of multi-index hashing: what probing the tables and scanning the codes cost on
// this machine, from a fixed model of the work (buckets looked up, candidate words verified, hits)
// scaled by timings of the index's own searches. The probe loop (mih_probe.cpp) asks it whether a
// step may pay; the tables (mih_index.cpp) know nothing of it.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>

namespace hashindex {
namespace mih {

// Probing cost model, in nanoseconds before calibration (MihCostModel scales
// it by measurement): fitted on the 2-core Sapphire Rapids VM of
// benchmarks/RESULTS.md, single 64-bit queries, m = 4: 1M uniform codes, 1.65k
// buckets and 26.8k candidates took 0.21 ms, 2.78k and 49k 0.35 ms; 10M, ~1.1k
// buckets and 304k candidates 0.50 ms.
constexpr double kProbeNs = 100.0;        // one bucket looked up, its codes fetched
constexpr double kVerifyNsPerWord = 1.5;  // one candidate word verified and filtered
// A candidate within the threshold: its seen-mark and slot are random accesses
// into arrays as large as the index. Clustered queries have many (10M codes:
// without this term the learned scale rose to 5x and k = 100 queries that
// probe in 0.06-0.8 ms were scanned in 4 ms).
constexpr double kHitNs = 150.0;
constexpr double kLearnRate = 0.2;        // weight of a new measurement in the averages
// Queries give up probing (and are scanned) when probing is predicted to cost
// more than a scan; after 12 of the last 16 gave up, probing is skipped for
// all but one query in 16, so a workload that never pays wastes almost nothing.
constexpr int kHistory = 16, kSkipAfter = 12;

// Scales the probing budget (set_mih_budget_scale); tests raise it to exercise probing on small data.
double budget_scale();
// The k-th nearest distance among n uniform random codes of nbits bits (an optimistic estimate).
int64_t uniform_kth_distance(int64_t n, int nbits, int64_t k);
// Monotonic time in ns.
double now_ns();

// The fastest of 5 timed runs of f, after one untimed: calibration's scan timings. The first scans
// after a build wake sleeping workers and meet cold lines (1M x 64 bits: 0.47, 0.32, 0.25 ms, then
// 0.19), and a preempted run is not the scan's cost either; the fastest of 3 without the warm-up
// read 0.253 ns per word where 0.17-0.18 holds, and probing then took queries it should not.
template <class F>
double fastest_ns(F&& f) {
    f();
    double best = 1e300;
    for (int r = 0; r < 5; ++r) {
        const double t0 = now_ns();
        f();
        best = std::min(best, now_ns() - t0);
    }
    return best;
}

}  // namespace mih
}  // namespace hashindex
