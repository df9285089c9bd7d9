#include "results.h"

#include <algorithm>

namespace hashindex {

namespace {
// Buffer slack above k: larger means fewer shrinks but a threshold that starts
// dropping later. With 3k (at least 64) a k = 10 query over 200k random
// 64-bit codes takes ~360 hits and 6 shrinks (simulated), a few microseconds
// against a scan of tens.
std::size_t buffer_capacity(int64_t k) {
    const int64_t c = 3 * k;
    return static_cast<std::size_t>(c < 64 ? 64 : c);
}

std::vector<Hit> with_ids(const std::vector<SlotHit>& hits, const int64_t* slot_ids) {
    std::vector<Hit> out;
    out.reserve(hits.size());
    for (const SlotHit& h : hits) out.push_back(Hit{h.distance, slot_id(slot_ids, h.slot)});
    return out;
}
}  // namespace

TopKSink::TopKSink(int64_t k_, int64_t valid_slots_, const int64_t* slot_ids_, const uint8_t* alive_)
    : HitSink{std::numeric_limits<int32_t>::max(), &TopKSink::on_hits_cb},
      k(k_), valid_slots(valid_slots_), slot_ids(slot_ids_), alive(alive_), capacity(buffer_capacity(k_)) {
    hits.reserve(capacity + kBlock);
}

// Each hit is written field by field into the buffer: a SlotHit{d, slot} pushed was assembled on the
// stack and copied whole while its two stores were in flight, a wait on every hit (CHANGELOG.md,
// "Scan hits").
void TopKSink::on_hits_cb(HitSink* self, int64_t first_slot, uint32_t lanes, const uint32_t* dist) {
    auto* s = static_cast<TopKSink*>(self);
    const int64_t valid = s->valid_slots;
    const uint8_t* alive = s->alive;
    for (; lanes; lanes &= lanes - 1) {
        const int lane = __builtin_ctz(lanes);
        const int64_t slot = first_slot + lane;
        const auto d = static_cast<int32_t>(dist[lane]);
        if (slot >= valid || d > s->threshold || (alive && !alive[slot])) continue;
        SlotHit& h = s->hits.emplace_back();
        h.distance = d;
        h.slot = slot;
        if (s->hits.size() >= s->capacity) s->shrink();
    }
}

// Drops to the k-th smallest distance T and keeps every hit with d <= T: the
// ties at T stay, since which of them are among the k best depends on ids.
// Only when ties fill half the buffer are ids looked up to cut to exactly k.
void TopKSink::shrink() {
    if (static_cast<int64_t>(hits.size()) < k) return;
    auto by_distance = [](const SlotHit& a, const SlotHit& b) { return a.distance < b.distance; };
    std::nth_element(hits.begin(), hits.begin() + (k - 1), hits.end(), by_distance);
    const int32_t t = hits[static_cast<std::size_t>(k - 1)].distance;
    threshold = t;
    hits.erase(std::partition(hits.begin(), hits.end(), [t](const SlotHit& h) { return h.distance <= t; }),
               hits.end());
    if (hits.size() * 2 < capacity) return;
    auto by_distance_id = [this](const SlotHit& a, const SlotHit& b) {
        return Hit{a.distance, slot_id(slot_ids, a.slot)} < Hit{b.distance, slot_id(slot_ids, b.slot)};
    };
    std::nth_element(hits.begin(), hits.begin() + (k - 1), hits.end(), by_distance_id);
    hits.resize(static_cast<std::size_t>(k));
}

std::vector<Hit> TopKSink::best_k() const {
    std::vector<Hit> all = with_ids(hits, slot_ids);
    sort_hits(all, k);
    return all;
}

void TopKSink::absorb(TopKSink& other) {
    hits.insert(hits.end(), other.hits.begin(), other.hits.end());
    other.hits.clear();
    threshold = std::min(threshold, other.threshold);
    shrink();
}

void sort_hits_by_count(std::vector<Hit>& hits, std::size_t want) {
    int32_t low = hits[0].distance, top = low;
    for (const Hit& h : hits) {
        low = std::min(low, h.distance);
        top = std::max(top, h.distance);
    }
    if (low < 0 || static_cast<uint64_t>(top) > 4 * uint64_t{hits.size()} + 256) {  // more distances than hits
        sort_hits_compared(hits, want);
        return;
    }
    thread_local std::vector<std::size_t> at;  // then: where each distance's hits start
    at.assign(static_cast<std::size_t>(top) + 2, 0);
    for (const Hit& h : hits) ++at[static_cast<std::size_t>(h.distance) + 1];
    auto last = static_cast<std::size_t>(top);  // the largest distance kept: the first at which want are held
    for (std::size_t d = 0; d <= static_cast<std::size_t>(top); ++d) {
        at[d + 1] += at[d];
        if (at[d + 1] >= want) {
            last = d;
            break;
        }
    }
    std::vector<Hit> out(at[last + 1]);
    for (const Hit& h : hits)
        if (static_cast<std::size_t>(h.distance) <= last) out[at[static_cast<std::size_t>(h.distance)]++] = h;
    // at[d] is now where distance d's hits end; each run is put in order of id, the last one's first
    // (want - its start) alone.
    auto by_id = [](const Hit& a, const Hit& b) { return a.id < b.id; };
    std::size_t begin = 0;
    for (std::size_t d = 0; d <= last; ++d) {
        const std::size_t end = at[d], upto = std::min(end, want);
        if (upto > begin + 1 || end > upto) {
            const auto b = out.begin() + static_cast<std::ptrdiff_t>(begin), u = out.begin() + static_cast<std::ptrdiff_t>(upto);
            if (end > upto) std::nth_element(b, u - 1, out.begin() + static_cast<std::ptrdiff_t>(end), by_id);
            std::sort(b, u, by_id);
        }
        begin = end;
    }
    out.resize(want);
    hits.swap(out);
}

void TopKSink::write_sorted(int32_t* dist, int64_t* ids) const { write_padded(best_k(), k, dist, ids); }

void merge_best_k(std::vector<Hit>& into, const std::vector<Hit>& other, int64_t k) {
    const std::size_t mid = into.size();
    into.insert(into.end(), other.begin(), other.end());
    std::inplace_merge(into.begin(), into.begin() + static_cast<std::ptrdiff_t>(mid), into.end());
    if (static_cast<int64_t>(into.size()) > k) into.resize(static_cast<std::size_t>(k));
}

void write_padded(const std::vector<Hit>& best, int64_t k, int32_t* dist, int64_t* ids) {
    for (int64_t i = 0; i < k; ++i) {
        const bool found = i < static_cast<int64_t>(best.size());
        dist[i] = found ? best[static_cast<std::size_t>(i)].distance : kPadDistance;
        ids[i] = found ? best[static_cast<std::size_t>(i)].id : kPadId;
    }
}

RangeSink::RangeSink(int32_t radius, int64_t valid_slots_, const int64_t* slot_ids_, const uint8_t* alive_)
    : HitSink{radius, &RangeSink::on_hits_cb}, valid_slots(valid_slots_), slot_ids(slot_ids_), alive(alive_) {}

void RangeSink::on_hits_cb(HitSink* self, int64_t first_slot, uint32_t lanes, const uint32_t* dist) {
    auto* s = static_cast<RangeSink*>(self);  // as TopKSink's: field by field
    const int64_t valid = s->valid_slots;
    const uint8_t* alive = s->alive;
    for (; lanes; lanes &= lanes - 1) {
        const int lane = __builtin_ctz(lanes);
        const int64_t slot = first_slot + lane;
        const auto d = static_cast<int32_t>(dist[lane]);
        if (slot >= valid || d > s->threshold || (alive && !alive[slot])) continue;
        SlotHit& h = s->hits.emplace_back();
        h.distance = d;
        h.slot = slot;
    }
}

void RangeSink::absorb(RangeSink& other) {
    hits.insert(hits.end(), other.hits.begin(), other.hits.end());
    other.hits.clear();
}

std::vector<Hit> RangeSink::sorted() const {
    std::vector<Hit> out = with_ids(hits, slot_ids);
    sort_hits(out);
    return out;
}

}  // namespace hashindex
