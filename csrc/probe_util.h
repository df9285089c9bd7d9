// What both multi-index hashing probes (MIHIndex, MultiFieldIndex's tables) use: key enumeration
// by radius and per-thread "seen" marks.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

namespace hashindex {

// Bits set in a 32-bit key, portably: translation units outside the kernels are built without
// ISA flags, where __builtin_popcount is a library call on x86-64 (tests/test_kernels.py checks
// that no such unit calls it).
inline int popcount32(uint32_t x) {
    x = x - ((x >> 1) & 0x55555555u);
    x = (x & 0x33333333u) + ((x >> 2) & 0x33333333u);
    return static_cast<int>((((x + (x >> 4)) & 0x0F0F0F0Fu) * 0x01010101u) >> 24);
}

// Calls f(mask) for every mask of `bits` bits with exactly rho set (Gosper's
// hack); stops early when f returns false, and then returns false.
template <class F>
bool for_each_mask(int bits, int rho, F&& f) {
    if (rho > bits) return true;
    if (rho == 0) return f(uint64_t{0});
    uint64_t x = rho == 64 ? ~uint64_t{0} : (uint64_t{1} << rho) - 1;
    for (;;) {
        if (!f(x)) return false;
        const uint64_t r = x + (x & (~x + 1));
        if (r == 0 || (bits < 64 && r >= (uint64_t{1} << bits))) return true;
        x = r | (((x ^ r) >> 2) >> __builtin_ctzll(x));
    }
}

// Per-thread "seen" marks: a generation number per slot, so nothing is cleared per query.
struct Stamps {
    std::vector<uint32_t> mark;
    uint32_t generation = 0;
    uint32_t next(std::size_t n) {
        if (mark.size() < n) mark.resize(n, 0);
        if (++generation == 0) {
            std::fill(mark.begin(), mark.end(), 0);
            generation = 1;
        }
        return generation;
    }
};
// One per thread, shared by both probes (a thread runs one probe at a time).
Stamps& thread_stamps();

}  // namespace hashindex
