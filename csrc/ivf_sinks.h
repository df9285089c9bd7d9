// The coarse search's sink of IVFIndex (ivf_coarse.cpp): a query's nearest lists. A query's results
// across its lists are a CountingSink (results.h).
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels.h"
#include "results.h"

namespace hashindex::ivf {

// Below this many probes the coarse search keeps its nearest lists in NearestLists; from it on it
// counts its hits per distance (CountingSink): at nprobe 64 the insertions' moves were most of the
// coarse search (CHANGELOG.md, "Binary IVF").
constexpr int kCountedProbes = 16;

// The coarse search's sink: a query's nprobe nearest centroids, kept sorted by (distance, list) in
// place. Small k is the rule here, so an insertion beats TopKSink's buffer and selection, and the
// threshold is tight from the first k lists on (TopKSink's bookkeeping was a large share of a
// search at nprobe 4: CHANGELOG.md, "Binary IVF"). Each is one integer, distance above list, so that
// an insertion compares and moves words.
struct NearestLists : HitSink {
    uint64_t best[kCountedProbes];  // ascending
    int size = 0;
    int k;
    int64_t nlist;  // lanes past it are the last block's padding

    NearestLists(int64_t k_, int64_t nlist_) : HitSink{std::numeric_limits<int32_t>::max(), &NearestLists::cb},
                                               k(static_cast<int>(k_)), nlist(nlist_) {}
    Hit hit(int r) const {
        return Hit{static_cast<int32_t>(best[r] >> 32), static_cast<int64_t>(best[r] & 0xffffffffu)};
    }
    // A scan offers lists in increasing order, so one at the k-th distance comes after the k held
    // and cannot enter: the kernel is asked for lanes below it (the ties at a few bits' spread of
    // distances were most of the offers).
    void offer(uint64_t key) {
        int i = size;
        if (size == k) {
            if (key >= best[k - 1]) return;
            i = k - 1;
        } else {
            ++size;
        }
        for (; i > 0 && key < best[i - 1]; --i) best[i] = best[i - 1];
        best[i] = key;
    }
    static void cb(HitSink* self, int64_t first, uint32_t lanes, const uint32_t* dist) {
        auto* s = static_cast<NearestLists*>(self);
        for (; lanes; lanes &= lanes - 1) {
            const int l = __builtin_ctz(lanes);
            if (first + l < s->nlist) s->offer(uint64_t{dist[l]} << 32 | static_cast<uint64_t>(first + l));
        }
        s->tighten();
    }
    // Once a block's lanes are in (a load of the row's last just after its store, offer by offer,
    // waited on the store).
    void tighten() {
        if (size == k) threshold = static_cast<int32_t>(best[k - 1] >> 32) - 1;
    }
    void absorb(NearestLists& other) {
        for (int r = 0; r < other.size; ++r) offer(other.best[r]);
        tighten();
    }
};

}  // namespace hashindex::ivf
