// Inverted-file search of binary codes (as faiss's IndexBinaryIVF): nlist binary centroids trained by
// k-majority (binary k-means: each centroid bit the majority of its members'), every code in the
// list of its nearest centroid, and a query scanning the lists of its nprobe nearest centroids.
// Approximate for nprobe < nlist, exact at nprobe = nlist. Each list is stored as an index's items
// are (items.h: the kernels' blocked layout, ids, no groups), so a probed list is scanned by the
// same SIMD kernels and driver as FlatIndex; the queries probing one list share its pass.
#pragma once
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

#include "code_store.h"
#include "flat_index.h"
#include "id_filter.h"
#include "ivf_bounds.h"
#include "items.h"

namespace hashindex {

// What a search probes beyond its nprobe: lists (nq x nprobe, -1 for none) chosen by the caller
// (faiss's search_preassigned), null for each query's nprobe nearest centroids'; and max_codes: a
// query scans its lists in probe order until it has compared that many codes, the last list in
// part, its first members in stored order (faiss's max_codes, whose lists are in the order of
// adding; ours are in order by distance to the centroid, but for the members added or moved since
// the list was last put in order); 0: no limit.
struct IvfProbe {
    const int64_t* lists = nullptr;
    int64_t max_codes = 0;
};

struct IvfStats {
    int64_t queries = 0;
    int64_t lists_probed = 0;     // (query, list) pairs probed
    int64_t codes_compared = 0;   // codes of those lists compared with the query
    int64_t lists_skipped = 0;    // pairs whose list's bound proved that none of its codes could enter
    int64_t codes_skipped = 0;    // the codes of those lists, not compared
};

// nlist centroids of n codes by k-majority: nlist distinct codes of a seeded shuffle to start; then,
// until nothing changes or `iterations` have run, each code to its nearest centroid and each
// centroid bit to its members' majority (a tie keeps the bit; an empty list takes a random code).
std::vector<uint8_t> k_majority(const uint8_t* codes, int64_t n, int code_size, int nlist, int iterations,
                                uint64_t seed);

class IVFIndex : public LockedIds {
public:
    IVFIndex(int nbits, int nlist);
    IVFIndex(IVFIndex&& other) noexcept;

    int nbits() const { return code_size_ * 8; }
    int code_size() const { return code_size_; }
    int nlist() const { return nlist_; }
    bool trained() const;
    // The nprobe a search uses when its caller names none (faiss's index.nprobe); saved with the index.
    int nprobe() const;
    void set_nprobe(int nprobe);

    // k-majority from n training codes (at least nlist); seeded, so the same codes give the same
    // centroids. Only while the index is empty.
    void train(const uint8_t* codes, int64_t n, int iterations, uint64_t seed);
    // The centroids (nlist rows), or sets them (an index trained elsewhere, e.g. faiss's).
    std::vector<uint8_t> centroids() const;
    void set_centroids(const uint8_t* rows);

    // lists (n): the list of each code, chosen by the caller (a quantizer of its own: faiss's
    // add_core); null: its nearest centroid's.
    void add(const uint8_t* codes, int64_t n, const int64_t* ids, const int64_t* lists = nullptr);
    void search(const uint8_t* queries, int64_t nq, int64_t k, int nprobe, int threads, int32_t* distances,
                int64_t* ids, IvfStats* stats, const IdFilter& filter = {}, const IvfProbe& probe = {}) const;
    RangeResult range_search(const uint8_t* queries, int64_t nq, int32_t radius, int nprobe, int threads,
                             IvfStats* stats, const IdFilter& filter = {}, const IvfProbe& probe = {}) const;
    // The list each query's codes would go to (nearest centroid), as faiss's quantizer assigns.
    std::vector<int64_t> assign(const uint8_t* codes, int64_t n) const;
    std::vector<int64_t> list_sizes() const;

    void remove(const int64_t* ids, int64_t n);
    void get(const int64_t* ids, int64_t n, uint8_t* out) const;
    void reset();  // keeps the centroids
    std::size_t memory_bytes() const;

    std::vector<uint8_t> to_bytes() const;
    static IVFIndex from_bytes(const uint8_t* data, std::size_t size, const std::string& source);
    // As FlatIndex::from_image: each list's codes (and ids) used in place from a mapped file; the
    // index's id map and each id's list are read (8 bytes an item), the codes are not.
    static IVFIndex from_image(const uint8_t* data, std::size_t size, const std::string& source,
                               std::shared_ptr<const void> keep, bool verify);

private:
    const IdMap& id_map() const override { return ids_; }
    IdMap& id_map() override { return ids_; }
    void check_trained() const;
    // Caller-chosen list numbers: each in [0, nlist), or -1 too where `none` (no list).
    void check_lists(const int64_t* lists, int64_t count, bool none) const;
    // Each query's nprobe nearest lists (by distance to the centroid, then list), row-major, and
    // their distances to the query if `distances` is given.
    std::vector<int64_t> nearest_lists(const uint64_t* qwords, int64_t nq, int nprobe, int threads,
                                       std::vector<int32_t>* distances = nullptr) const;
    // Distances of n codes (row-major words) to list l's centroid.
    std::vector<uint32_t> to_centroid(int64_t l, const uint64_t* rows, int64_t n) const;
    // Each query's distance to the centroid of each list it probes (nq x nprobe, -1 for none: 0).
    std::vector<int32_t> probe_distances(const uint64_t* qwords, int64_t nq, const std::vector<int64_t>& probes,
                                         int nprobe) const;
    // bounds_ (below): widened to hold n codes of list l from `slot` on (none while untrained); all
    // of them, from the codes.
    void widen_bounds(int64_t l, int64_t slot, const uint64_t* rows, int64_t n);
    void compute_bounds();
    // List l's bounds from its codes, after putting its members in order by distance to the centroid
    // if `order` (ivf_bounds.h); and that, if enough of them are out of order.
    void bound_list(int64_t l, bool order);
    void order_list_if_needed(int64_t l);
    // Each query's hits, sorted, in the lists of its nprobe nearest centroids (or as `probe` says): its k
    // best (keep = k, `threshold` the code's bits), or every one within `threshold` (keep = 0).
    std::vector<std::vector<Hit>> scan_lists(const uint8_t* queries, int64_t nq, int nprobe, int threads,
                                             const IdFilter& filter, int64_t keep, int32_t threshold,
                                             IvfStats& stats, const IvfProbe& probe) const;

    int code_size_, nlist_;
    int nprobe_ = 1;
    CodeStore centroids_;
    bool trained_ = false;
    std::vector<Items> lists_;
    std::vector<ivf::Bounds> bounds_;  // per list: its members' distances to its centroid
    // Every id (in no particular slot order: a removal moves the last into the hole) and, by the same
    // slot, its list: the checks and default ids of every other kind, and id -> list.
    IdMap ids_;
    std::vector<int32_t> list_by_slot_;
};

}  // namespace hashindex
