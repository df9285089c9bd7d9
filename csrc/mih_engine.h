// The multi-index hashing engine (Norouzi, Punjani & Fleet, CVPR 2012 / TPAMI 2014) that MIHIndex
// and MultiFieldIndex(mih=True) share: substring tables over a snapshot of the items, kept while
// few items change; the driver that probes where the cost model (mih_cost.h) expects it to pay and
// hands the rest to one timed scan; and the calibration that sets the model on this machine. What
// each kind adds is its probe loop: the pigeonhole bound over one field's integer distance
// (mih_index.cpp), or its weighted sum over several fields (multi_field_mih.cpp).
#pragma once
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "items.h"
#include "mih_cost.h"
#include "parallel.h"
#include "probe_util.h"
#include "scan.h"

namespace hashindex {

namespace mih {
// Bits [lo, lo + len) of a code held as 64-bit words (a substring key of one table).
inline uint64_t extract_bits(const uint64_t* words, int lo, int len) {
    const int wi = lo >> 6, off = lo & 63;
    uint64_t v = words[wi] >> off;
    if (off && off + len > 64) v |= words[wi + 1] << (64 - off);
    return len == 64 ? v : v & ((uint64_t{1} << len) - 1);
}
}  // namespace mih

// One table: the items of slots [0, built) by the key of bits [bit_lo, bit_lo + bits) of a field.
struct SubTable {
    int field = 0, bit_lo = 0, bits = 0;
    std::vector<uint64_t> keys;     // the keys present, ascending
    std::vector<uint32_t> offsets;  // direct: 2^bits + 1, by key; else one per key present, + 1
    std::vector<uint32_t> slots;    // bucket after bucket, each in id order (at the build)
    std::vector<uint64_t> codes;    // optional: the field's codes in `slots` order, a bucket read in one pass
    // Substrings up to this long index their offsets by key; longer ones (a requested small m)
    // search the sorted keys.
    static constexpr int kMaxDirectBits = 20;
    void lookup(uint64_t key, uint32_t& begin, uint32_t& end) const {
        if (bits <= kMaxDirectBits) {
            begin = offsets[key];
            end = offsets[key + 1];
            return;
        }
        const auto it = std::lower_bound(keys.begin(), keys.end(), key);
        const auto i = static_cast<std::size_t>(it - keys.begin());
        begin = end = 0;
        if (it != keys.end() && *it == key) begin = offsets[i], end = offsets[i + 1];
    }
};

// Tables of slots [0, built) of every field. Slots moved by a removal since the build are dirty:
// the tables still list them under their old codes, so probes skip them, and a search checks them
// apart, with the items added since the build (unindexed).
struct Tables {
    int64_t built = 0;
    std::vector<SubTable> subs;
    // Per field (when asked for), the codes of slots [0, built) row by row: a candidate's code is
    // then one or two cache lines, where the blocked layout spreads a 1024-bit code over 16.
    std::vector<std::vector<uint64_t>> rows;
    // Per field (when asked for), a 64-bit hash of every code, sorted: how many items may share
    // the query's code exactly (collisions only overcount), to price a bucket that ties end early.
    std::vector<std::vector<uint64_t>> hashes;
    std::vector<uint8_t> dirty;        // per slot < built
    std::vector<int64_t> dirty_slots;  // the slots marked, each once

