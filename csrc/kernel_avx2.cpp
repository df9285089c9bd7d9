// AVX2 kernel (compiled with -mavx2 -mpopcnt): CPUs without AVX-512.
//
// AVX2 has no vector popcount, so each byte is counted with two PSHUFB nibble
// look-ups (Mula's method). Byte counts are added across words before one
// PSADBW folds them into 64-bit lane sums: a byte holds at most 8 per word, so
// 31 words fit before it could overflow 255.
#include "kernels.h"

#ifdef HASHINDEX_X86
#include <immintrin.h>

namespace hashindex {
namespace {

constexpr int kFlushWords = 31;

inline __m256i popcount_bytes(__m256i v, __m256i lut, __m256i low_mask) {
    const __m256i lo = _mm256_and_si256(v, low_mask);
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), low_mask);
    return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

// Lanes whose 64-bit sum is <= thr, as a 4-bit mask.
inline uint32_t lanes_within(__m256i sums, __m256i thr) {
    const __m256i over = _mm256_cmpgt_epi64(sums, thr);
    return static_cast<uint32_t>(~_mm256_movemask_pd(_mm256_castsi256_pd(over))) & 0xFu;
}

struct Luts {
    __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                   0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    __m256i low_mask = _mm256_set1_epi8(0x0f);
};

// Distances of one block's 8 codes to query j, as two vectors of 4 x 64-bit sums.
template <int WC>
inline void block_sums(const uint64_t* blk, const uint64_t* qj, int runtime_words, const Luts& c, __m256i& lo,
                       __m256i& hi) {
    const int words = WC ? WC : runtime_words;
    const __m256i zero = _mm256_setzero_si256();
    __m256i cnt_lo = zero, cnt_hi = zero;
    lo = hi = zero;
    for (int w = 0; w < words; ++w) {
        const __m256i qw = _mm256_set1_epi64x(static_cast<long long>(qj[w]));
        const __m256i x_lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + w * kBlock));
        const __m256i x_hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + w * kBlock + 4));
        cnt_lo = _mm256_add_epi8(cnt_lo, popcount_bytes(_mm256_xor_si256(x_lo, qw), c.lut, c.low_mask));
        cnt_hi = _mm256_add_epi8(cnt_hi, popcount_bytes(_mm256_xor_si256(x_hi, qw), c.lut, c.low_mask));
        if ((w + 1) % kFlushWords == 0 || w + 1 == words) {
            lo = _mm256_add_epi64(lo, _mm256_sad_epu8(cnt_lo, zero));
            hi = _mm256_add_epi64(hi, _mm256_sad_epu8(cnt_hi, zero));
            cnt_lo = cnt_hi = zero;
        }
    }
}

// Cold path, out of line (see kernel_avx512.cpp): recomputes the block for
// each query of the group and reports its hits.
template <int G, int WC>
__attribute__((noinline)) void report_block(const uint64_t* blk, const uint64_t* q, int words, int64_t first_slot,
                                            HitSink* const* sinks) {
    const Luts c;
    for (int j = 0; j < G; ++j) {
        __m256i lo, hi;
        block_sums<WC>(blk, q + j * words, words, c, lo, hi);
        const __m256i thr = _mm256_set1_epi64x(sinks[j]->threshold);
        const uint32_t lanes = lanes_within(lo, thr) | (lanes_within(hi, thr) << 4);
        if (!lanes) continue;
        alignas(32) uint64_t wide[kBlock];
        _mm256_store_si256(reinterpret_cast<__m256i*>(wide), lo);
        _mm256_store_si256(reinterpret_cast<__m256i*>(wide + 4), hi);
        uint32_t dist[kBlock];
        for (int l = 0; l < kBlock; ++l) dist[l] = static_cast<uint32_t>(wide[l]);
        sinks[j]->on_hits(sinks[j], first_slot, lanes, dist);
    }
}

template <int G, int WC>
void scan_group(const uint64_t* blocks, int64_t b0, int64_t b1, int runtime_words,
                const uint64_t* q, HitSink* const* sinks) {
    const int words = WC ? WC : runtime_words;
    const Luts c;
    __m256i thr[G];
    for (int j = 0; j < G; ++j) thr[j] = _mm256_set1_epi64x(sinks[j]->threshold);
    for (int64_t b = b0; b < b1; ++b) {
        const uint64_t* blk = blocks + b * kBlock * words;
        // Lanes over the threshold compare greater; a block is skipped when
        // all 8 lanes of every query are over it.
        __m256i all_over = _mm256_set1_epi64x(-1);
#pragma GCC unroll 2
        for (int j = 0; j < G; ++j) {
            __m256i lo, hi;
            block_sums<WC>(blk, q + j * words, words, c, lo, hi);
            all_over = _mm256_and_si256(all_over, _mm256_and_si256(_mm256_cmpgt_epi64(lo, thr[j]),
                                                                   _mm256_cmpgt_epi64(hi, thr[j])));
        }
        if (__builtin_expect(_mm256_movemask_epi8(all_over) != -1, 0)) {
            report_block<G, WC>(blk, q, words, b * kBlock, sinks);
            for (int j = 0; j < G; ++j) thr[j] = _mm256_set1_epi64x(sinks[j]->threshold);
        }
    }
}

