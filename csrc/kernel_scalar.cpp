// Portable reference level: runs on any CPU and defines what the SIMD levels must report
// (kernels.h); the algorithms are kernel_impl.h's, over plain 64-bit words.
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

struct Ops {
    static constexpr int kGroup = 1, kHoist = 0, kFlush = 0, kChains = 1;
    struct Word {
        uint64_t v[kBlock];
    };
    using Query = uint64_t;
    struct Acc {
        uint32_t d[kBlock];
    };
    using Thr = int64_t;
    struct Total {
        double v[kBlock];
    };

    HX_KERNEL_INLINE static Word load(const uint64_t* p) {
        Word w;
        for (int l = 0; l < kBlock; ++l) w.v[l] = p[l];
        return w;
    }
    HX_KERNEL_INLINE static Query broadcast(uint64_t q) { return q; }
    HX_KERNEL_INLINE static Acc zero() { return Acc{{0, 0, 0, 0, 0, 0, 0, 0}}; }
    HX_KERNEL_INLINE static void add(Acc& acc, const Word& x, Query q) {
        for (int l = 0; l < kBlock; ++l) acc.d[l] += popcount64(x.v[l] ^ q);
    }
    HX_KERNEL_INLINE static void flush(Acc&) {}
    HX_KERNEL_INLINE static Thr threshold(int64_t t) { return t; }  // may be negative: then nothing is reported
    HX_KERNEL_INLINE static uint32_t within(const Acc& acc, Thr t) {
        uint32_t lanes = 0;
        for (int l = 0; l < kBlock; ++l) lanes |= static_cast<uint32_t>(static_cast<int64_t>(acc.d[l]) <= t) << l;
        return lanes;
    }
    template <int G>
    HX_KERNEL_INLINE static bool any_within(const Acc (&acc)[G], const Thr (&thr)[G]) {
        uint32_t any = 0;
        for (int j = 0; j < G; ++j) any |= within(acc[j], thr[j]);
        return any != 0;
    }
    HX_KERNEL_INLINE static void store(const Acc& acc, uint32_t* dist) {
        for (int l = 0; l < kBlock; ++l) dist[l] = acc.d[l];
    }
    HX_KERNEL_INLINE static Total total_zero() { return Total{{0, 0, 0, 0, 0, 0, 0, 0}}; }
    HX_KERNEL_INLINE static void weigh(Total& total, const Acc& acc, double weight) {
        for (int l = 0; l < kBlock; ++l) total.v[l] += weight * acc.d[l];
    }
    HX_KERNEL_INLINE static uint32_t total_within(const Total& total, double bound) {
        uint32_t lanes = 0;
        for (int l = 0; l < kBlock; ++l) lanes |= static_cast<uint32_t>(total.v[l] <= bound) << l;
        return lanes;
    }
    HX_KERNEL_INLINE static uint32_t row_distance(const uint64_t* a, const uint64_t* b, int words) {
        uint32_t d = 0;
        for (int w = 0; w < words; ++w) d += popcount64(a[w] ^ b[w]);
        return d;
    }
    HX_KERNEL_INLINE static int64_t filter_head(const uint64_t*, int64_t, int, const uint64_t*, int32_t, uint32_t*, uint32_t*,
                               int64_t&) {
        return 0;
    }
    HX_KERNEL_INLINE static Word peak_word(uint64_t seed) {
        Word w;
        for (int l = 0; l < kBlock; ++l) w.v[l] = seed * static_cast<uint64_t>(2 * l + 1);
        return w;
    }
    HX_KERNEL_INLINE static Query peak_next(Query q) { return q + 1; }
    HX_KERNEL_INLINE static uint64_t peak_sum(const Acc& acc) {
        uint64_t s = 0;
        for (int l = 0; l < kBlock; ++l) s += acc.d[l];
        return s;
    }
};

#include "kernel_impl.h"

}  // namespace

HASHINDEX_DEFINE_KERNELS(scalar)

}  // namespace hashindex
