// Hamming scan kernels: one signature per kind, one algorithm each (kernel_impl.h), one set of
// operations per instruction set.
//
// Rule every variant keeps: for each query q and each database slot s in the
// scanned block range, if popcount(q XOR code[s]) <= sink->threshold at the
// moment the slot's block is examined, the slot is reported through
// sink->on_hits; slots above the threshold are never reported. Variants differ
// only in speed, never in what they report.
//
// These translation units are compiled with ISA flags (-mavx2, -mavx512*), so
// they include nothing but intrinsics and fixed-width integers: an inline
// function from a standard header instantiated here could be merged by the
// linker into code that runs on CPUs without that ISA.
#pragma once
#include <cstddef>
#include <cstdint>

// The per-level operations and the helpers over them are always inlined into the loops: left to
// itself GCC called some out of line, and AVX2 scans ran slower
// (benchmarks/RESULTS.md, "Measurements behind the code").
#define HX_KERNEL_INLINE __attribute__((always_inline)) inline

namespace hashindex {

// Codes are stored in blocks of kBlock codes, word-major inside a block:
// word w of lane l lives at block[w * kBlock + l]. One 512-bit load then holds
// the same word of 8 codes, so popcounts add up vertically and no horizontal
// reduction is needed per code.
constexpr int kBlock = 8;

// Asks for the cache lines of [p, p + bytes) ahead of the reads that need them: a few lines asked
// for at once come from memory in parallel, where reads one after another wait on each in turn.
inline void prefetch_bytes(const void* p, std::size_t bytes) {
    const auto* c = static_cast<const char*>(p);
    for (std::size_t off = 0; off < bytes; off += 64) __builtin_prefetch(c + off);
}

struct HitSink {
    // Candidates with distance <= threshold are reported; sinks lower it.
    int32_t threshold;
    // lanes: bit l set => slot first_slot + l has distance dist[l].
    void (*on_hits)(HitSink* self, int64_t first_slot, uint32_t lanes, const uint32_t* dist);
};

// Scans blocks [block_begin, block_end) of `blocks` (words_per_code words per
// code) for nq queries (row-major, words_per_code words each), reporting to
// sinks[i] for query i.
using ScanFn = void (*)(const uint64_t* blocks, int64_t block_begin, int64_t block_end,
                        int words_per_code, const uint64_t* queries, int64_t nq,
                        HitSink* const* sinks);

// Filters n codes stored row-major (`words` words each) against one query:
// writes the index and distance of every code with popcount(code XOR query)
// <= threshold to idx[] / dist[] (in order) and returns how many. Verifies
// multi-index hashing candidates, which sit contiguous in their bucket.
using FilterFn = int64_t (*)(const uint64_t* rows, int64_t n, int words, const uint64_t* query, int32_t threshold,
                             uint32_t* idx, uint32_t* dist);

// Several code fields of the same items (one blocked store each, same slots), searched by a
// weighted sum of the fields' distances (MultiFieldIndex). Rule: for each query q and slot s, if
// sum_f weight_f * d_f(q, s) <= sink->bound (within a relative 1e-12, the order of the sum being the
// variant's), the slot is reported with every field's distance; the sink re-checks exactly.
struct FieldBlocks {
    const uint64_t* blocks;   // the field's store
    int words;                // words per code of this field
    const uint64_t* queries;  // nq rows of `words` words
    double weight;            // > 0
};

struct WeightedSink {
    double bound;
    // lanes: bit l set => slot first_slot + l qualifies; dist[f * kBlock + l] is its distance in field f.
    void (*on_hits)(WeightedSink* self, int64_t first_slot, uint32_t lanes, const uint32_t* dist);
};

// scratch: nfields * kBlock entries for the distances handed to on_hits.
using WeightedScanFn = void (*)(const FieldBlocks* fields, int nfields, int64_t block_begin, int64_t block_end,
                                int64_t nq, WeightedSink* const* sinks, uint32_t* scratch);

// The roofline: `iters` rounds of XOR + popcount + add on register-resident data (no loads), as
// many independent chains as the level's registers allow, so only the popcount unit limits it.
// Returns the code bytes compared; writes a checksum to *sink so the work cannot be dropped.
using PeakFn = int64_t (*)(int64_t iters, uint64_t seed, uint64_t* sink);

// One level's kernels (kernel_<level>.cpp, each over kernel_impl.h's algorithms).
#define HASHINDEX_DECLARE_KERNELS(level)                                                                        \
    void scan_##level(const uint64_t*, int64_t, int64_t, int, const uint64_t*, int64_t, HitSink* const*);     \
    int64_t filter_##level(const uint64_t*, int64_t, int, const uint64_t*, int32_t, uint32_t*, uint32_t*);    \
    void weighted_##level(const FieldBlocks*, int, int64_t, int64_t, int64_t, WeightedSink* const*, uint32_t*); \
    int64_t peak_##level(int64_t, uint64_t, uint64_t*);

HASHINDEX_DECLARE_KERNELS(scalar)
#if defined(__x86_64__) || defined(_M_X64)
#define HASHINDEX_X86 1
HASHINDEX_DECLARE_KERNELS(avx2)
HASHINDEX_DECLARE_KERNELS(avx512)
#elif defined(__aarch64__)
HASHINDEX_DECLARE_KERNELS(neon)
#endif

}  // namespace hashindex
