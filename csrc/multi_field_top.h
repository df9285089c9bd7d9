// MultiFieldIndex's internals shared by its scan (multi_field_index.cpp) and its table probe
// (multi_field_mih.cpp): one query's k best, so both rank and apply the group rules the same way.
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>
#include <unordered_map>
#include <vector>

#include "multi_field_index.h"
#include "results.h"

namespace hashindex {

inline constexpr double kInf = std::numeric_limits<double>::infinity();
struct WeightedHit {
    double distance;
    int64_t id, group;
    bool operator<(const WeightedHit& o) const { return distance != o.distance ? distance < o.distance : id < o.id; }
};

// The k best by (distance, id); with one_per_group, only each group's best.
// A group's item evicted by k better ones can come back only as a better item
// of that group, since the bar (the k-th best distance) only falls: so the result is exact.
// Kept as a max-heap (the worst on top): a std::set's node per offer was a tenth of a single
// query's time over a few thousand items (CHANGELOG.md, "Multi-field searches of one query").
struct MultiFieldIndex::Top {
    int64_t k;
    bool one_per_group;
    std::vector<WeightedHit> heap;  // at most k, the worst first
    std::unordered_map<int64_t, WeightedHit> by_group;

    bool full() const { return static_cast<int64_t>(heap.size()) >= k; }
    double bar() const { return full() ? heap.front().distance : kInf; }
    const WeightedHit& worst() const { return heap.front(); }

    void offer(const WeightedHit& h) {
        if (full() && !(h < heap.front())) return;
        if (one_per_group && h.group != kNoGroup) {
            auto it = by_group.find(h.group);
            if (it != by_group.end()) {  // the group's item gives way to a better one, in place
                if (!(h < it->second)) return;
                const int64_t old = it->second.id;
                for (WeightedHit& held : heap)
                    if (held.id == old) held = h;  // ids are unique
                std::make_heap(heap.begin(), heap.end());
                it->second = h;
                return;
            }
            by_group.emplace(h.group, h);
        }
        if (full()) {
            std::pop_heap(heap.begin(), heap.end());
            if (one_per_group && heap.back().group != kNoGroup) by_group.erase(heap.back().group);
            heap.back() = h;
        } else {
            heap.push_back(h);
        }
        std::push_heap(heap.begin(), heap.end());
    }
    void absorb(const Top& other) {
        for (const WeightedHit& h : other.heap) offer(h);
    }
    void write(double* dist, int64_t* ids) const {
        std::vector<WeightedHit> best(heap);
        std::sort(best.begin(), best.end());
        int64_t i = 0;
        for (const WeightedHit& h : best) {
            dist[i] = h.distance;
            ids[i++] = h.id;
        }
        for (; i < k; ++i) {
            dist[i] = kInf;
            ids[i] = kPadId;
        }
    }
};


}  // namespace hashindex
