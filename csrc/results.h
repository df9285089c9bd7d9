// Collectors for scan hits: exact top-k and range, both ordered by (distance, id).
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels.h"

namespace hashindex {

// Distance reported for padding entries when k exceeds the results found.
constexpr int32_t kPadDistance = std::numeric_limits<int32_t>::max();
constexpr int64_t kPadId = -1;

// The id of a slot: slot_ids[slot], or the slot itself when the index's ids are dense (null).
inline int64_t slot_id(const int64_t* slot_ids, int64_t slot) { return slot_ids ? slot_ids[slot] : slot; }

struct Hit {
    int32_t distance;
    int64_t id;
    bool operator<(const Hit& o) const { return distance != o.distance ? distance < o.distance : id < o.id; }
};

// A hit while scanning: slots, not ids, because looking an id up is a cache
// miss into an array as large as the index (it cost a quarter of a
// single-query scan of 1M codes). Ids are looked up only to break ties.
struct SlotHit {
    int32_t distance;
    int64_t slot;
};

// Keeps every hit that can still be among the k best by (distance, id).
// Hits within the threshold are appended to a buffer; when it fills, the
// threshold drops to the k-th smallest distance and hits above it go.
// Distances are small integers, so after a few thousand codes almost nothing
// passes the SIMD compare: this replaces a heap update per code with one
// vector compare per 8 codes.
struct TopKSink : HitSink {
    // alive: optional per-slot flags; slots flagged 0 (removed) are never kept.
    TopKSink(int64_t k, int64_t valid_slots, const int64_t* slot_ids, const uint8_t* alive = nullptr);
    // One candidate from outside a scan (multi-index hashing verification). Kept as push_back, where
    // the kernel's callback writes hits field by field: written in place here, MIH was slower
    // (CHANGELOG.md, "Scan hits").
    void offer(int32_t d, int64_t slot) {
        if (d > threshold || (alive && !alive[slot])) return;
        hits.push_back(SlotHit{d, slot});
        if (hits.size() >= capacity) shrink();
    }
    // True when k hits are held; then `threshold` is exactly the k-th best distance.
    bool settle() {
        if (static_cast<int64_t>(hits.size()) < k) return false;
        shrink();
        return true;
    }
    // The k best by (distance, id), ids looked up, sorted.
    std::vector<Hit> best_k() const;
    // Writes the k best in (distance, id) order, padding with kPadDistance / kPadId.
    void write_sorted(int32_t* dist, int64_t* ids) const;
    // Moves another sink's hits (same query, same store, other slot range) into this one.
    void absorb(TopKSink& other);

    int64_t k;
    int64_t valid_slots;
    const int64_t* slot_ids;
    const uint8_t* alive;
    std::vector<SlotHit> hits;
    std::size_t capacity;

private:
    void shrink();
    static void on_hits_cb(HitSink* self, int64_t first_slot, uint32_t lanes, const uint32_t* dist);
};

// A sink's hits, sorted (what the index's own merge of parts takes).
inline std::vector<Hit> hits_of(const TopKSink& sink) { return sink.best_k(); }

// Orders hits by (distance, id) and keeps the first `keep` of them (all when keep is 0). Distances
// are integers up to a code's bits, so past a few dozen hits they are placed by a count per distance,
// and only the hits of one distance are compared, by id: a comparison sort of the whole list was
// about half of an IVF search at k = 100 (CHANGELOG.md, "Sorting hits by counting").
void sort_hits_by_count(std::vector<Hit>& hits, std::size_t want);
inline void sort_hits_compared(std::vector<Hit>& hits, std::size_t want) {
    if (want < hits.size()) {
        std::nth_element(hits.begin(), hits.begin() + static_cast<std::ptrdiff_t>(want) - 1, hits.end());
        hits.resize(want);
    }
    std::sort(hits.begin(), hits.end());
}
inline void sort_hits(std::vector<Hit>& hits, int64_t keep = 0) {
    constexpr std::size_t kCounted = 64;  // below it, comparing is cheaper (and this stays inline)
    const std::size_t n = hits.size();
    const std::size_t want = keep > 0 ? std::min(n, static_cast<std::size_t>(keep)) : n;
    if (n >= kCounted)
        sort_hits_by_count(hits, want);
    else
        sort_hits_compared(hits, want);
}
// Merges sorted k-best lists (e.g. of two parts of one index) into the k best.
void merge_best_k(std::vector<Hit>& into, const std::vector<Hit>& other, int64_t k);
// Writes k results from a sorted list, padding with kPadDistance / kPadId.
void write_padded(const std::vector<Hit>& best, int64_t k, int32_t* dist, int64_t* ids);

// Keeps every hit with distance <= radius.
struct RangeSink : HitSink {
    RangeSink(int32_t radius, int64_t valid_slots, const int64_t* slot_ids, const uint8_t* alive = nullptr);
    void offer(int32_t d, int64_t slot) {
        if (d <= threshold && !(alive && !alive[slot])) hits.push_back(SlotHit{d, slot});
    }
    void absorb(RangeSink& other);
    // The hits with ids, sorted by (distance, id).
    std::vector<Hit> sorted() const;

    int64_t valid_slots;
    const int64_t* slot_ids;
    const uint8_t* alive;
    std::vector<SlotHit> hits;

private:
    static void on_hits_cb(HitSink* self, int64_t first_slot, uint32_t lanes, const uint32_t* dist);
};
inline std::vector<Hit> hits_of(const RangeSink& sink) { return sink.sorted(); }

// Every distance of one query, written into its row of a matrix by slot (the threshold, the code's
// bits, reports every lane): no buffer of hits to copy from (hashindex.hamming_distances).
struct RowSink : HitSink {
    RowSink(int32_t nbits, int32_t* row_, int64_t n_) : HitSink{nbits, &RowSink::on_hits_cb}, row(row_), n(n_) {}
    void absorb(RowSink&) {}  // parts of a split scan write other slots of the same row
    int32_t* row;
    int64_t n;

private:
    static void on_hits_cb(HitSink* self, int64_t first_slot, uint32_t lanes, const uint32_t* dist) {
        auto* s = static_cast<RowSink*>(self);
        for (; lanes; lanes &= lanes - 1) {
            const int lane = __builtin_ctz(lanes);
            if (first_slot + lane < s->n) s->row[first_slot + lane] = static_cast<int32_t>(dist[lane]);
        }
    }
};


}  // namespace hashindex
