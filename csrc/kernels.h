// Hamming scan kernels: one signature, one implementation per instruction set.
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

namespace hashindex {

// Codes are stored in blocks of kBlock codes, word-major inside a block:
// word w of lane l lives at block[w * kBlock + l]. One 512-bit load then holds
// the same word of 8 codes, so popcounts add up vertically and no horizontal
// reduction is needed per code.
constexpr int kBlock = 8;

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

void scan_scalar(const uint64_t*, int64_t, int64_t, int, const uint64_t*, int64_t, HitSink* const*);
int64_t filter_scalar(const uint64_t*, int64_t, int, const uint64_t*, int32_t, uint32_t*, uint32_t*);
#if defined(__x86_64__) || defined(_M_X64)
#define HASHINDEX_X86 1
void scan_avx2(const uint64_t*, int64_t, int64_t, int, const uint64_t*, int64_t, HitSink* const*);
int64_t filter_avx2(const uint64_t*, int64_t, int, const uint64_t*, int32_t, uint32_t*, uint32_t*);
void scan_avx512(const uint64_t*, int64_t, int64_t, int, const uint64_t*, int64_t, HitSink* const*);
int64_t filter_avx512(const uint64_t*, int64_t, int, const uint64_t*, int32_t, uint32_t*, uint32_t*);
#endif

}  // namespace hashindex
