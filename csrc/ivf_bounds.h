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
    // Members out of order by distance to the centroid: added since the list was last put in that
    // order, or moved by a removal. In order, a block's members have near the same distance, so its
    // bound is tight and the blocks a query needs are one run.
    int64_t unsorted = 0;
    // The first `monotone` blocks have nondecreasing near and far (a list in order has them all): over
    // them the blocks within a bound are one run, found by binary search (BlockScan).
    int64_t monotone = 0;

    static int64_t lower(int64_t d, int32_t near, int32_t far) { return std::max<int64_t>(d - far, near - d); }

    void clear() {
        near = kNone;
        far = -1;
        block_near.clear();
        block_far.clear();
        unsorted = 0;
        monotone = 0;
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
        // The blocks before b keep their order. Only the last block extends it, checked against the
        // one before: a block widened in the middle (a removal's hole filled) leaves the rest to be
        // read one by one until the list is put in order again, so that a change costs one check
        // (rechecking the rest made removals from a large list quadratic: CHANGELOG.md, "Binary IVF").
        monotone = std::min(monotone, static_cast<int64_t>(b));
        if (monotone == static_cast<int64_t>(b) && b + 1 == block_near.size() &&
            (b == 0 || (block_near[b] >= block_near[b - 1] && block_far[b] >= block_far[b - 1])))
            monotone = static_cast<int64_t>(b) + 1;
    }
    // The list now holds `size` members: its blocks past them go (none come: an untrained index has none).
    void truncate(int64_t size) {
        const auto blocks = static_cast<std::size_t>((size + kBlock - 1) / kBlock);
        if (block_near.size() > blocks) {
            block_near.resize(blocks);
            block_far.resize(blocks);
        }
        monotone = std::min(monotone, static_cast<int64_t>(blocks));
    }
    // Whether no member can lie within `threshold` of a query at distance d from the centroid.
    bool skips(int64_t d, int32_t threshold) const { return lower(d, near, far) > threshold; }
    // Asks for the blocks' bounds ahead of the binary searches over them (BlockScan).
    void prefetch() const {
        prefetch_bytes(block_near.data(), block_near.size() * sizeof(int32_t));
        prefetch_bytes(block_far.data(), block_far.size() * sizeof(int32_t));
    }
    std::size_t memory_bytes() const { return (block_near.capacity() + block_far.capacity()) * sizeof(int32_t); }
};

// One list's blocks for one query at distance d from its centroid: those whose bound lies in a range.
// Over the list's monotone blocks the bound falls then rises, so the blocks within t are one run,
// found by two binary searches; the blocks after them (out of order: a tenth of the list at most)
// are read one by one, as every block was before (CHANGELOG.md, "Binary IVF").
class BlockScan {
public:
    static constexpr int32_t kNoneScanned = std::numeric_limits<int32_t>::min() / 2;  // a bound is > -nbits

    // The first nblocks blocks of list bounds `b` (blocks past its bounds, none here, are scanned first).
    void start(const Bounds& b, int64_t d, int64_t nblocks) {
        b_ = &b;
        d_ = d;
        const auto known = std::min<int64_t>(nblocks, static_cast<int64_t>(b.block_near.size()));
        p_ = std::min(b.monotone, known);
        lower_.assign(static_cast<std::size_t>(nblocks - p_), kNoneScanned + 1);
        const int32_t* lo = b.block_near.data();
        const int32_t* hi = b.block_far.data();
        const auto dd = static_cast<int32_t>(d);
        for (int64_t i = p_; i < known; ++i) lower_[static_cast<std::size_t>(i - p_)] = std::max(dd - hi[i], lo[i] - dd);  // vectorizes
    }
    // How many blocks have a bound of at most t.
    int64_t count_within(int32_t t) const {
        const auto [lo, hi] = run_within(t);
        int64_t n = hi - lo;
        for (const int32_t v : lower_) n += v <= t;  // vectorizes
        return n;
    }
    // The runs [begin, end) of blocks whose bound is in (scanned, t], and how many blocks they hold.
    int64_t runs(int32_t scanned, int32_t t, std::vector<std::pair<int64_t, int64_t>>& out) {
        out.clear();
        const auto [lo, hi] = run_within(t);
        int64_t kept = 0;
        if (lo < hi) {
            const auto [slo, shi] = scanned == kNoneScanned ? std::pair<int64_t, int64_t>{0, 0} : run_within(scanned);
            if (slo >= shi) {
                out.emplace_back(lo, hi);
            } else {  // the run within `scanned` lies inside the one within t
                if (lo < slo) out.emplace_back(lo, slo);
                if (shi < hi) out.emplace_back(shi, hi);
            }
            for (const auto& [a, z] : out) kept += z - a;
        }
        return kept + tail_runs(scanned, t, out);
    }

private:
    // The monotone blocks whose bound is at most t: far >= d - t, a suffix, and near <= d + t, a prefix.
    std::pair<int64_t, int64_t> run_within(int32_t t) const {
        const int32_t* near = b_->block_near.data();
        const int32_t* far = b_->block_far.data();
        const int64_t from = d_ - t, to = d_ + t;
        const int64_t lo = std::partition_point(far, far + p_, [from](int32_t f) { return f < from; }) - far;
        const int64_t hi = std::partition_point(near, near + p_, [to](int32_t n) { return n <= to; }) - near;
        return {lo, std::max(lo, hi)};
    }
    // The blocks after the monotone ones: flags set branch-free (so that it vectorizes), then read
    // eight at a time past the blocks not kept.
    int64_t tail_runs(int32_t scanned, int32_t t, std::vector<std::pair<int64_t, int64_t>>& out) {
        const std::size_t nb = lower_.size();
        keep_.resize(nb);
        int64_t kept = 0;
        for (std::size_t b = 0; b < nb; ++b) {
            keep_[b] = static_cast<uint8_t>((lower_[b] > scanned) & (lower_[b] <= t));
            kept += keep_[b];
        }
        for (std::size_t b = 0; b < nb;) {
            uint64_t eight = 0;
            if (b + 8 <= nb) std::memcpy(&eight, &keep_[b], 8);
            if (b + 8 <= nb && !eight) {
                b += 8;
                continue;
            }
            if (eight) b += static_cast<std::size_t>(__builtin_ctzll(eight) / 8);  // the first kept (little-endian)
            if (!keep_[b]) {
                ++b;
                continue;
            }
            const std::size_t first = b;
            while (b < nb && keep_[b]) ++b;
            out.emplace_back(p_ + static_cast<int64_t>(first), p_ + static_cast<int64_t>(b));
        }
        return kept;
    }

    const Bounds* b_ = nullptr;
    int64_t d_ = 0, p_ = 0;
    std::vector<int32_t> lower_;  // the bounds of the blocks after the monotone ones
    std::vector<uint8_t> keep_;
};

}  // namespace hashindex::ivf
