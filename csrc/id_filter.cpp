#include "id_filter.h"

#include <algorithm>

namespace hashindex {

std::vector<uint8_t> slot_mask(const IdFilter& filter, const IdMap& map, int64_t nslots, const uint8_t* alive) {
    std::vector<uint8_t> mask(static_cast<std::size_t>(nslots), filter.allow ? 0 : 1);
    const uint8_t set = filter.allow ? 1 : 0;
    for (int64_t i = 0; i < filter.n; ++i)
        if (map.contains(filter.ids[i])) {
            const int64_t slot = map.slot_of(filter.ids[i]);
            if (slot < nslots) mask[static_cast<std::size_t>(slot)] = set;
        }
    if (alive)
        for (int64_t s = 0; s < nslots; ++s) mask[static_cast<std::size_t>(s)] &= alive[s];
    return mask;
}

std::vector<int64_t> allowed_slots(const IdFilter& filter, const IdMap& map) {
    std::vector<int64_t> slots;
    for (int64_t i = 0; i < filter.n; ++i)
        if (map.contains(filter.ids[i])) slots.push_back(map.slot_of(filter.ids[i]));
    std::sort(slots.begin(), slots.end());
    slots.erase(std::unique(slots.begin(), slots.end()), slots.end());
    return slots;
}

}  // namespace hashindex
