// AVX-512 VPOPCNTDQ level (compiled with -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512vpopcntdq).
//
// One 512-bit load holds word w of the 8 codes of a block; XOR with the query word, VPOPCNTQ and an
// add give 8 partial distances at once. Up to 4 queries share each load, so a block read from L1/L2
// serves 4 queries: VPOPCNTQ (one port on Intel and Zen 4) becomes the limit instead of cache
// bandwidth. Query words stay in registers when they fit (32 zmm registers in all).
#include "kernels.h"

#ifdef HASHINDEX_X86
#include <immintrin.h>

namespace hashindex {
namespace {

struct Ops {
    static constexpr int kGroup = 4, kHoist = 16, kFlush = 0, kChains = 8;
    using Word = __m512i;
    using Query = __m512i;
    using Acc = __m512i;
    using Thr = __m512i;  // threshold + 1: acc - thr is negative exactly for lanes within
    using Total = __m512d;

    HX_KERNEL_INLINE static Word load(const uint64_t* p) { return _mm512_load_si512(reinterpret_cast<const void*>(p)); }
    HX_KERNEL_INLINE static Query broadcast(uint64_t q) { return _mm512_set1_epi64(static_cast<long long>(q)); }
    HX_KERNEL_INLINE static Acc zero() { return _mm512_setzero_si512(); }
    HX_KERNEL_INLINE static void add(Acc& acc, Word x, Query q) { acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(x, q))); }
    HX_KERNEL_INLINE static void flush(Acc&) {}
    HX_KERNEL_INLINE static Thr threshold(int64_t t) { return _mm512_set1_epi64(static_cast<long long>(t) + 1); }
    HX_KERNEL_INLINE static uint32_t within(Acc acc, Thr t) { return _mm512_cmplt_epi64_mask(acc, t); }
    // The subtract and OR run on port 0 and VPMOVQ2M tests the sign bits, leaving port 5 to VPOPCNTQ
    // (a compare-into-mask per query would share port 5 with it on Intel).
    template <int G>
    HX_KERNEL_INLINE static bool any_within(const Acc (&acc)[G], const Thr (&thr)[G]) {
        __m512i below = _mm512_sub_epi64(acc[0], thr[0]);
        for (int j = 1; j < G; ++j) below = _mm512_or_si512(below, _mm512_sub_epi64(acc[j], thr[j]));
        const __mmask8 any = _mm512_movepi64_mask(below);
        return !_kortestz_mask8_u8(any, any);
    }
    HX_KERNEL_INLINE static void store(Acc acc, uint32_t* dist) {
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dist), _mm512_cvtepi64_epi32(acc));
    }
    HX_KERNEL_INLINE static Total total_zero() { return _mm512_setzero_pd(); }
    HX_KERNEL_INLINE static void weigh(Total& total, Acc acc, double weight) {
        total = _mm512_fmadd_pd(_mm512_cvtepi64_pd(acc), _mm512_set1_pd(weight), total);
    }
    HX_KERNEL_INLINE static uint32_t total_within(Total total, double bound) {
        return _mm512_cmp_pd_mask(total, _mm512_set1_pd(bound), _CMP_LE_OQ);
    }
    HX_KERNEL_INLINE static uint32_t row_distance(const uint64_t* a, const uint64_t* b, int words) {
        __m512i acc = _mm512_setzero_si512();
        int w = 0;
        for (; w + 8 <= words; w += 8)
            acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(a + w),
                                                                              _mm512_loadu_si512(b + w))));
        if (w < words) {
            const __mmask8 tail = static_cast<__mmask8>((1u << (words - w)) - 1u);
            acc = _mm512_add_epi64(acc, _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_maskz_loadu_epi64(tail, a + w),
                                                                              _mm512_maskz_loadu_epi64(tail, b + w))));
        }
        return static_cast<uint32_t>(_mm512_reduce_add_epi64(acc));
    }
    // 64-bit codes (the common MIH case): 8 rows per VPOPCNTQ, survivors compressed out.
    HX_KERNEL_INLINE static int64_t filter_head(const uint64_t* rows, int64_t n, int words, const uint64_t* query, int32_t threshold,
                               uint32_t* idx, uint32_t* dist, int64_t& found) {
        if (words != 1) return 0;
        const __m512i q = broadcast(query[0]);
        const __m512i thr = _mm512_set1_epi64(threshold);
        const __m256i step = _mm256_set1_epi32(8);
        __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        int64_t i = 0;
        for (; i + 8 <= n; i += 8, lane = _mm256_add_epi32(lane, step)) {
            const __m512i d = _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512(rows + i), q));
            const __mmask8 keep = _mm512_cmple_epi64_mask(d, thr);
            if (!keep) continue;
            _mm256_mask_compressstoreu_epi32(idx + found, keep, lane);
            // The distances compressed as 64-bit lanes, then narrowed into the first ones: clang 14
            // turned a compressing store of the narrowed lanes into a masked narrowing store (VPMOVQD
            // under `keep`), which writes the lanes in place, not packed: a survivor after a rejected
            // row got another's distance (scripts/cross-test.sh with CXX=clang++ checks it).
            const int kept = __builtin_popcount(keep);
            _mm256_mask_storeu_epi32(dist + found, static_cast<__mmask8>((1u << kept) - 1u),
                                     _mm512_cvtepi64_epi32(_mm512_maskz_compress_epi64(keep, d)));
            found += kept;
        }
        return i;
    }
    HX_KERNEL_INLINE static Word peak_word(uint64_t seed) { return broadcast(seed); }
    HX_KERNEL_INLINE static Query peak_next(Query q) { return _mm512_add_epi64(q, _mm512_set1_epi64(1)); }
    HX_KERNEL_INLINE static uint64_t peak_sum(Acc acc) { return static_cast<uint64_t>(_mm512_reduce_add_epi64(acc)); }
};

#include "kernel_impl.h"

}  // namespace

HASHINDEX_DEFINE_KERNELS(avx512)

}  // namespace hashindex
#endif
