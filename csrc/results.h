// Collectors for scan hits: exact top-k and range, all ordered by (distance, id).
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
// vector compare per 8 codes. MIH's probes offer their candidates here, and scans
// of codes longer than kCountedBits report here; other scans count (CountingSink).
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

// Codes up to this long are scanned into a CountingSink (see there).
constexpr int32_t kCountedBits = 4096;

// k-NN (keep = k) or range (keep = 0) results of one query, what exact scans and IVF's lists report
// to. Distances are small integers, so the sink counts its hits per distance and lowers the threshold
// to the k-th distance the moment a hit allows it: no selection pass while scanning, and no hit above
// it is kept (buffering hits and selecting the k-th when the buffer filled, as TopKSink does, cost a
// third of an IVF search at nprobe 1 and most of a batch over a few thousand codes: CHANGELOG.md,
// "Binary IVF" and "Counting sinks for the exact scan"). An IVF query's k-th distance is carried from
// list to list, so that later lists report only what can still enter. Hits keep their slot until the
// end (an id looked up per hit was a cache miss per hit); ids are looked up only to cut ties at the
// k-th distance. Its counts take 4 bytes per distance up to the threshold: scans of codes longer than
// kCountedBits keep TopKSink.
struct CountingSink : HitSink {
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
    static constexpr std::size_t kSpares = 256, kSpareHits = 1024, kSpareCounts = kCountedBits + 1;
    static std::vector<Spare>& spares() {
        static thread_local std::vector<Spare> spare;
        return spare;
    }
    int64_t keep;
    // What the scan reads next (an IVF query's sink reads list after list): its slots' ids, the slots
    // that hold codes (lanes past them are a block's padding), and the filter's flag per slot (null: all).
    const int64_t* slot_ids = nullptr;
    int64_t n = 0;
    const uint8_t* pass = nullptr;
    void reads(const int64_t* ids, int64_t slots, const uint8_t* passing) {
        slot_ids = ids;
        n = slots;
        pass = passing;
    }
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
    CountingSink(int32_t threshold, int64_t keep_)
        : HitSink{threshold, &CountingSink::cb}, keep(keep_), capacity(static_cast<std::size_t>(4 * keep_ + 64)) {
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
    CountingSink(CountingSink&&) noexcept = default;
    CountingSink& operator=(CountingSink&&) = delete;
    ~CountingSink() {
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
        auto* s = static_cast<CountingSink*>(self);
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
    void absorb(CountingSink& other) {
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
