// How far an IVF list's members lie from its centroid, over the list and per block of kBlock slots.
// By the triangle inequality a query at distance d from the centroid is at least max(d - far,
// near - d) from every member bounded by [near, far]: a list, or a block, whose bound exceeds the
// query's k-th distance so far (or its radius) holds nothing for it and is not compared. The bounds
// only widen (a removal leaves them wider than need be), so they hold whatever changed.
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "kernels.h"

namespace hashindex::ivf {

struct Bounds {
    static constexpr int32_t kNone = std::numeric_limits<int32_t>::max();
    static constexpr int32_t kNoneScanned = std::numeric_limits<int32_t>::min() / 2;  // a bound is > -nbits
    int32_t near = kNone, far = -1;        // over the list
    std::vector<int32_t> block_near, block_far;  // per block
    // Members out of order by distance to the centroid: added since the list was last put in that
    // order, or moved by a removal. In order, a block's members have near the same distance, so its
    // bound is tight and the blocks a query needs are one run.
    int64_t unsorted = 0;

    static int64_t lower(int64_t d, int32_t near, int32_t far) { return std::max<int64_t>(d - far, near - d); }

    void clear() {
        near = kNone;
        far = -1;
        block_near.clear();
        block_far.clear();
        unsorted = 0;
    }
    void widen(int64_t slot, int32_t d) {
        const auto b = static_cast<std::size_t>(slot / kBlock);
        if (block_near.size() <= b) {
            block_near.resize(b + 1, kNone);
            block_far.resize(b + 1, -1);
        }
        block_near[b] = std::min(block_near[b], d);
        block_far[b] = std::max(block_far[b], d);
        near = std::min(near, d);
        far = std::max(far, d);
    }
    // The list now holds `size` members: its blocks past them go (none come: an untrained index has none).
    void truncate(int64_t size) {
        const auto blocks = static_cast<std::size_t>((size + kBlock - 1) / kBlock);
        if (block_near.size() > blocks) {
            block_near.resize(blocks);
            block_far.resize(blocks);
        }
    }
    // Whether no member can lie within `threshold` of a query at distance d from the centroid.
    bool skips(int64_t d, int32_t threshold) const { return lower(d, near, far) > threshold; }
    // The bound of each of the first `nblocks` blocks for a query at distance d from the centroid
    // (blocks past the bounds, none here, get the lowest, so that they are scanned first).
    void block_lower(int64_t d, int64_t nblocks, std::vector<int32_t>& lb) const {
        const auto nb = static_cast<std::size_t>(std::min<int64_t>(nblocks, static_cast<int64_t>(block_near.size())));
        lb.assign(static_cast<std::size_t>(nblocks), kNoneScanned + 1);
        const int32_t* lo = block_near.data();
        const int32_t* hi = block_far.data();
        const auto dd = static_cast<int32_t>(d);
        for (std::size_t b = 0; b < nb; ++b) lb[b] = std::max(dd - hi[b], lo[b] - dd);  // vectorizes
    }
    // How many blocks have a bound of at most t.
    static int64_t count_within(const std::vector<int32_t>& lb, int32_t t) {
        int64_t n = 0;
        for (const int32_t v : lb) n += v <= t;  // vectorizes
        return n;
    }
    // The runs [begin, end) of blocks whose bound is in (scanned, threshold], and how many blocks
    // they hold. `keep` is scratch: flags set branch-free (so that it vectorizes), then read eight
    // at a time past the blocks not kept, which in order (the top of this file) are most of them.
    static int64_t runs(const std::vector<int32_t>& lb, int32_t scanned, int32_t threshold, std::vector<uint8_t>& keep,
                        std::vector<std::pair<int64_t, int64_t>>& out) {
        const std::size_t nb = lb.size();
        keep.resize(nb);
        int64_t kept = 0;
        for (std::size_t b = 0; b < nb; ++b) {
            keep[b] = static_cast<uint8_t>((lb[b] > scanned) & (lb[b] <= threshold));
            kept += keep[b];
        }
        out.clear();
        for (std::size_t b = 0; b < nb;) {
            uint64_t eight = 0;
            if (b + 8 <= nb) std::memcpy(&eight, &keep[b], 8);
            if (b + 8 <= nb && !eight) {
                b += 8;
                continue;
            }
            if (eight) b += static_cast<std::size_t>(__builtin_ctzll(eight) / 8);  // the first kept (little-endian)
            if (!keep[b]) {
                ++b;
                continue;
            }
            const std::size_t first = b;
            while (b < nb && keep[b]) ++b;
            out.emplace_back(first, b);
        }
        return kept;
    }
    std::size_t memory_bytes() const { return (block_near.capacity() + block_far.capacity()) * sizeof(int32_t); }
};

}  // namespace hashindex::ivf
