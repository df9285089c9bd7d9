// AVX2 level (compiled with -mavx2 -mpopcnt): CPUs without AVX-512.
//
// AVX2 has no vector popcount, so each byte is counted with two PSHUFB nibble look-ups (Mula's
// method). Byte counts are added across words before one PSADBW folds them into 64-bit lane sums:
// a byte holds at most 8 per word, so 31 words fit before it could overflow 255. A block's 8 lanes
// are two registers. One query per pass over a block (it stays in L1 for the next query): with two
// sharing each load, the 16 ymm registers spilled and long codes scanned slower
// (benchmarks/RESULTS.md, "Measurements behind the code").
#include "kernels.h"

#ifdef HASHINDEX_X86
#include <immintrin.h>

namespace hashindex {
namespace {

struct Ops {
    static constexpr int kGroup = 1, kHoist = 0, kFlush = 31, kChains = 2;
    struct Word {
        __m256i lo, hi;
    };
    using Query = __m256i;
    struct Acc {
        __m256i count_lo, count_hi;  // byte counts since the last flush
        __m256i lo, hi;              // 64-bit lane sums
    };
    using Thr = __m256i;
    struct Total {
        __m256d lo, hi;
    };

    HX_KERNEL_INLINE static __m256i popcount_bytes(__m256i v) {
        const __m256i lut = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                             0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
        const __m256i low = _mm256_set1_epi8(0x0f);
        return _mm256_add_epi8(_mm256_shuffle_epi8(lut, _mm256_and_si256(v, low)),
                               _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi16(v, 4), low)));
    }
    HX_KERNEL_INLINE static Word load(const uint64_t* p) {
        return Word{_mm256_load_si256(reinterpret_cast<const __m256i*>(p)),
                    _mm256_load_si256(reinterpret_cast<const __m256i*>(p + 4))};
    }
    HX_KERNEL_INLINE static Query broadcast(uint64_t q) { return _mm256_set1_epi64x(static_cast<long long>(q)); }
    HX_KERNEL_INLINE static Acc zero() {
        const __m256i z = _mm256_setzero_si256();
        return Acc{z, z, z, z};
    }
    HX_KERNEL_INLINE static void add(Acc& acc, const Word& x, Query q) {
        acc.count_lo = _mm256_add_epi8(acc.count_lo, popcount_bytes(_mm256_xor_si256(x.lo, q)));
        acc.count_hi = _mm256_add_epi8(acc.count_hi, popcount_bytes(_mm256_xor_si256(x.hi, q)));
    }
    HX_KERNEL_INLINE static void flush(Acc& acc) {
        const __m256i z = _mm256_setzero_si256();
        acc.lo = _mm256_add_epi64(acc.lo, _mm256_sad_epu8(acc.count_lo, z));
        acc.hi = _mm256_add_epi64(acc.hi, _mm256_sad_epu8(acc.count_hi, z));
        acc.count_lo = acc.count_hi = z;
    }
    HX_KERNEL_INLINE static Thr threshold(int64_t t) { return _mm256_set1_epi64x(t); }
    // Lanes over the threshold compare greater.
    HX_KERNEL_INLINE static uint32_t within(const Acc& acc, Thr t) {
        const int over = _mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(acc.lo, t))) |
                         (_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(acc.hi, t))) << 4);
        return static_cast<uint32_t>(~over) & 0xFFu;
    }
    template <int G>
    HX_KERNEL_INLINE static bool any_within(const Acc (&acc)[G], const Thr (&thr)[G]) {
        __m256i all_over = _mm256_set1_epi64x(-1);
        for (int j = 0; j < G; ++j)
            all_over = _mm256_and_si256(all_over, _mm256_and_si256(_mm256_cmpgt_epi64(acc[j].lo, thr[j]),
                                                                   _mm256_cmpgt_epi64(acc[j].hi, thr[j])));
        return _mm256_movemask_epi8(all_over) != -1;
    }
    // The low 32 bits of each 64-bit lane sum, in lane order.
    HX_KERNEL_INLINE static __m128i narrow(__m256i v) {
        return _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7)));
    }
    HX_KERNEL_INLINE static void store(const Acc& acc, uint32_t* dist) {
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dist), narrow(acc.lo));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dist + 4), narrow(acc.hi));
    }
    HX_KERNEL_INLINE static Total total_zero() { return Total{_mm256_setzero_pd(), _mm256_setzero_pd()}; }
    HX_KERNEL_INLINE static void weigh(Total& total, const Acc& acc, double weight) {
        const __m256d w = _mm256_set1_pd(weight);
        total.lo = _mm256_add_pd(total.lo, _mm256_mul_pd(_mm256_cvtepi32_pd(narrow(acc.lo)), w));
        total.hi = _mm256_add_pd(total.hi, _mm256_mul_pd(_mm256_cvtepi32_pd(narrow(acc.hi)), w));
    }
    HX_KERNEL_INLINE static uint32_t total_within(const Total& total, double bound) {
        const __m256d b = _mm256_set1_pd(bound);
        return static_cast<uint32_t>(_mm256_movemask_pd(_mm256_cmp_pd(total.lo, b, _CMP_LE_OQ)) |
                                     (_mm256_movemask_pd(_mm256_cmp_pd(total.hi, b, _CMP_LE_OQ)) << 4));
    }
    // A candidate's row: POPCNT per word (a row is too short for the PSHUFB method to pay).
    HX_KERNEL_INLINE static uint32_t row_distance(const uint64_t* a, const uint64_t* b, int words) {
        uint64_t d = 0;
        for (int w = 0; w < words; ++w) d += static_cast<uint64_t>(_mm_popcnt_u64(a[w] ^ b[w]));
        return static_cast<uint32_t>(d);
    }
    // 64-bit codes (the common MIH case): 4 rows per register, counted as the scan counts, the
    // survivors written out lane by lane.
    HX_KERNEL_INLINE static int64_t filter_head(const uint64_t* rows, int64_t n, int words, const uint64_t* query,
                                                int32_t threshold, uint32_t* idx, uint32_t* dist, int64_t& found) {
        if (words != 1) return 0;
        const __m256i q = broadcast(query[0]), thr = _mm256_set1_epi64x(threshold), zero = _mm256_setzero_si256();
        int64_t i = 0;
        for (; i + 4 <= n; i += 4) {
            const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows + i));
            const __m256i d = _mm256_sad_epu8(popcount_bytes(_mm256_xor_si256(x, q)), zero);
            int keep = ~_mm256_movemask_pd(_mm256_castsi256_pd(_mm256_cmpgt_epi64(d, thr))) & 0xF;
            if (!keep) continue;
            alignas(32) uint64_t lanes[4];
            _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), d);
            for (; keep; keep &= keep - 1) {
                const int l = __builtin_ctz(static_cast<unsigned>(keep));
                idx[found] = static_cast<uint32_t>(i + l);
                dist[found++] = static_cast<uint32_t>(lanes[l]);
            }
        }
        return i;
    }
    HX_KERNEL_INLINE static Word peak_word(uint64_t seed) {
        return Word{broadcast(seed), broadcast(seed ^ 0xAAAAAAAAAAAAAAAAULL)};
    }
    HX_KERNEL_INLINE static Query peak_next(Query q) { return _mm256_add_epi64(q, _mm256_set1_epi64x(1)); }
    HX_KERNEL_INLINE static uint64_t peak_sum(const Acc& acc) {
        alignas(32) uint64_t lanes[8];
        _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc.lo);
        _mm256_store_si256(reinterpret_cast<__m256i*>(lanes + 4), acc.hi);
        uint64_t s = 0;
        for (int l = 0; l < 8; ++l) s += lanes[l];
        return s;
    }
};

#include "kernel_impl.h"

}  // namespace

HASHINDEX_DEFINE_KERNELS(avx2)

}  // namespace hashindex
#endif
