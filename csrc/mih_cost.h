// The cost model of multi-index hashing: what probing the tables and scanning the codes cost on
// this machine, from a fixed model of the work (buckets looked up, candidate words verified, hits)
// scaled by timings of the index's own searches. The probe loops (mih_index.cpp, multi_field_mih.cpp)
// and the engine's driver (mih_engine.h) ask it whether a step may pay; the tables know nothing of it.
#pragma once
#include <algorithm>
#include <atomic>
#include <cstdint>

namespace hashindex {
namespace mih {

// Probing cost model, in nanoseconds before calibration (MihCostModel scales
// it by measurement): fitted on single 64-bit queries of 1M and 10M uniform
// codes, m = 4 (benchmarks/RESULTS.md, "Measurements behind the code").
constexpr double kProbeNs = 100.0;        // one bucket looked up, its codes fetched
constexpr double kVerifyNsPerWord = 1.5;  // one candidate word verified and filtered
// A candidate within the threshold: its seen-mark and slot are random accesses
// into arrays as large as the index. Clustered queries have many: without this
// term the learned scale rose and k = 100 queries that probe fast were scanned
// (benchmarks/RESULTS.md, "Measurements behind the code").
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
// n choose r, as a double (the number of keys at substring radius r).
inline double binomial(int n, int r) {
    double c = 1;
    for (int i = 1; i <= r; ++i) c = c * (n - r + i) / i;
    return c;
}

// The fastest of 5 timed runs of f, after one untimed: calibration's scan timings. The first scans
// after a build wake sleeping workers and meet cold lines, and a preempted run is not the scan's
// cost either; the fastest of 3 without the warm-up read the scan slower than it is, and probing
// then took queries it should not (benchmarks/RESULTS.md, "Measurements behind the code").
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
// What one search call did, for tests and benchmarks to check the algorithm.
struct MihStats {
    int64_t queries = 0;
    int64_t by_mih = 0;     // answered by probing the tables
    int64_t by_scan = 0;    // probing would cost more than a scan (cost model): scanned
    int64_t candidates = 0; // codes whose full distance was computed while probing
    int64_t hits = 0;       // candidates within the current threshold
    int64_t buckets = 0;    // table look-ups
    int32_t max_radius = -1;  // largest substring radius probed
    int64_t tail = 0;       // codes added since the last rebuild, scanned per query
    double probe_scale = 1;      // the cost model's learned measured/modelled probing time
    double scan_ns_per_word = 0; // and its learned scan cost for this call's mode
};

// Scales the cost model's probing budget (default 1); for tests and experiments.
void set_mih_budget_scale(double scale);

// What probing and scanning cost on this machine, learned from timed searches
// (exponential moving averages), so that the choice between them holds on any
// CPU and whether the database sits in cache or in DRAM.
struct MihCostModel {
    std::atomic<double> probe_scale{1.0};      // measured / modelled probing time
    std::atomic<double> scan_single_ns{0.40};  // wall ns per code word, one query split over threads
    std::atomic<double> scan_batch_ns{0.13};   // thread ns per code word per query of a batch
    std::atomic<uint32_t> gave_up_history{0};  // bit i: the i-th last probe gave up
    std::atomic<int64_t> workload{0};          // k of the last k-NN call, -1 - radius of the last range call
    std::atomic<uint64_t> queries{0};
    // The k-th distance of queries near stored codes over the uniform-data estimate, measured at
    // calibration: clustered codes have their neighbours far nearer than uniform ones.
    std::atomic<double> kth_scale{1.0};

    // Whether to skip probing this query: after most of the last probes gave up, only one
    // query in 16 still tries, so a workload that never pays wastes almost nothing.
    bool skip_probe();
    // Learns from one timed probe (measured vs modelled ns) and records whether it gave up.
    void observe_probe(double elapsed_ns, double modelled_ns, bool done);
    // Learns from one timed scan of nq queries over `words` code words.
    void observe_scan(double elapsed_ns, double words, int64_t nq, int threads);
    // k (or -1 - radius) of this call; a change forgets the give-up history.
    void set_workload(int64_t workload);
    // What scanning `words` code words for one query of a batch of nq is predicted to cost (ns): the
    // most a query may spend probing before it is handed to the scan.
    double scan_budget_ns(double words, int64_t nq, int threads) const;
    // The fixed model of probing work, before the learned scale.
    static double modelled_probe_ns(int64_t buckets, int64_t candidate_words, int64_t hits);
};

}  // namespace hashindex
