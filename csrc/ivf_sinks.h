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
// later lists report only what can still enter. Distances are small integers, so the sink counts its
// hits per distance and lowers the threshold to the k-th distance the moment a hit allows it: no
// selection pass while scanning, and no hit above it is kept (buffering hits and selecting the k-th
// when the buffer filled cost a third of a search at nprobe 1 on clustered codes: CHANGELOG.md,
// "Binary IVF"). Hits keep their list's slot until the end (an id looked
// up per hit was a cache miss per hit); ids are looked up only to cut ties at the k-th distance.
// keep = 0: range search (every hit within the radius).
struct ListSink : HitSink {
    struct Found {
        int32_t distance;
        int64_t slot;
        const int64_t* slot_ids;
        int64_t id() const { return slot_id(slot_ids, slot); }
    };
    // The buffers of sinks gone, kept per thread for the sinks to come: a search makes a sink per
    // query, and making their buffers anew (a hit buffer is past glibc's per-thread cache) was a
    // large share of a search at nprobe 1 (CHANGELOG.md, "Binary IVF").
    struct Spare {
        std::vector<Found> hits;
        std::vector<int32_t> count;
        std::vector<uint64_t> occupied;
    };
    // At most this many, none larger than this (a range search's buffer may hold millions of hits):
    // a thread keeps about 1 MB for 256-bit codes and k = 10, 10 MB at the very most.
    static constexpr std::size_t kSpares = 256, kSpareHits = 1024, kSpareCounts = 4097;
    static std::vector<Spare>& spares() {
        static thread_local std::vector<Spare> spare;
        return spare;
    }
    int64_t keep;
    const int64_t* slot_ids = nullptr;
    int64_t n = 0;
    const uint8_t* pass = nullptr;
    std::vector<Found> hits;        // those above the threshold go at the next tidy()
    std::vector<int32_t> count;     // hits held per distance (keep > 0)
    std::vector<uint64_t> occupied;  // bit d: a hit was counted at d, so that the threshold falls past empty distances at once
    struct Tally {
        int64_t held = 0;     // hits held at or below the threshold
        int64_t under = 0;    // and below it
        bool filled = false;  // k hits held once (the threshold is then the k-th distance)
        int32_t top = 0;      // the largest distance of the first k hits
    } tally;
    std::size_t capacity;