template <int WC>
void scan_words(const uint64_t* blocks, int64_t b0, int64_t b1, int words, const uint64_t* queries,
                int64_t nq, HitSink* const* sinks) {
    // Two queries per pass: with 4 accumulators each, more would spill the 16 ymm registers.
    int64_t q = 0;
    for (; q + 2 <= nq; q += 2) scan_group<2, WC>(blocks, b0, b1, words, queries + q * words, sinks + q);
    if (q < nq) scan_group<1, WC>(blocks, b0, b1, words, queries + q * words, sinks + q);
}

inline uint32_t popcount64(uint64_t x) { return static_cast<uint32_t>(_mm_popcnt_u64(x)); }

// Lane by lane with POPCNT: the AVX2 level is the fallback for CPUs without AVX-512.
#include "kernel_weighted_generic.h"

}  // namespace

void scan_avx2(const uint64_t* blocks, int64_t b0, int64_t b1, int words, const uint64_t* queries,
               int64_t nq, HitSink* const* sinks) {
    switch (words) {
        case 1: scan_words<1>(blocks, b0, b1, words, queries, nq, sinks); break;
        case 2: scan_words<2>(blocks, b0, b1, words, queries, nq, sinks); break;
        case 4: scan_words<4>(blocks, b0, b1, words, queries, nq, sinks); break;
        case 16: scan_words<16>(blocks, b0, b1, words, queries, nq, sinks); break;
        default: scan_words<0>(blocks, b0, b1, words, queries, nq, sinks); break;
    }
}

void weighted_avx2(const FieldBlocks* fields, int nfields, int64_t b0, int64_t b1, int64_t nq,
                   WeightedSink* const* sinks, uint32_t* scratch) {
    weighted_generic(fields, nfields, b0, b1, nq, sinks, scratch);
}

int64_t peak_avx2(int64_t iters, uint64_t seed, uint64_t* sink) {
    // Mula's PSHUFB popcount, as the scan kernel counts; 4 chains fit the 16 ymm registers.
    const Luts c;
    const __m256i zero = _mm256_setzero_si256();
    __m256i x[4], cnt[4], sums = zero;
    for (int i = 0; i < 4; ++i) {
        x[i] = _mm256_set1_epi64x(static_cast<long long>(seed * (2 * i + 1)));
        cnt[i] = zero;
    }
    __m256i q = _mm256_set1_epi64x(static_cast<long long>(seed ^ 0x5555555555555555ULL));
    const __m256i step = _mm256_set1_epi64x(1);
    for (int64_t it = 0; it < iters; ++it) {
        q = _mm256_add_epi64(q, step);
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i)
            cnt[i] = _mm256_add_epi8(cnt[i], popcount_bytes(_mm256_xor_si256(x[i], q), c.lut, c.low_mask));
        if ((it + 1) % kFlushWords == 0) {  // byte counters fold into 64-bit sums, as in the scan
            for (int i = 0; i < 4; ++i) {
                sums = _mm256_add_epi64(sums, _mm256_sad_epu8(cnt[i], zero));
                cnt[i] = zero;
            }
        }
    }
    for (int i = 0; i < 4; ++i) sums = _mm256_add_epi64(sums, _mm256_sad_epu8(cnt[i], zero));
    alignas(32) uint64_t lanes[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), sums);
    *sink = lanes[0] + lanes[1] + lanes[2] + lanes[3];
    return iters * 4 * 32;
}

int64_t filter_avx2(const uint64_t* rows, int64_t n, int words, const uint64_t* query, int32_t threshold,
                    uint32_t* idx, uint32_t* dist) {
    int64_t found = 0;
    for (int64_t i = 0; i < n; ++i) {
        uint64_t d = 0;
        for (int w = 0; w < words; ++w) d += static_cast<uint64_t>(_mm_popcnt_u64(rows[i * words + w] ^ query[w]));
        if (static_cast<int64_t>(d) <= threshold) {
            idx[found] = static_cast<uint32_t>(i);
            dist[found++] = static_cast<uint32_t>(d);
        }
    }
    return found;
}

}  // namespace hashindex
#endif
