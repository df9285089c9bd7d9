// How far an IVF list's members lie from its centroid, over the list and per block of kBlock slots.
// By the triangle inequality a query at distance d from the centroid is at least max(d - far,
// near - d) from every member bounded by [near, far]: a list, or a block, whose bound exceeds the
// query's k-th distance so far (or its radius) holds nothing for it and is not compared. The bounds
// only widen (a removal leaves them wider than need be), so they hold whatever changed.
#pragma once
#include <algorithm>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "kernels.h"

namespace hashindex::ivf {

struct Bounds {
    static constexpr int32_t kNone = std::numeric_limits<int32_t>::max();
    int32_t near = kNone, far = -1;  // over the list
    std::vector<int32_t> blocks;     // near, far of each block

    static int64_t lower(int64_t d, int32_t near, int32_t far) { return std::max<int64_t>(d - far, near - d); }

    void clear() {
        near = kNone;
        far = -1;
        blocks.clear();
    }
    void widen(int64_t slot, int32_t d) {
        const auto b = 2 * static_cast<std::size_t>(slot / kBlock);
        while (blocks.size() <= b) blocks.insert(blocks.end(), {kNone, -1});
        blocks[b] = std::min(blocks[b], d);
        blocks[b + 1] = std::max(blocks[b + 1], d);
        near = std::min(near, d);
        far = std::max(far, d);
    }
    // The list now holds `size` members (its last blocks went).
    void truncate(int64_t size) { blocks.resize(2 * static_cast<std::size_t>((size + kBlock - 1) / kBlock)); }
    // Whether no member can lie within `threshold` of a query at distance d from the centroid.
    bool skips(int64_t d, int32_t threshold) const { return lower(d, near, far) > threshold; }
    // The runs of blocks among the first `nblocks` that may hold a member within `threshold`, as
    // [begin, end) pairs; returns how many blocks they cover.
    int64_t runs(int64_t d, int32_t threshold, int64_t nblocks, std::vector<std::pair<int64_t, int64_t>>& out) const {
        out.clear();
        int64_t kept = 0;
        for (int64_t b = 0; b < nblocks; ++b) {
            const auto i = 2 * static_cast<std::size_t>(b);
            if (i + 1 < blocks.size() && lower(d, blocks[i], blocks[i + 1]) > threshold) continue;
            ++kept;
            if (!out.empty() && out.back().second == b)
                out.back().second = b + 1;
            else
                out.emplace_back(b, b + 1);
        }
        return kept;
    }
    std::size_t memory_bytes() const { return blocks.capacity() * sizeof(int32_t); }
};

}  // namespace hashindex::ivf
