// The cost model of multi-index hashing (mih_cost.h): the fixed model, its learned scales, and the
// budget a query may spend probing before it is handed to the scan.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>

#include "errors.h"
#include "mih_cost.h"
#include "mih_index.h"
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

double binomial(int n, int r) {
    double c = 1;
    for (int i = 1; i <= r; ++i) c = c * (n - r + i) / i;
    return c;
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
    HX_CHECK(scale > 0, "scale must be > 0");
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
    // k = 10 says nothing about k = 100 (10M clustered codes: it kept 95 % of
    // k = 100 queries off the tables, at +18 % against a scan).
    if (workload.exchange(w, std::memory_order_relaxed) != w) gave_up_history.store(0, std::memory_order_relaxed);
}

double MihCostModel::modelled_probe_ns(int64_t buckets, int64_t candidate_words, int64_t hits) {
    using namespace mih;
    return buckets * kProbeNs + candidate_words * kVerifyNsPerWord + hits * kHitNs;
}

// Modelled cost (ns, before calibration) of probing table t at radius rho and
// every later (radius, table) step until the pigeonhole bound exceeds
// `target`. Checked before each step, so a query that cannot pay gives up
// before spending, not after. (Predicting with the k-th distance found so far
// alone gave up on queries that pay: 10M uniform 64-bit, k = 10, went from
// 34x faiss to 9x; hence the optimistic estimate in target_distance.)
double MIHIndex::predicted_cost(int rho, int t, int64_t target) const {
    const int m = static_cast<int>(tables_.size());
    const double n = static_cast<double>(main_.size());
    double cost = 0;
    for (int r = rho;; ++r) {
        for (int u = (r == rho ? t : 0); u < m; ++u) {
            const Table& T = tables_[static_cast<std::size_t>(u)];
            if (r > T.bits) return cost;
            const double occupancy = T.bits >= 63 ? 0.0 : n / std::ldexp(1.0, T.bits);
            cost += mih::binomial(T.bits, r) * (mih::kProbeNs + occupancy * words_ * mih::kVerifyNsPerWord);
            if (target < 0 || r >= T.bits || static_cast<int64_t>(m) * r + u + 1 > target) return cost;
        }
    }
}

double MIHIndex::scan_budget_ns(int64_t nq, int threads) const {
    const bool batch = nq >= 2 * resolve_threads(threads);
    const double per_word = (batch ? cost_.scan_batch_ns : cost_.scan_single_ns).load(std::memory_order_relaxed);
    return per_word * static_cast<double>(main_.size()) * words_ * mih::budget_scale();
}

}  // namespace hashindex
