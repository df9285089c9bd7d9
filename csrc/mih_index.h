// Exact multi-index hashing (Norouzi, Punjani & Fleet, CVPR 2012 / TPAMI 2014).
//
// Codes are cut into m substrings, one hash table per substring. If two codes
// differ in d bits, some substring differs in at most floor(d / m) bits
// (pigeonhole). A query probes every table at substring radius 0, 1, 2, ...;
// after table t is done at radius rho, any code not yet seen is at least
// m * rho + t + 1 away, so the search stops as soon as the k-th best distance
// found is below that bound: the answer is exact, ties by id included.
#pragma once
#include <atomic>
#include <cstdint>
#include <shared_mutex>
#include <string>
#include <vector>

#include "code_store.h"
#include "flat_index.h"
#include "id_map.h"
#include "results.h"

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
    // The fixed model of probing work, before the learned scale.
    static double modelled_probe_ns(int64_t buckets, int64_t candidate_words, int64_t hits);
};

class MIHIndex {
public:
    // m = 0: chosen from the number of codes, and re-chosen at each rebuild.
    MIHIndex(int nbits, int m);
    MIHIndex(MIHIndex&& other) noexcept;

    int nbits() const { return nbits_; }
    int code_size() const { return nbits_ / 8; }
    int64_t size() const;
    int m() const;            // substrings in use now (0 while empty)
    int m_requested() const { return m_requested_; }

    void add(const uint8_t* codes, int64_t n, const int64_t* ids);
    // filter as in FlatIndex: inside the probe loop and the scans, so the stopping rule stays exact
    // (filtered items only leave the candidate set); a small allow list is gathered and scanned.
    void search(const uint8_t* queries, int64_t nq, int64_t k, int threads, int32_t* distances, int64_t* ids,
                MihStats* stats, const IdFilter& filter = {}) const;
    RangeResult range_search(const uint8_t* queries, int64_t nq, int32_t radius, int threads, MihStats* stats,
                             const IdFilter& filter = {}) const;
    void remove(const int64_t* ids, int64_t n);
    void get(const int64_t* ids, int64_t n, uint8_t* out) const;
    std::vector<int64_t> ids() const;
    // The first default id: one past the largest id ever added.
    int64_t next_id() const;
    bool contains(int64_t id) const;
    void reset();

    std::vector<uint8_t> to_bytes() const;
    static MIHIndex from_bytes(const uint8_t* data, std::size_t size, const std::string& source);
    // Raises the default-id counter to a saved value; false if below the largest id.
    bool restore_next_id(int64_t next_id);

private:
    struct Table {
        int bit_lo = 0, bits = 0;
        bool direct = false;            // offsets indexed by key (2^bits + 1 entries)
        std::vector<uint64_t> keys;     // else: sorted distinct keys, offsets per key
        std::vector<uint32_t> offsets;
        std::vector<uint32_t> slots;    // main slots in key order
        std::vector<uint64_t> codes;    // their codes, row-major, so a bucket is verified in one pass
        void lookup(uint64_t key, uint32_t& begin, uint32_t& end) const;
    };
    struct Query;

    int choose_m(int64_t n) const;
    // The allowed live items' codes and ids (the caller holds the lock).
    Gathered gather(const IdFilter& filter) const;
    void gather_live(std::vector<uint8_t>* rows, std::vector<int64_t>& ids) const;
    int64_t next_default_id() const;
    void rebuild();
    // Sets the cost model's scales from timed scans and probes of this index on this machine.
    void calibrate();
    void maybe_rebuild();
    // Probes for one query into its sink; false if the cost model gave up on it.
    template <class Sink>
    bool probe(const uint64_t* q, Sink& sink, double budget_ns, MihStats& st) const;
    // Probes one query if the cost model says it may pay; false if it was not
    // probed or gave up (then it must be scanned). Updates the model.
    template <class Sink>
    bool try_probe(const uint64_t* q, Sink& sink, double budget_ns, MihStats& st) const;
    double predicted_cost(int rho, int t, int64_t target) const;
    // Predicted cost (ns) of scanning one query of a batch of nq.
    double scan_budget_ns(int64_t nq, int threads) const;
    // Answers every query over the main part: probing where the cost model
    // expects it to pay, one batched scan for the rest. make() builds a sink,
    // keep(q, sink) takes query q's results.
    template <class Sink, class Make, class Keep>
    MihStats answer_main(const std::vector<uint64_t>& qwords, int64_t nq, int threads, int64_t workload, Make make,
                         Keep keep) const;

    int nbits_, words_, m_requested_;
    CodeStore main_;                 // blocked copy: the scan fallback
    IdMap main_ids_;
    std::vector<uint8_t> alive_;     // per main slot; removals are tombstones until the next rebuild
    int64_t dead_ = 0;
    std::vector<Table> tables_;
    FlatIndex tail_;                 // codes added since the last rebuild
    mutable MihCostModel cost_;
    mutable std::shared_mutex mu_;
};

}  // namespace hashindex
