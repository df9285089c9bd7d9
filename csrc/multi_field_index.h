// Items with several code fields (e.g. the normal and abnormal anatomy codes of
// one MRI slice) and an optional group id (the patient), searched exactly by
// one field or by a weighted sum of per-field Hamming distances, with group
// constraints applied inside the scan so that k results come back when they exist.
//
// With mih, each field is also cut into substrings with one table each (multi-index
// hashing, Norouzi et al. 2012) and a query may probe them instead of scanning
// (multi_field_mih.cpp). The pigeonhole bound generalises to the weighted sum: once
// table t of field f has been probed to radius r_t, every item not yet seen differs
// in at least r_t + 1 bits of that substring, so its distance is at least
// sum_f w_f * sum_{t in f} (r_t + 1). Probing stops when the k-th best is below that
// bound; group rules and filters only drop candidates, which leaves it exact.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "id_filter.h"
#include "items.h"
#include "mih_cost.h"

namespace hashindex {

struct Tables;

struct FieldQuery {
    const uint8_t* rows = nullptr;  // nq rows of the field's code size; null when its weight is 0
    double weight = 0.0;
};

class MultiFieldIndex : public IndexCore {
public:
    // mih: keep substring tables for probing (about 4 bytes per substring and a row-major copy
    // of the codes per item; rebuilt as MIHIndex rebuilds, on load too).
    MultiFieldIndex(std::vector<std::string> names, std::vector<int> nbits, bool mih = false);
    MultiFieldIndex(MultiFieldIndex&& other) noexcept;
    ~MultiFieldIndex();

    int nfields() const { return items_.nfields(); }
    const std::vector<std::string>& names() const { return names_; }
    const std::vector<int>& nbits() const { return nbits_; }
    int code_size(int field) const { return items_.store(field).code_size(); }
    bool mih() const { return mih_; }

    // fields[f] holds n rows of field f. ids / groups may be null (default ids; no group).
    // Groups are >= 0, or kNoGroup; the Python layer admits only >= 0 from users.
    void add(const std::vector<const uint8_t*>& fields, int64_t n, const int64_t* ids, const int64_t* groups);
    // distances: weighted sums (double), padded with +inf; ids padded with -1.
    // exclude_groups (nullable): per query, a group whose items are skipped (kNoGroup: none).
    // one_per_group: at most one result per group (its best); items without a group always count.
    // filter: only allowed (or all but denied) ids, applied with the group rules inside the scan.
    void search(const std::vector<FieldQuery>& queries, int64_t nq, int64_t k, const int64_t* exclude_groups,
                bool one_per_group, int threads, double* distances, int64_t* ids, const IdFilter& filter = {},
                MihStats* stats = nullptr) const;
    void remove(const int64_t* ids, int64_t n);
    void get(int field, const int64_t* ids, int64_t n, uint8_t* out) const;
    void get_groups(const int64_t* ids, int64_t n, int64_t* out) const;
    void reset();

    std::vector<uint8_t> to_bytes() const;
    static MultiFieldIndex from_bytes(const uint8_t* data, std::size_t size, const std::string& source);
    // As FlatIndex::from_image: codes, ids and groups used in place from a mapped file (format 2).
    static MultiFieldIndex from_image(const uint8_t* data, std::size_t size, const std::string& source,
                                      std::shared_ptr<const void> keep, bool verify);
    std::size_t memory_bytes() const;

    // One query's k best (multi_field_top.h), named here for the scan's sinks.
    struct Top;
    // What a search asks (qwords: per field, nq rows of words; empty when unused), in one place.
    struct Ask {
        const std::vector<std::vector<uint64_t>>& qwords;
        const std::vector<FieldQuery>& queries;
        int64_t k;
        const int64_t* exclude_groups;
        bool one_per_group;
        const uint8_t* pass;
        int64_t exclude(int64_t q) const { return exclude_groups ? exclude_groups[q] : kNoGroup; }
    };

private:
    static constexpr uint32_t kMihFlag = 4;  // format 2's flags, beside Items::flags
    static MultiFieldIndex from_v1(PayloadReader& r, std::vector<std::string> names, std::vector<int> nbits,
                                   uint64_t n, int64_t next_id);
    // Queries [q0, q1) against items [slot_begin, slot_end); tops[i] collects query q0 + i.
    void scan_range(const Ask& ask, int64_t q0, int64_t q1, int64_t slot_begin, int64_t slot_end, Top* tops) const;
    // The exhaustive search of nq queries.
    void scan_search(const Ask& ask, int64_t nq, int threads, double* distances, int64_t* ids) const;

    // Substring tables (multi_field_mih.cpp); the caller holds the lock.
    void maybe_rebuild_tables();
    // Probing where the cost model expects it to pay, one scan for the queries it hands back.
    void search_tables(const Ask& ask, int64_t nq, int threads, double* distances, int64_t* ids, MihStats& stats) const;
    // Offers the items the tables do not hold (added or moved since the build) to a query's Top.
    void offer_unindexed(const Ask& ask, int64_t q, Top& top) const;
    // Probes query q; false if the cost model gave up (then it must be scanned).
    bool probe(const Ask& ask, int64_t q, Top& top, double budget_ns, MihStats& st) const;
    // Code words per item of the fields a query asks for (weight > 0).
    int active_words(const std::vector<FieldQuery>& queries) const;

    std::vector<std::string> names_;
    std::vector<int> nbits_;
    bool mih_ = false;
    std::unique_ptr<Tables> tables_;
    mutable MihCostModel cost_;
};

}  // namespace hashindex
