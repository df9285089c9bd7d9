// Portable reference kernel: runs on any CPU and defines what the SIMD
// variants must report (see kernels.h).
#include "kernels.h"

namespace hashindex {
namespace {

inline uint32_t popcount64(uint64_t x) {
#if defined(__GNUC__) || defined(__clang__)
    return static_cast<uint32_t>(__builtin_popcountll(x));
#else
    x = x - ((x >> 1) & 0x5555555555555555ULL);
    x = (x & 0x3333333333333333ULL) + ((x >> 2) & 0x3333333333333333ULL);
    x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0fULL;
    return static_cast<uint32_t>((x * 0x0101010101010101ULL) >> 56);
#endif
}

#include "kernel_weighted_generic.h"

}  // namespace

void weighted_scalar(const FieldBlocks* fields, int nfields, int64_t b0, int64_t b1, int64_t nq,
                     WeightedSink* const* sinks, uint32_t* scratch) {
    weighted_generic(fields, nfields, b0, b1, nq, sinks, scratch);
}

int64_t peak_scalar(int64_t iters, uint64_t seed, uint64_t* sink) {
    uint64_t x[4], acc[4] = {0, 0, 0, 0};
    for (int i = 0; i < 4; ++i) x[i] = seed * static_cast<uint64_t>(2 * i + 1);
    uint64_t q = seed ^ 0x5555555555555555ULL;
    for (int64_t it = 0; it < iters; ++it) {
        ++q;
        for (int i = 0; i < 4; ++i) acc[i] += popcount64(x[i] ^ q);
    }
    *sink = acc[0] + acc[1] + acc[2] + acc[3];
    return iters * 4 * 8;
}

int64_t filter_scalar(const uint64_t* rows, int64_t n, int words, const uint64_t* query, int32_t threshold,
                      uint32_t* idx, uint32_t* dist) {
    int64_t found = 0;
    for (int64_t i = 0; i < n; ++i) {
        uint32_t d = 0;
        for (int w = 0; w < words; ++w) d += popcount64(rows[i * words + w] ^ query[w]);
        if (static_cast<int64_t>(d) <= threshold) {
            idx[found] = static_cast<uint32_t>(i);
            dist[found++] = d;
        }
    }
    return found;
}

void scan_scalar(const uint64_t* blocks, int64_t block_begin, int64_t block_end, int words,
                 const uint64_t* queries, int64_t nq, HitSink* const* sinks) {
    for (int64_t q = 0; q < nq; ++q) {
        const uint64_t* qv = queries + q * words;
        HitSink* sink = sinks[q];
        for (int64_t b = block_begin; b < block_end; ++b) {
            const uint64_t* blk = blocks + b * kBlock * words;
            uint32_t dist[kBlock] = {0, 0, 0, 0, 0, 0, 0, 0};
            for (int w = 0; w < words; ++w)
                for (int l = 0; l < kBlock; ++l) dist[l] += popcount64(blk[w * kBlock + l] ^ qv[w]);
            const int64_t thr = sink->threshold;  // may be negative: then nothing is reported
            uint32_t lanes = 0;
            for (int l = 0; l < kBlock; ++l) lanes |= static_cast<uint32_t>(static_cast<int64_t>(dist[l]) <= thr) << l;
            if (lanes) sink->on_hits(sink, b * kBlock, lanes, dist);
        }
    }
}

}  // namespace hashindex
