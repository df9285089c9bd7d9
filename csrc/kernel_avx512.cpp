// AVX-512 VPOPCNTDQ kernel (compiled with -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512vpopcntdq).
//
// One 512-bit load holds word w of the 8 codes of a block; XOR with the query
// word, VPOPCNTQ and an add give 8 partial distances at once. Up to 4 queries
// share each load, so a block read from L1/L2 serves 4 queries: VPOPCNTQ (one
// port on Intel and Zen 4) becomes the limit instead of cache bandwidth.
#include "kernels.h"

#ifdef HASHINDEX_X86
#include <immintrin.h>

namespace hashindex {
namespace {

inline __m512i block_distance(const uint64_t* blk, const uint64_t* q, int words, int j) {
    __m512i acc = _mm512_setzero_si512();
    for (int w = 0; w < words; ++w) {
        const __m512i x = _mm512_load_si512(reinterpret_cast<const void*>(blk + w * kBlock));
        acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(
                                        _mm512_xor_si512(x, _mm512_set1_epi64(static_cast<long long>(q[j * words + w])))));
    }
    return acc;
}

// Cold path, out of line: it recomputes the block's distances instead of
// keeping accumulators alive across the branch, because any call in the hot
// loop makes the compiler spill every zmm register around it (all are
// caller-saved).
template <int G>
__attribute__((noinline)) void report_block(const uint64_t* blk, const uint64_t* q, int words, int64_t first_slot,
                                            HitSink* const* sinks) {
    for (int j = 0; j < G; ++j) {
        const __m512i acc = block_distance(blk, q, words, j);
        const __mmask8 m = _mm512_cmple_epu64_mask(acc, _mm512_set1_epi64(sinks[j]->threshold));
        if (!m) continue;
        alignas(32) uint32_t dist[kBlock];
        _mm256_store_si256(reinterpret_cast<__m256i*>(dist), _mm512_cvtepi64_epi32(acc));
        sinks[j]->on_hits(sinks[j], first_slot, m, dist);
    }
}

template <int G, int WC>
void scan_group(const uint64_t* blocks, int64_t b0, int64_t b1, int runtime_words,
                const uint64_t* q, HitSink* const* sinks) {
    const int words = WC ? WC : runtime_words;
    // Query words stay in registers when they fit (32 zmm registers in all).
    constexpr bool kHoist = WC > 0 && G * WC <= 16;
    __m512i qreg[kHoist ? G * WC : 1];
    if (kHoist)
        for (int i = 0; i < G * WC; ++i) qreg[i] = _mm512_set1_epi64(static_cast<long long>(q[i]));
    // thr1 = threshold + 1, so acc - thr1 is negative exactly for hits. The
    // subtract and OR run on port 0 and VPMOVQ2M tests the sign bits, leaving
    // port 5 to VPOPCNTQ (a compare-into-mask per query would share port 5
    // with it on Intel).
    __m512i thr1[G];
#pragma GCC unroll 4
    for (int j = 0; j < G; ++j) thr1[j] = _mm512_set1_epi64(static_cast<long long>(sinks[j]->threshold) + 1);
    for (int64_t b = b0; b < b1; ++b) {
        const uint64_t* blk = blocks + b * kBlock * words;
        __m512i acc[G];
#pragma GCC unroll 4
        for (int j = 0; j < G; ++j) acc[j] = _mm512_setzero_si512();
#pragma GCC unroll 16
        for (int w = 0; w < words; ++w) {
            const __m512i x = _mm512_load_si512(reinterpret_cast<const void*>(blk + w * kBlock));
#pragma GCC unroll 4
            for (int j = 0; j < G; ++j) {
                const __m512i qw = kHoist ? qreg[kHoist ? j * WC + w : 0]
                                          : _mm512_set1_epi64(static_cast<long long>(q[j * words + w]));
                acc[j] = _mm512_add_epi64(acc[j], _mm512_popcnt_epi64(_mm512_xor_si512(x, qw)));
            }
        }
        __m512i below = _mm512_sub_epi64(acc[0], thr1[0]);
#pragma GCC unroll 4
        for (int j = 1; j < G; ++j) below = _mm512_or_si512(below, _mm512_sub_epi64(acc[j], thr1[j]));
        const __mmask8 any = _mm512_movepi64_mask(below);
        if (__builtin_expect(!_kortestz_mask8_u8(any, any), 0)) {
            report_block<G>(blk, q, words, b * kBlock, sinks);
#pragma GCC unroll 4
            for (int j = 0; j < G; ++j) thr1[j] = _mm512_set1_epi64(static_cast<long long>(sinks[j]->threshold) + 1);
        }
    }
}

template <int WC>
void scan_words(const uint64_t* blocks, int64_t b0, int64_t b1, int words, const uint64_t* queries,
                int64_t nq, HitSink* const* sinks) {
    int64_t q = 0;
    for (; q + 4 <= nq; q += 4) scan_group<4, WC>(blocks, b0, b1, words, queries + q * words, sinks + q);
    switch (nq - q) {
        case 3: scan_group<3, WC>(blocks, b0, b1, words, queries + q * words, sinks + q); break;
        case 2: scan_group<2, WC>(blocks, b0, b1, words, queries + q * words, sinks + q); break;
        case 1: scan_group<1, WC>(blocks, b0, b1, words, queries + q * words, sinks + q); break;
        default: break;
    }
}

// acc[j] += distances of one field's block to query j (q: G rows of `words` words).
template <int G, int WC>
inline void field_acc(const uint64_t* blk, const uint64_t* q, int runtime_words, __m512i* acc) {
    const int words = WC ? WC : runtime_words;
#pragma GCC unroll 16
    for (int w = 0; w < words; ++w) {
        const __m512i x = _mm512_load_si512(reinterpret_cast<const void*>(blk + w * kBlock));
#pragma GCC unroll 4
        for (int j = 0; j < G; ++j)
            acc[j] = _mm512_add_epi64(acc[j], _mm512_popcnt_epi64(_mm512_xor_si512(
                                                  x, _mm512_set1_epi64(static_cast<long long>(q[j * words + w])))));
    }
}

// G queries share each load of a field's block; per query the fields' distances are summed with
// their weights in double precision (VCVTQQ2PD + FMA) and compared with the sink's bound.
template <int G>
void weighted_group(const FieldBlocks* fields, int nfields, int64_t b0, int64_t b1, int64_t q0,
                    WeightedSink* const* sinks, uint32_t* scratch) {
    for (int64_t b = b0; b < b1; ++b) {
        __m512d total[G];
#pragma GCC unroll 4
        for (int j = 0; j < G; ++j) total[j] = _mm512_setzero_pd();
        for (int f = 0; f < nfields; ++f) {
            const FieldBlocks& fb = fields[f];
            const uint64_t* blk = fb.blocks + b * kBlock * fb.words;
            const uint64_t* q = fb.queries + q0 * fb.words;
            __m512i acc[G];
#pragma GCC unroll 4
            for (int j = 0; j < G; ++j) acc[j] = _mm512_setzero_si512();
            switch (fb.words) {  // the usual code lengths unrolled (64 to 1024 bits)
                case 1: field_acc<G, 1>(blk, q, 1, acc); break;
                case 2: field_acc<G, 2>(blk, q, 2, acc); break;
                case 4: field_acc<G, 4>(blk, q, 4, acc); break;
                case 8: field_acc<G, 8>(blk, q, 8, acc); break;
                case 16: field_acc<G, 16>(blk, q, 16, acc); break;
                default: field_acc<G, 0>(blk, q, fb.words, acc); break;
            }
            const __m512d weight = _mm512_set1_pd(fb.weight);
#pragma GCC unroll 4
            for (int j = 0; j < G; ++j) total[j] = _mm512_fmadd_pd(_mm512_cvtepi64_pd(acc[j]), weight, total[j]);
        }
#pragma GCC unroll 4
        for (int j = 0; j < G; ++j) {
            const __mmask8 m = _mm512_cmp_pd_mask(total[j], _mm512_set1_pd(sinks[q0 + j]->bound), _CMP_LE_OQ);
            if (__builtin_expect(m == 0, 1)) continue;
            for (int f = 0; f < nfields; ++f) {  // cold: the fields' distances of this block, for the sink
                const FieldBlocks& fb = fields[f];
                const __m512i acc = block_distance(fb.blocks + b * kBlock * fb.words, fb.queries + (q0 + j) * fb.words,
                                                   fb.words, 0);
                _mm256_storeu_si256(reinterpret_cast<__m256i*>(scratch + f * kBlock), _mm512_cvtepi64_epi32(acc));
            }
            sinks[q0 + j]->on_hits(sinks[q0 + j], b * kBlock, m, scratch);
        }
    }
}

}  // namespace