    bool indexed(int64_t slot, int64_t n) const { return slot < n && !dirty[static_cast<std::size_t>(slot)]; }
    int64_t unindexed(int64_t n) const {
        return std::max<int64_t>(0, n - built) + static_cast<int64_t>(dirty_slots.size());
    }
    // The slots below n the tables do not hold, ascending.
    std::vector<int64_t> unindexed_slots(int64_t n) const;
    // A removal moved slot `from` into `to`: both now hold other items than at the build.
    void moved(int64_t from, int64_t to);
    std::size_t memory_bytes() const;
};

struct TableSpec {
    std::vector<int> m;           // substrings per field (0: chosen from the number of items)
    bool bucket_codes = false;    // SubTable::codes
    bool rows_and_hashes = false; // Tables::rows and Tables::hashes
};

// Substrings per field of nbits bits for n items: log2(n) bits (the paper's choice), 4 to 16 bits.
// At most 16: a table's offsets (2^16 x 4 bytes = 256 KiB) stay in L2, so a probe costs a cache
// hit, not a trip to memory, and longer substrings probe far more buckets for the same
// neighbours (benchmarks/RESULTS.md, "Measurements behind the code"); for the encoder's codes
// (16-bit signatures per cell of an 8 x 8 grid) 16-bit substrings are exactly the cells.
int auto_m(int nbits, int64_t n);
// A 64-bit hash of a code (Tables::hashes).
uint64_t code_hash(const uint64_t* words, int n);
std::unique_ptr<Tables> build_tables(const Items& items, const TableSpec& spec);
// Whether to rebuild: there are items but no tables, or the unindexed items outgrew 1/64 of the
// index (each query checks them one by one; a rebuild's O(N) is amortised over N/64 changes).
bool tables_stale(const Tables* tables, int64_t n);

// Per-query work of the driver below.
struct ProbeOutcome {
    bool done = false;   // proved its results (else handed to the scan)
    double modelled = 0; // the fixed model's ns for the work it did
};

// Answers nq queries: probe(q, budget_ns, stats) for each unless the cost model skips it, timed
// for the model; the queries handed back go to one scan, rescan(queries), timed too. marks: the
// slots a probe marks (allocated before the clock starts: a first probe's page-faulting
// allocation is not a cost of probing).
template <class Probe, class Rescan>
void probe_or_scan(MihCostModel& cost, int64_t nq, int threads, double scan_words, int64_t marks, MihStats& stats,
                   Probe probe, Rescan rescan) {
    const int nthreads = resolve_threads(threads);
    stats.probe_scale = cost.probe_scale.load(std::memory_order_relaxed);
    stats.scan_ns_per_word =
        (nq >= 2 * nthreads ? cost.scan_batch_ns : cost.scan_single_ns).load(std::memory_order_relaxed);
    const double budget = cost.scan_budget_ns(scan_words, nq, threads);
    std::vector<int64_t> back;
    std::mutex mu;
    parallel_for(nthreads, nq, [&](int64_t q) {
        MihStats st;
        ProbeOutcome out;
        if (!cost.skip_probe()) {
            thread_stamps().next(static_cast<std::size_t>(marks));
            const double t0 = mih::now_ns();
            out = probe(q, budget, st);
            cost.observe_probe(mih::now_ns() - t0, out.modelled, out.done);
        }
        std::lock_guard<std::mutex> g(mu);
        stats.buckets += st.buckets;
        stats.candidates += st.candidates;
        stats.hits += st.hits;
        stats.max_radius = std::max(stats.max_radius, st.max_radius);
        (out.done ? stats.by_mih : stats.by_scan) += 1;
        if (!out.done) back.push_back(q);
    });
    if (back.empty()) return;
    std::sort(back.begin(), back.end());
    const double t0 = mih::now_ns();
    rescan(back);
    cost.observe_scan(mih::now_ns() - t0, scan_words, static_cast<int64_t>(back.size()), nthreads);
}

// The fixed model's constants were fitted on one VM, and scales learned over the first queries
// came too late: on another host the first queries of a fresh index were scanned where probing
// answers several times faster (benchmarks/RESULTS.md, "Measurements behind the code").
// So each build (and load) times what this index costs here: scan(count) scans the first `count`
// of calibration_queries(n) stored codes as queries, probe(i, budget, stats, kth) probes the i-th
// and sets kth to its k-th distance over the uniform estimate when it proved it. Queries near
// stored codes are what retrieval asks. Small indexes skip it (their scans take microseconds).
inline int64_t calibration_queries() { return std::max<int64_t>(8, 2 * resolve_threads(0)); }
// The slot of the i-th calibration query among n items.
inline int64_t calibration_slot(int64_t i, int64_t n) { return i * (n / calibration_queries()); }
template <class Scan, class Probe>
void calibrate(MihCostModel& cost, int64_t n, double words, int64_t marks, Scan scan, Probe probe) {
    if (n < (int64_t{1} << 14)) return;
    const int threads = resolve_threads(0);
    const int64_t nq = calibration_queries();
    const double single = mih::fastest_ns([&] { scan(1); });
    cost.scan_single_ns.store(single / words, std::memory_order_relaxed);
    cost.scan_batch_ns.store(mih::fastest_ns([&] { scan(nq); }) * threads / (static_cast<double>(nq) * words),
                             std::memory_order_relaxed);
    // Every worker's probe marks (4 bytes per item) are allocated now, not in some later query's
    // time, where the first query of each thread paid for them
    // (benchmarks/RESULTS.md, "Measurements behind the code"): one task per thread, each waiting
    // (at most 20 ms) until all have started, so that each thread takes one.
    std::atomic<int> started{0};
    parallel_for(threads, threads, [&](int64_t) {
        thread_stamps().next(static_cast<std::size_t>(marks));
        started.fetch_add(1);
        const double until = mih::now_ns() + 2e7;
        while (started.load() < threads && mih::now_ns() < until) std::this_thread::yield();
    });
    // Forget the last build's scale: if no probe below finds k results, the uniform estimate holds.
    cost.kth_scale.store(1.0, std::memory_order_relaxed);
    std::vector<double> ratios, kth;
    for (int64_t i = 0; i < nq; ++i) {
        MihStats st;
        double kth_ratio = -1;
        const double t0 = mih::now_ns();
        // Bounded: where neighbours are far a probe to the end may verify every item, far longer than
        // a scan (benchmarks/RESULTS.md, "Measurements behind the code"); the ratio needs only some work.
        const ProbeOutcome out = probe(i, 2 * single, st, kth_ratio);
        const double elapsed = mih::now_ns() - t0;
        if (out.modelled > 0) ratios.push_back(elapsed / out.modelled);
        if (kth_ratio >= 0) kth.push_back(kth_ratio);
    }
    auto median = [](std::vector<double>& v) {
        std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2), v.end());
        return v[v.size() / 2];
    };
    // The pricing's target: with the uniform estimate, clustered queries (whose k-th distance lies far
    // below uniform codes') were priced to a bound they never need and handed to the scan after
    // one bucket (benchmarks/RESULTS.md, "Measurements behind the code").
    if (!kth.empty()) cost.kth_scale.store(std::clamp(median(kth), 0.05, 1.0), std::memory_order_relaxed);
    if (!ratios.empty()) cost.probe_scale.store(std::clamp(median(ratios), 0.1, 10.0), std::memory_order_relaxed);
}

}  // namespace hashindex
