// MultiFieldIndex's internals shared by its scan (multi_field_index.cpp) and its table probe
// (multi_field_mih.cpp): one query's k best, so both rank and apply the group rules the same way,
// and the substring tables.
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


// Substring tables of slots [0, built) of every field. Slots moved by a removal since the build are
// dirty: the tables still list them under their old codes, so probes skip them and every query
// checks them one by one, as it scans the items added since the build.
struct MultiFieldIndex::Tables {
    struct Sub {
        int field = 0, bit_lo = 0, bits = 0;
        std::vector<uint32_t> offsets;  // 2^bits + 1: key k's bucket is slots[offsets[k], offsets[k + 1])
        std::vector<uint32_t> slots;    // each bucket in id order (at the build)
        std::vector<uint32_t> keys;     // the keys present, ascending
    };
    int64_t built = 0;
    std::vector<Sub> subs;
    // Per field, the codes of slots [0, built) row by row: a candidate's code is then one or two
    // cache lines, where the blocked layout spreads a 1024-bit code over 16.
    std::vector<std::vector<uint64_t>> rows;
    std::vector<uint8_t> dirty;       // per slot < built
    std::vector<int64_t> dirty_slots;  // the slots marked, each once
    // Per field, a 64-bit hash of every code, sorted: how many items may share the query's code
    // exactly (hash collisions only overcount), to price a bucket that ties will end early.
    std::vector<std::vector<uint64_t>> hashes;

    std::size_t memory_bytes() const {
        std::size_t total = dirty.capacity() + dirty_slots.capacity() * sizeof(int64_t);
        for (const Sub& sub : subs)
            total += (sub.offsets.capacity() + sub.slots.capacity() + sub.keys.capacity()) * sizeof(uint32_t);
        for (const auto& r : rows) total += r.capacity() * sizeof(uint64_t);
        for (const auto& h : hashes) total += h.capacity() * sizeof(uint64_t);
        return total;
    }
};

}  // namespace hashindex