void weighted_avx512(const FieldBlocks* fields, int nfields, int64_t b0, int64_t b1, int64_t nq,
                     WeightedSink* const* sinks, uint32_t* scratch) {
    int64_t q = 0;
    for (; q + 4 <= nq; q += 4) weighted_group<4>(fields, nfields, b0, b1, q, sinks, scratch);
    switch (nq - q) {
        case 3: weighted_group<3>(fields, nfields, b0, b1, q, sinks, scratch); break;
        case 2: weighted_group<2>(fields, nfields, b0, b1, q, sinks, scratch); break;
        case 1: weighted_group<1>(fields, nfields, b0, b1, q, sinks, scratch); break;
        default: break;
    }
}

void scan_avx512(const uint64_t* blocks, int64_t b0, int64_t b1, int words, const uint64_t* queries,
                 int64_t nq, HitSink* const* sinks) {
    switch (words) {
        case 1: scan_words<1>(blocks, b0, b1, words, queries, nq, sinks); break;
        case 2: scan_words<2>(blocks, b0, b1, words, queries, nq, sinks); break;
        case 4: scan_words<4>(blocks, b0, b1, words, queries, nq, sinks); break;
        case 8: scan_words<8>(blocks, b0, b1, words, queries, nq, sinks); break;
        case 16: scan_words<16>(blocks, b0, b1, words, queries, nq, sinks); break;
        default: scan_words<0>(blocks, b0, b1, words, queries, nq, sinks); break;
    }
}

