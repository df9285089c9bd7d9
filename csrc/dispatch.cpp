#include "dispatch.h"

#include <atomic>
#include <stdexcept>

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif
#if defined(HASHINDEX_X86)
#if defined(_MSC_VER)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif

namespace hashindex {
namespace {

const Kernels kTable[] = {
    {SimdLevel::Scalar, "scalar", scan_scalar, filter_scalar, peak_scalar, weighted_scalar},
#if defined(HASHINDEX_X86)
    {SimdLevel::AVX2, "avx2", scan_avx2, filter_avx2, peak_avx2, weighted_avx2},
    {SimdLevel::AVX512, "avx512", scan_avx512, filter_avx512, peak_avx512, weighted_avx512},
#elif defined(__aarch64__)
    {SimdLevel::NEON, "neon", scan_neon, filter_neon, peak_neon, weighted_neon},
#endif
};
constexpr int kTableSize = sizeof(kTable) / sizeof(kTable[0]);

#if defined(HASHINDEX_X86)
void cpuid(int leaf, int subleaf, unsigned regs[4]) {
#if defined(_MSC_VER)
    int r[4];
    __cpuidex(r, leaf, subleaf);
    for (int i = 0; i < 4; ++i) regs[i] = static_cast<unsigned>(r[i]);
#else
    __cpuid_count(leaf, subleaf, regs[0], regs[1], regs[2], regs[3]);
#endif
}

unsigned long long xgetbv0() {
#if defined(_MSC_VER)
    return _xgetbv(0);
#else
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (static_cast<unsigned long long>(hi) << 32) | lo;
#endif
}

SimdLevel detect() {
    unsigned r[4];
    cpuid(0, 0, r);
    const unsigned max_leaf = r[0];
    if (max_leaf < 7) return SimdLevel::Scalar;
    cpuid(1, 0, r);
    const bool osxsave = (r[2] >> 27) & 1, avx = (r[2] >> 28) & 1, popcnt = (r[2] >> 23) & 1;
    if (!osxsave || !avx || !popcnt) return SimdLevel::Scalar;
    const unsigned long long xcr0 = xgetbv0();
    const bool os_ymm = (xcr0 & 0x6) == 0x6;           // SSE + AVX state saved
    const bool os_zmm = (xcr0 & 0xE6) == 0xE6;         // + opmask, ZMM0-15 high, ZMM16-31
    cpuid(7, 0, r);
    const bool avx2 = (r[1] >> 5) & 1;
    const bool avx512f = (r[1] >> 16) & 1, avx512dq = (r[1] >> 17) & 1, avx512bw = (r[1] >> 30) & 1, avx512vl = (r[1] >> 31) & 1;
    const bool vpopcntdq = (r[2] >> 14) & 1;
    if (os_zmm && avx512f && avx512dq && avx512bw && avx512vl && vpopcntdq) return SimdLevel::AVX512;
    if (os_ymm && avx2) return SimdLevel::AVX2;
    return SimdLevel::Scalar;
}
#elif defined(__aarch64__)
// Advanced SIMD is mandatory in ARMv8-A; the kernel's hwcaps say so (bit 1, HWCAP_ASIMD) where it
// can be asked.
SimdLevel detect() {
#if defined(__linux__)
    return (getauxval(AT_HWCAP) & (1UL << 1)) ? SimdLevel::NEON : SimdLevel::Scalar;
#else
    return SimdLevel::NEON;
#endif
}
#else
SimdLevel detect() { return SimdLevel::Scalar; }
#endif

const Kernels* entry(SimdLevel level) {
    for (const Kernels& k : kTable)
        if (k.level == level) return &k;
    return &kTable[0];
}

std::atomic<const Kernels*>& current() {
    static std::atomic<const Kernels*> active{entry(best_supported_level())};
    return active;
}

}  // namespace

SimdLevel best_supported_level() {
    static const SimdLevel level = detect();
    return level;
}

const Kernels& active_kernels() { return *current().load(std::memory_order_acquire); }

std::vector<std::string> supported_level_names() {
    std::vector<std::string> names;
    for (int i = 0; i < kTableSize; ++i)
        if (kTable[i].level <= best_supported_level()) names.emplace_back(kTable[i].name);
    return names;
}

void set_level(const std::string& name) {
    std::string known;
    for (int i = 0; i < kTableSize; ++i) {
        if (name == kTable[i].name) {
            if (kTable[i].level > best_supported_level())
                throw std::invalid_argument("SIMD level '" + name + "' is not supported by this CPU; best is '" +
                                            entry(best_supported_level())->name + "'");
            current().store(&kTable[i], std::memory_order_release);
            return;
        }
        known += (i ? ", '" : "'") + std::string(kTable[i].name) + "'";
    }
    throw std::invalid_argument("unknown SIMD level '" + name + "'; expected one of " + known);
}

}  // namespace hashindex
