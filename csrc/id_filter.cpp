#include "id_filter.h"

#include <algorithm>

namespace hashindex {

std::vector<uint8_t> slot_mask(const IdFilter& filter, const IdMap& map, int64_t nslots, const uint8_t* alive) {
    std::vector<uint8_t> mask(static_cast<std::size_t>(nslots), filter.allow ? 0 : 1);
    const uint8_t set = filter.allow ? 1 : 0;
    for (int64_t i = 0; i < filter.n; ++i) {
        const int64_t slot = map.find(filter.ids[i]);
        if (slot >= 0 && slot < nslots) mask[static_cast<std::size_t>(slot)] = set;
    }
    if (alive)
        for (int64_t s = 0; s < nslots; ++s) mask[static_cast<std::size_t>(s)] &= alive[s];
    return mask;
}

std::vector<int64_t> allowed_slots(const IdFilter& filter, const IdMap& map) {
    // One bit per slot, then the set bits in order: O(m + n / 64), sorted and without repeats,
    // where sorting the slots or a byte per slot read byte by byte cost more
    // (benchmarks/RESULTS.md, "Measurements behind the code"); the gather then reads the store in
    // order, which its prefetcher follows.
    const int64_t n = map.size();
    std::vector<uint64_t> bits(static_cast<std::size_t>((n + 63) / 64), 0);
    int64_t found = 0;
    for (int64_t i = 0; i < filter.n; ++i) {
        const int64_t slot = map.find(filter.ids[i]);
        if (slot < 0) continue;
        uint64_t& word = bits[static_cast<std::size_t>(slot / 64)];
        const uint64_t bit = uint64_t{1} << (slot % 64);
        found += (word & bit) == 0;
        word |= bit;
    }
    std::vector<int64_t> slots;
    slots.reserve(static_cast<std::size_t>(found));
    for (std::size_t w = 0; w < bits.size(); ++w)
        for (uint64_t word = bits[w]; word; word &= word - 1)
            slots.push_back(static_cast<int64_t>(w) * 64 + __builtin_ctzll(word));
    return slots;
}

}  // namespace hashindex