int64_t peak_avx512(int64_t iters, uint64_t seed, uint64_t* sink) {
    // 8 chains of VPOPCNTQ: more than its latency (3 cycles) x throughput (1-2 per cycle).
    __m512i x[8], acc[8];
    for (int i = 0; i < 8; ++i) {
        x[i] = _mm512_set1_epi64(static_cast<long long>(seed * (2 * i + 1)));
        acc[i] = _mm512_setzero_si512();
    }
    __m512i q = _mm512_set1_epi64(static_cast<long long>(seed ^ 0x5555555555555555ULL));
    const __m512i step = _mm512_set1_epi64(1);
    for (int64_t it = 0; it < iters; ++it) {
        q = _mm512_add_epi64(q, step);  // a new query word each round: nothing to hoist out of the loop
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) acc[i] = _mm512_add_epi64(acc[i], _mm512_popcnt_epi64(_mm512_xor_si512(x[i], q)));
    }
    __m512i total = acc[0];
    for (int i = 1; i < 8; ++i) total = _mm512_add_epi64(total, acc[i]);
    *sink = static_cast<uint64_t>(_mm512_reduce_add_epi64(total));
    return iters * 8 * 64;
}

int64_t filter_avx512(const uint64_t* rows, int64_t n, int words, const uint64_t* query, int32_t threshold,
                      uint32_t* idx, uint32_t* dist) {
    int64_t found = 0;
    int64_t i = 0;
    if (words == 1) {  // 8 codes per VPOPCNTQ, survivors compressed out: the common 64-bit case
        const __m512i q = _mm512_set1_epi64(static_cast<long long>(query[0]));
        const __m512i thr = _mm512_set1_epi64(threshold);
        const __m256i step = _mm256_set1_epi32(8);
        __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        for (; i + 8 <= n; i += 8, lane = _mm256_add_epi32(lane, step)) {
            const __m512i d = _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(rows + i), q));
            const __mmask8 keep = _mm512_cmple_epi64_mask(d, thr);
            if (!keep) continue;
            _mm256_mask_compressstoreu_epi32(idx + found, keep, lane);
            _mm256_mask_compressstoreu_epi32(dist + found, keep, _mm512_cvtepi64_epi32(d));
            found += __builtin_popcount(keep);
        }
    }
    for (; i < n; ++i) {
        const uint64_t* a = rows + i * words;
        __m512i acc = _mm512_setzero_si512();
        int w = 0;
        for (; w + 8 <= words; w += 8)
            acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(a + w),
                                                                              _mm512_loadu_si512(query + w))));
        if (w < words) {
            const __mmask8 tail = static_cast<__mmask8>((1u << (words - w)) - 1u);
            acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_maskz_loadu_epi64(tail, a + w),
                                                                              _mm512_maskz_loadu_epi64(tail, query + w))));
        }
        const int64_t d = _mm512_reduce_add_epi64(acc);
        if (d <= threshold) {
            idx[found] = static_cast<uint32_t>(i);
            dist[found++] = static_cast<uint32_t>(d);
        }
    }
    return found;
}

}  // namespace hashindex
#endif
