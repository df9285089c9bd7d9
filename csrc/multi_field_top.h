// MultiFieldIndex's internals shared by its scan (multi_field_index.cpp) and its table probe
// (multi_field_mih.cpp): one query's k best, so both rank and apply the group rules the same way.
#pragma once
#include <cstdint>
#include <iterator>
#include <limits>
#include <set>
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
struct MultiFieldIndex::Top {
    int64_t k;
    bool one_per_group;
    std::set<WeightedHit> best;
    std::unordered_map<int64_t, WeightedHit> by_group;

    bool full() const { return static_cast<int64_t>(best.size()) >= k; }
    double bar() const { return static_cast<int64_t>(best.size()) < k ? kInf : best.rbegin()->distance; }

    void offer(const WeightedHit& h) {
        if (static_cast<int64_t>(best.size()) >= k && !(h < *best.rbegin())) return;
        const bool grouped = one_per_group && h.group != kNoGroup;
        if (grouped) {
            auto it = by_group.find(h.group);
            if (it != by_group.end()) {
                if (!(h < it->second)) return;
                best.erase(it->second);
                it->second = h;
                best.insert(h);
                return;
            }
            by_group.emplace(h.group, h);
        }
        best.insert(h);
        if (static_cast<int64_t>(best.size()) > k) {
            auto last = std::prev(best.end());
            if (one_per_group && last->group != kNoGroup) by_group.erase(last->group);
            best.erase(last);
        }
    }
    void absorb(const Top& other) {
        for (const WeightedHit& h : other.best) offer(h);
    }
    void write(double* dist, int64_t* ids) const {
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
