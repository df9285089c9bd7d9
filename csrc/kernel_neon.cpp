// NEON level (AArch64: Graviton, Ampere, Apple silicon; Advanced SIMD is part of every ARMv8-A core).
//
// CNT counts the bits of each byte of a 128-bit register; a block's 8 lanes are four registers.
// Byte counts are added across words (at most 8 per word, so 31 words fit in a byte) before a
// pairwise widening chain (UADDLP 8->16->32, UADALP 32->64) folds them into 64-bit lane sums.
// Per 64 bytes of codes and per query: 4 EOR, 4 CNT, 4 ADD, the loads shared by both queries of a
// group, and the fold (6 instructions per register) once per 31 words.
#include "kernels.h"

#if defined(__aarch64__)
#include <arm_neon.h>

namespace hashindex {
namespace {

struct Ops {
    static constexpr int kGroup = 2, kHoist = 0, kFlush = 31, kChains = 2;
    struct Word {
        uint64x2_t v[4];
    };
    using Query = uint64x2_t;
    struct Acc {
        uint8x16_t count[4];  // byte counts since the last flush
        uint64x2_t sum[4];    // 64-bit lane sums: lanes 2i and 2i + 1 in sum[i]
    };
    using Thr = uint64x2_t;   // threshold + 1, or 0 for a negative threshold
    struct Total {
        float64x2_t v[4];
    };

    HX_KERNEL_INLINE static Word load(const uint64_t* p) { return Word{{vld1q_u64(p), vld1q_u64(p + 2), vld1q_u64(p + 4), vld1q_u64(p + 6)}}; }
    HX_KERNEL_INLINE static Query broadcast(uint64_t q) { return vdupq_n_u64(q); }
    HX_KERNEL_INLINE static Acc zero() {
        Acc a;
        for (int i = 0; i < 4; ++i) {
            a.count[i] = vdupq_n_u8(0);
            a.sum[i] = vdupq_n_u64(0);
        }
        return a;
    }
    HX_KERNEL_INLINE static void add(Acc& acc, const Word& x, Query q) {
        for (int i = 0; i < 4; ++i)
            acc.count[i] = vaddq_u8(acc.count[i], vcntq_u8(vreinterpretq_u8_u64(veorq_u64(x.v[i], q))));
    }
    HX_KERNEL_INLINE static void flush(Acc& acc) {
        for (int i = 0; i < 4; ++i) {
            acc.sum[i] = vpadalq_u32(acc.sum[i], vpaddlq_u16(vpaddlq_u8(acc.count[i])));
            acc.count[i] = vdupq_n_u8(0);
        }
    }
    HX_KERNEL_INLINE static Thr threshold(int64_t t) { return vdupq_n_u64(t < 0 ? 0 : static_cast<uint64_t>(t) + 1); }
    HX_KERNEL_INLINE static uint32_t within(const Acc& acc, Thr t) {
        uint32_t lanes = 0;
        for (int i = 0; i < 4; ++i) {
            const uint64x2_t below = vcltq_u64(acc.sum[i], t);
            lanes |= static_cast<uint32_t>((vgetq_lane_u64(below, 0) & 1) | ((vgetq_lane_u64(below, 1) & 1) << 1)) << (2 * i);
        }
        return lanes;
    }
    template <int G>
    HX_KERNEL_INLINE static bool any_within(const Acc (&acc)[G], const Thr (&thr)[G]) {
        uint64x2_t any = vdupq_n_u64(0);
        for (int j = 0; j < G; ++j)
            for (int i = 0; i < 4; ++i) any = vorrq_u64(any, vcltq_u64(acc[j].sum[i], thr[j]));
        return (vgetq_lane_u64(any, 0) | vgetq_lane_u64(any, 1)) != 0;
    }
    HX_KERNEL_INLINE static void store(const Acc& acc, uint32_t* dist) {
        for (int i = 0; i < 4; ++i) vst1_u32(dist + 2 * i, vmovn_u64(acc.sum[i]));
    }
    HX_KERNEL_INLINE static Total total_zero() {
        Total t;
        for (int i = 0; i < 4; ++i) t.v[i] = vdupq_n_f64(0);
        return t;
    }
    HX_KERNEL_INLINE static void weigh(Total& total, const Acc& acc, double weight) {
        for (int i = 0; i < 4; ++i) total.v[i] = vfmaq_n_f64(total.v[i], vcvtq_f64_u64(acc.sum[i]), weight);
    }
    HX_KERNEL_INLINE static uint32_t total_within(const Total& total, double bound) {
        uint32_t lanes = 0;
        for (int i = 0; i < 4; ++i) {
            const uint64x2_t le = vcleq_f64(total.v[i], vdupq_n_f64(bound));
            lanes |= static_cast<uint32_t>((vgetq_lane_u64(le, 0) & 1) | ((vgetq_lane_u64(le, 1) & 1) << 1)) << (2 * i);
        }
        return lanes;
    }
    HX_KERNEL_INLINE static uint32_t row_distance(const uint64_t* a, const uint64_t* b, int words) {
        uint64_t d = 0;
        int w = 0;
        for (; w + 2 <= words; w += 2)
            d += vaddvq_u8(vcntq_u8(vreinterpretq_u8_u64(veorq_u64(vld1q_u64(a + w), vld1q_u64(b + w)))));
        if (w < words) d += vaddv_u8(vcnt_u8(vcreate_u8(a[w] ^ b[w])));
        return static_cast<uint32_t>(d);
    }
    HX_KERNEL_INLINE static int64_t filter_head(const uint64_t*, int64_t, int, const uint64_t*, int32_t, uint32_t*, uint32_t*,
                               int64_t&) {
        return 0;
    }
    HX_KERNEL_INLINE static Word peak_word(uint64_t seed) {
        return Word{{vdupq_n_u64(seed), vdupq_n_u64(seed * 3), vdupq_n_u64(seed * 5), vdupq_n_u64(seed * 7)}};
    }
    HX_KERNEL_INLINE static Query peak_next(Query q) { return vaddq_u64(q, vdupq_n_u64(1)); }
    HX_KERNEL_INLINE static uint64_t peak_sum(const Acc& acc) {
        uint64_t s = 0;
        for (int i = 0; i < 4; ++i) s += vaddvq_u64(acc.sum[i]);
        return s;
    }
};

#include "kernel_impl.h"

}  // namespace

HASHINDEX_DEFINE_KERNELS(neon)

}  // namespace hashindex
#endif
