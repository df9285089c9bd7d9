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
    int32_t near = kNone, far = -1;        // over the list
    std::vector<int32_t> block_near, block_far;  // per block

    static int64_t lower(int64_t d, int32_t near, int32_t far) { return std::max<int64_t>(d - far, near - d); }

    void clear() {
        near = kNone;
        far = -1;
        block_near.clear();
        block_far.clear();
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
    // How many blocks among the first `nblocks` may hold a member within `threshold`, and, when they
    // are under half of them, their runs as [begin, end) pairs. `keep` is scratch.
    int64_t runs(int64_t d, int32_t threshold, int64_t nblocks, std::vector<uint8_t>& keep,
                 std::vector<std::pair<int64_t, int64_t>>& out) const {
        const auto nb = static_cast<std::size_t>(std::min<int64_t>(nblocks, static_cast<int64_t>(block_near.size())));
        keep.resize(nb);
        const int32_t* lo = block_near.data();
        const int32_t* hi = block_far.data();
        const auto dd = static_cast<int32_t>(d);
        int64_t kept = nblocks - static_cast<int64_t>(nb);  // blocks past the bounds (none here) count as kept
        for (std::size_t b = 0; b < nb; ++b) {  // branch-free, so that it vectorizes
            keep[b] = static_cast<uint8_t>((dd - hi[b] <= threshold) & (lo[b] - dd <= threshold));
            kept += keep[b];
        }
        out.clear();
        if (kept * 2 >= nblocks) return kept;
        for (std::size_t b = 0; b < nb;) {  // kept blocks are few: eight flags at a time past the others
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
        if (static_cast<int64_t>(nb) < nblocks) out.emplace_back(nb, nblocks);
        return kept;
    }
    std::size_t memory_bytes() const { return (block_near.capacity() + block_far.capacity()) * sizeof(int32_t); }
};

}  // namespace hashindex::ivf
