// Restricting a search to some ids (what faiss's IDSelector does): an allow list or a deny list,
// applied inside the scan or the probe loop, so that k results come back whenever k items pass.
#pragma once
#include <cstdint>
#include <vector>

#include "id_map.h"

namespace hashindex {

struct IdFilter {
    const int64_t* ids = nullptr;  // null: no filter
    int64_t n = 0;
    bool allow = true;             // true: only these ids; false: every id but these
    bool active() const { return ids != nullptr; }
};

// Per-slot flags for slots [0, nslots) of `map` (1: the search may return it), ANDed with `alive`
// when given. Ids the index does not hold are ignored, as faiss's selectors ignore them.
std::vector<uint8_t> slot_mask(const IdFilter& filter, const IdMap& map, int64_t nslots, const uint8_t* alive);

// Slots of the allowed ids that `map` holds, ascending (an allow filter only).
std::vector<int64_t> allowed_slots(const IdFilter& filter, const IdMap& map);

// An allow list this much smaller than the index is searched by copying its codes out and scanning
// the copy: reading m scattered rows costs a few times a streamed row, so it pays when m < n / 16
// (and then skips the n-byte mask too).
inline bool gather_pays(const IdFilter& filter, int64_t n) { return filter.active() && filter.allow && filter.n * 16 < n; }

}  // namespace hashindex