    // threshold: a radius (keep = 0), or for a top-k what a hit must not exceed: the code's bits, or
    // a k-th distance already found elsewhere (then few hits come, and the counts are few: the
    // threshold only falls).
    ListSink(int32_t threshold, int64_t keep_)
        : HitSink{threshold, &ListSink::cb}, keep(keep_), capacity(static_cast<std::size_t>(4 * keep_ + 64)) {
        if (std::vector<Spare>& spare = spares(); !spare.empty()) {
            hits.swap(spare.back().hits);
            count.swap(spare.back().count);
            occupied.swap(spare.back().occupied);
            spare.pop_back();
            hits.clear();
        }
        if (keep) {  // a spare's counts are zero (the sink gone cleared what it used): no fill of them all
            count.resize(static_cast<std::size_t>(threshold) + 1);
            occupied.resize(static_cast<std::size_t>(threshold) / 64 + 1);
            hits.reserve(std::min<std::size_t>(capacity, 256) + kBlock);
        }
    }
    ListSink(ListSink&&) noexcept = default;
    ListSink& operator=(ListSink&&) = delete;
    ~ListSink() {
        if (hits.capacity() == 0 || hits.capacity() > kSpareHits || count.capacity() > kSpareCounts) return;  // (0: moved from)
        try {
            std::vector<Spare>& spare = spares();
            if (spare.size() >= kSpares) return;
            // Every count and bit set lies at or below the first k hits' largest distance: cleared up to
            // it, where a 1024-bit code's sink filled all 1,025 counts anew (CHANGELOG.md, "Binary IVF").
            const auto used = static_cast<std::size_t>(tally.top) + 1;
            std::fill(count.begin(), count.begin() + static_cast<std::ptrdiff_t>(std::min(used, count.size())), 0);
            std::fill(occupied.begin(), occupied.begin() + static_cast<std::ptrdiff_t>(std::min(used / 64 + 1, occupied.size())), 0);
            spare.push_back(Spare{std::move(hits), std::move(count), std::move(occupied)});
        } catch (const std::bad_alloc&) {
        }
    }
    // The tally and the threshold are worked on in registers and stored once a block: as members, each
    // hit's stores to the buffer could alias them, so every hit read them back from memory, some
    // just after they were stored (CHANGELOG.md, "Binary IVF").
    static void cb(HitSink* self, int64_t first, uint32_t lanes, const uint32_t* dist) {
        auto* s = static_cast<ListSink*>(self);
        const int64_t n = s->n, keep = s->keep;
        const uint8_t* pass = s->pass;
        const int64_t* ids = s->slot_ids;
        Tally tally = s->tally;
        int32_t t = s->threshold;
        for (; lanes; lanes &= lanes - 1) {
            const int l = __builtin_ctz(lanes);
            const int64_t slot = first + l;
            const auto d = static_cast<int32_t>(dist[l]);
            if (slot >= n || (pass && !pass[slot]) || d > t) continue;
            s->hits.push_back(Found{d, slot, ids});
            if (ids) __builtin_prefetch(ids + slot);  // for result(): it waited on each id
            if (!keep) continue;
            t = s->count_in(tally, t, d);
            if (s->hits.size() >= s->capacity) {
                s->tally = tally;
                s->threshold = t;
                s->tidy();
                tally = s->tally;
            }
        }
        s->tally = tally;
        s->threshold = t;
    }
    void counted(int32_t d) {
        threshold = count_in(tally, threshold, d);
        if (hits.size() >= capacity) tidy();
    }
    // A hit at d counted into the tally; the threshold t after it. The fall is decided on `under` (the
    // hits below the threshold), not on held - count[t] read back just after a count was stored, and
    // the occupied bit is set whether or not it was: no branch waits on a store of this hit
    // (CHANGELOG.md, "Binary IVF").
    int32_t count_in(Tally& c, int32_t t, int32_t d) {
        ++count[static_cast<std::size_t>(d)];
        occupied[static_cast<std::size_t>(d) / 64] |= uint64_t{1} << (d % 64);
        ++c.held;
        c.under += d < t;
        if (!c.filled) {  // the first k hits: the threshold drops to the largest at once
            c.top = std::max(c.top, d);
            if (c.held < keep) return t;
            c.filled = true;
            if (c.top < t) {  // the k held are all at or below top
                t = c.top;
                c.under = c.held - count[static_cast<std::size_t>(t)];
            }
        }
        // then it falls while the hits below it are k without those at it
        while (c.under >= keep) {
            c.held = c.under;
            t = occupied_below(t);
            c.under -= count[static_cast<std::size_t>(t)];
        }
        return t;
    }
    // The largest distance under t with a hit counted (one is: the hits under t are at least k).
    int32_t occupied_below(int32_t t) const {
        const int32_t top_bit = t - 1;
        auto w = static_cast<std::size_t>(top_bit / 64);
        uint64_t bits = occupied[w] & ((uint64_t{2} << (top_bit % 64)) - 1);
        while (!bits) bits = occupied[--w];
        return static_cast<int32_t>(w * 64 + 63) - __builtin_clzll(bits);
    }
    // Drops the hits above the threshold, and the ties at it past the k smallest ids when they are
    // many (then the ids are looked up); the buffer then holds at most about 2k + 32.
    void tidy() {
        const int32_t t = threshold;
        hits.erase(std::remove_if(hits.begin(), hits.end(), [t](const Found& h) { return h.distance > t; }), hits.end());
        if (keep && tally.held >= 2 * keep + 32) {
            const auto below = static_cast<std::ptrdiff_t>(tally.under);
            auto ties = std::partition(hits.begin(), hits.end(), [t](const Found& h) { return h.distance < t; });
            std::nth_element(ties, ties + (keep - below - 1), hits.end(),
                             [](const Found& a, const Found& b) { return a.id() < b.id(); });
            hits.resize(static_cast<std::size_t>(keep));
            count[static_cast<std::size_t>(t)] = static_cast<int32_t>(keep - below);
            tally.held = keep;
        }
        capacity = std::max(capacity, 2 * hits.size());
    }
    // Another part's hits (a query split between threads), as if reported here.
    void absorb(ListSink& other) {
        for (const Found& h : other.hits)
            if (h.distance <= threshold) {
                hits.push_back(h);
                if (keep) counted(h.distance);
            }
    }
    // The hits by (distance, id), at most k of them; each id looked up once.
    std::vector<Hit> result() {
        tidy();
        std::vector<Hit> out(hits.size());
        for (std::size_t i = 0; i < hits.size(); ++i) {  // field by field: a Hit built whole went through
            out[i].distance = hits[i].distance;           // the stack, and its copy waited on the two stores
            out[i].id = hits[i].id();
        }
        sort_hits(out, keep);
        return out;
    }
};

// Below this many probes the coarse search keeps its nearest lists in NearestLists; from it on it
// counts its hits per distance (ListSink): at nprobe 64 the insertions' moves were most of the
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
