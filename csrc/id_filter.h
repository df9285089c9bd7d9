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

// Whether an allow list is searched by copying its items out and scanning the copy, rather than
// scanning everything with a per-slot mask. The copy costs a scattered read per item once per call;
// the mask path scans all n items for each query, and its threshold falls slowly when few items
// pass. Where the two cross, single queries and batches, was measured at 1M x 64-bit codes
// (benchmarks/RESULTS.md, "Measurements behind the code").
inline bool gather_pays(const IdFilter& filter, int64_t n, int64_t nq) {
    return filter.active() && filter.allow && filter.n * 32 < n * (nq > 16 ? nq / 16 : 1);
}

}  // namespace hashindex
