// The sinks of IVFIndex's searches (ivf_index.cpp): a query's results across its lists, and its
// nearest lists in the coarse search.
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels.h"
#include "results.h"

namespace hashindex::ivf {

// One query's results over the lists it probes, its k-th distance carried from list to list so that
// later lists report only what can still enter. Hits keep their list's slot until the end (an id
// looked up per hit was a cache miss per hit); ties at the k-th distance are kept, and ids looked up
// to cut them only when they fill the buffer. keep = 0: range search (every hit within the radius).
struct ListSink : HitSink {
    struct Found {
        int32_t distance;
        int64_t slot;
        const int64_t* slot_ids;
        int64_t id() const { return slot_id(slot_ids, slot); }
    };
    int64_t keep;
    const int64_t* slot_ids = nullptr;
    int64_t n = 0;
    const uint8_t* pass = nullptr;
    std::vector<Found> hits;

    ListSink(int32_t threshold, int64_t keep_) : HitSink{threshold, &ListSink::cb}, keep(keep_) {
        if (keep) hits.reserve(static_cast<std::size_t>(4 * keep + 64 + kBlock));
    }
    static void cb(HitSink* self, int64_t first, uint32_t lanes, const uint32_t* dist) {
        auto* s = static_cast<ListSink*>(self);
        for (; lanes; lanes &= lanes - 1) {
            const int l = __builtin_ctz(lanes);
            const int64_t slot = first + l;
            if (slot < s->n && !(s->pass && !s->pass[slot]))
                s->hits.push_back(Found{static_cast<int32_t>(dist[l]), slot, s->slot_ids});
        }
        // The first k hits set a threshold at once; then the buffer takes 4k + 64 between cuts.
        const int64_t limit = s->threshold == std::numeric_limits<int32_t>::max() ? s->keep : 4 * s->keep + 64;
        if (s->keep && static_cast<int64_t>(s->hits.size()) >= limit) s->cut();
    }
    void cut() {
        auto by_distance = [](const Found& a, const Found& b) { return a.distance < b.distance; };
        std::nth_element(hits.begin(), hits.begin() + (keep - 1), hits.end(), by_distance);
        const int32_t t = hits[static_cast<std::size_t>(keep - 1)].distance;
        threshold = t;
        hits.erase(std::remove_if(hits.begin(), hits.end(), [t](const Found& h) { return h.distance > t; }), hits.end());
        if (static_cast<int64_t>(hits.size()) < 2 * keep + 32) return;
        std::nth_element(hits.begin(), hits.begin() + (keep - 1), hits.end(), [](const Found& a, const Found& b) {
            return Hit{a.distance, a.id()} < Hit{b.distance, b.id()};
        });
        hits.resize(static_cast<std::size_t>(keep));  // ties at t beyond the k smallest ids go
    }
    std::vector<Hit> result() const {
        std::vector<Hit> out;
        out.reserve(hits.size());
        for (const Found& h : hits) out.push_back(Hit{h.distance, h.id()});
        std::sort(out.begin(), out.end());
        if (keep && static_cast<int64_t>(out.size()) > keep) out.resize(static_cast<std::size_t>(keep));
        return out;
    }
};

// The coarse search's sink: a query's nprobe nearest centroids, kept sorted by (distance, list) in
// place. Small k is the rule here, so an insertion beats TopKSink's buffer and selection, and the
// threshold is tight from the first k lists on (perf: TopKSink's bookkeeping was ~19 % of a
// 1M-code search at nprobe 4).
struct NearestLists : HitSink {
    std::vector<Hit> best;  // (distance, list), ascending
    std::size_t k;
    int64_t nlist;  // lanes past it are the last block's padding

    NearestLists(int64_t k_, int64_t nlist_) : HitSink{std::numeric_limits<int32_t>::max(), &NearestLists::cb},
                                               k(static_cast<std::size_t>(k_)), nlist(nlist_) {
        best.reserve(k + 1);
    }
    void offer(Hit h) {
        if (best.size() == k && !(h < best.back())) return;
        best.insert(std::upper_bound(best.begin(), best.end(), h), h);
        if (best.size() > k) best.pop_back();
        if (best.size() == k) threshold = best.back().distance;
    }
    static void cb(HitSink* self, int64_t first, uint32_t lanes, const uint32_t* dist) {
        auto* s = static_cast<NearestLists*>(self);
        for (; lanes; lanes &= lanes - 1) {
            const int l = __builtin_ctz(lanes);
            if (first + l < s->nlist) s->offer(Hit{static_cast<int32_t>(dist[l]), first + l});
        }
    }
    void absorb(NearestLists& other) {
        for (const Hit& h : other.best) offer(h);
    }
};

}  // namespace hashindex::ivf
