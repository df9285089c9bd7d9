// Collectors for scan hits: exact top-k and range, both ordered by (distance, id).
#pragma once
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels.h"

namespace hashindex {

// Distance reported for padding entries when k exceeds the results found.
constexpr int32_t kPadDistance = std::numeric_limits<int32_t>::max();
constexpr int64_t kPadId = -1;

struct Hit {
    int32_t distance;
    int64_t id;
    bool operator<(const Hit& o) const { return distance != o.distance ? distance < o.distance : id < o.id; }
};

// Keeps every hit that can still be among the k best by (distance, id).
// Hits within the threshold are appended to a buffer; when it fills, an
// nth_element keeps the k best and the threshold drops to the k-th distance.
// Distances are small integers, so after a few thousand codes almost nothing
// passes the SIMD compare and the buffer is rarely touched: this replaces a
// heap update per code with one vector compare per 8 codes.
struct TopKSink : HitSink {
    TopKSink(int64_t k, int64_t valid_slots, const int64_t* slot_ids);
    // Appends the k best in order to (dist, ids), padding with kPadDistance / kPadId.
    void write_sorted(int32_t* dist, int64_t* ids);
    // Moves another sink's hits (same query, other database range) into this one.
    void absorb(TopKSink& other);

    int64_t k;
    int64_t valid_slots;
    const int64_t* slot_ids;
    std::vector<Hit> hits;
    std::size_t capacity;

private:
    void shrink_to_k();
    static void on_hits_cb(HitSink* self, int64_t first_slot, uint32_t lanes, const uint32_t* dist);
};

// Keeps every hit with distance <= radius.
struct RangeSink : HitSink {
    RangeSink(int32_t radius, int64_t valid_slots, const int64_t* slot_ids);
    void absorb(RangeSink& other);
    void sort();

    int64_t valid_slots;
    const int64_t* slot_ids;
    std::vector<Hit> hits;

private:
    static void on_hits_cb(HitSink* self, int64_t first_slot, uint32_t lanes, const uint32_t* dist);
};

}  // namespace hashindex
