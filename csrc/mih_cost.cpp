// The cost model of multi-index hashing (mih_cost.h): the fixed model, its learned scales, and the
// budget a query may spend probing before it is handed to the scan.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>

#include "errors.h"
#include "mih_cost.h"
#include "parallel.h"
#include "probe_util.h"
#include "scan.h"

namespace hashindex {
namespace mih {
namespace {
std::atomic<double> g_budget_scale{1.0};

// Moves an exponential moving average towards an observation.
void learn(std::atomic<double>& average, double observed) {
    const double old = average.load(std::memory_order_relaxed);
    average.store((1 - kLearnRate) * old + kLearnRate * observed, std::memory_order_relaxed);
}

}  // namespace

double budget_scale() { return g_budget_scale.load(std::memory_order_relaxed); }

// The k-th nearest distance among n uniform random codes of nbits bits: the
// smallest r with n * P(Binomial(nbits, 1/2) <= r) >= k. Real codes are
// clustered, so their k-th distance is smaller: an optimistic estimate.
int64_t uniform_kth_distance(int64_t n, int nbits, int64_t k) {
    double log_term = -nbits * std::log(2.0);  // log P(d = 0)
    double cdf = 0;
    for (int r = 0; r <= nbits; ++r) {
        if (r > 0) log_term += std::log(static_cast<double>(nbits - r + 1) / r);
        cdf += std::exp(log_term);
        if (cdf * static_cast<double>(n) >= static_cast<double>(k)) return r;
    }
    return nbits;
}

double now_ns() {
    return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace mih

void set_mih_budget_scale(double scale) {
    HX_CHECK(scale > 0, "scale must be > 0, got " + std::to_string(scale));
    mih::g_budget_scale.store(scale);
}

bool MihCostModel::skip_probe() {
    using namespace mih;
    const uint32_t recent = gave_up_history.load(std::memory_order_relaxed) & ((1u << kHistory) - 1);
    const uint64_t count = queries.fetch_add(1, std::memory_order_relaxed);
    return popcount32(recent) >= kSkipAfter && count % kHistory != 0;
}

void MihCostModel::observe_probe(double elapsed_ns, double modelled_ns, bool done) {
    // Short calls time mostly noise; one observation moves the scale at most 10x
    // (a preempted thread on a shared machine is not a cost of probing).
    if (modelled_ns > 5000) mih::learn(probe_scale, std::min(10.0, std::max(0.1, elapsed_ns / modelled_ns)));
    const uint32_t h = gave_up_history.load(std::memory_order_relaxed);
    gave_up_history.store((h << 1) | (done ? 0u : 1u), std::memory_order_relaxed);
}

void MihCostModel::observe_scan(double elapsed_ns, double words, int64_t nq, int threads) {
    if (words * nq < 1e5) return;  // shorter scans time mostly noise
    auto bounded = [](std::atomic<double>& avg, double observed) {  // as for probe_scale
        const double now = avg.load(std::memory_order_relaxed);
        mih::learn(avg, std::min(10 * now, std::max(0.1 * now, observed)));
    };
    if (nq >= 2 * threads)
        bounded(scan_batch_ns, elapsed_ns * threads / (nq * words));
    else if (nq == 1)
        bounded(scan_single_ns, elapsed_ns / words);
}

void MihCostModel::set_workload(int64_t w) {
    // Whether probing pays depends on k (or the radius): the give-up history of
    // k = 10 says nothing about k = 100, whose queries it kept off the tables
    // (benchmarks/RESULTS.md, "Measurements behind the code").
    if (workload.exchange(w, std::memory_order_relaxed) != w) gave_up_history.store(0, std::memory_order_relaxed);
}

double MihCostModel::modelled_probe_ns(int64_t buckets, int64_t candidate_words, int64_t hits) {
    using namespace mih;
    return buckets * kProbeNs + candidate_words * kVerifyNsPerWord + hits * kHitNs;
}

double MihCostModel::scan_budget_ns(double words, int64_t nq, int threads) const {
    const bool batch = nq >= 2 * resolve_threads(threads);
    return (batch ? scan_batch_ns : scan_single_ns).load(std::memory_order_relaxed) * words * mih::budget_scale();
}

}  // namespace hashindex
