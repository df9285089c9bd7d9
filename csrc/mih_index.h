// Exact multi-index hashing (Norouzi, Punjani & Fleet, CVPR 2012 / TPAMI 2014).
//
// Codes are cut into m substrings, one hash table per substring. If two codes
// differ in d bits, some substring differs in at most floor(d / m) bits
// (pigeonhole). A query probes every table at substring radius 0, 1, 2, ...;
// after table t is done at radius rho, any code not yet seen is at least
// m * rho + t + 1 away, so the search stops as soon as the k-th best distance
// found is below that bound: the answer is exact, ties by id included.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "flat_index.h"
#include "items.h"
#include "mih_cost.h"

namespace hashindex {

struct Tables;

class MIHIndex : public IndexCore {
public:
    // m = 0: chosen from the number of codes, and re-chosen at each rebuild.
    MIHIndex(int nbits, int m);
    MIHIndex(MIHIndex&& other) noexcept;
    ~MIHIndex();

    int nbits() const { return code_size() * 8; }
    int code_size() const { return items_.store(0).code_size(); }
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
    void reset();
    std::size_t memory_bytes() const;

    std::vector<uint8_t> to_bytes() const;
    static MIHIndex from_bytes(const uint8_t* data, std::size_t size, const std::string& source);

private:
    void maybe_rebuild();
    // Probes the tables for one query into its sink; false if the cost model gave up on it.
    template <class Sink>
    bool probe(const uint64_t* q, Sink& sink, double budget_ns, MihStats& st) const;
    double predicted_cost(int rho, int t, int64_t target) const;
    // Every query's hits, sorted: probing where the cost model expects it to pay, then the items
    // the tables do not hold; one batched scan of every item for the rest. make(n, slot_ids, pass)
    // builds a sink.
    template <class Sink, class Make>
    std::vector<std::vector<Hit>> find(const uint8_t* queries, int64_t nq, int threads, int64_t workload,
                                       const uint8_t* pass, MihStats& stats, Make make) const;

    int m_requested_;
    std::unique_ptr<Tables> tables_;
    mutable MihCostModel cost_;
};

}  // namespace hashindex
