#include "id_map.h"

#include <algorithm>
#include <string>

#include "errors.h"

namespace hashindex {

void check_default_ids(int64_t next_id, int64_t n) {
    if (n > 0 && next_id > kMaxId - (n - 1))
        throw std::invalid_argument("ids: " + std::to_string(n) + " default ids from " + std::to_string(next_id) +
                                    " would pass the largest id " + std::to_string(kMaxId) + "; pass ids explicitly");
}

void IdMap::check_new(const int64_t* ids, int64_t n) const {
    std::unordered_map<int64_t, int64_t> seen;
    seen.reserve(static_cast<std::size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
        HX_CHECK(ids[i] >= 0 && ids[i] <= kMaxId,
                 "ids must be between 0 and 2^63 - 2 (-1 marks padding in results; 2^63 - 1 stays free), got " +
                     std::to_string(ids[i]) + " at position " + std::to_string(i));
        if (contains(ids[i]))
            throw std::invalid_argument("ids: id " + std::to_string(ids[i]) + " (position " + std::to_string(i) +
                                        ") is already in the index");
        auto ins = seen.emplace(ids[i], i);
        if (!ins.second)
            throw std::invalid_argument("ids: id " + std::to_string(ids[i]) + " appears twice (positions " +
                                        std::to_string(ins.first->second) + " and " + std::to_string(i) + ")");
    }
}

void IdMap::check_present(const int64_t* ids, int64_t n) const {
    std::unordered_map<int64_t, int64_t> seen;
    for (int64_t i = 0; i < n; ++i) {
        slot_of(ids[i]);
        if (!seen.emplace(ids[i], i).second)
            throw std::invalid_argument("ids: id " + std::to_string(ids[i]) + " appears twice");
    }
}

void IdMap::append(const int64_t* ids, int64_t n) {
    const int64_t base = size();
    try {
        slot_ids_.reserve(static_cast<std::size_t>(base + n));
        slots_.reserve(static_cast<std::size_t>(base + n));
        for (int64_t i = 0; i < n; ++i) {
            const int64_t id = ids ? ids[i] : next_id_ + i;
            slot_ids_.push_back(id);
            slots_.emplace(id, base + i);  // allocates a node: may throw even after reserve
        }
    } catch (...) {  // the ids are new (check_new), so forgetting them restores the map
        for (std::size_t s = static_cast<std::size_t>(base); s < slot_ids_.size(); ++s) slots_.erase(slot_ids_[s]);
        slot_ids_.resize(static_cast<std::size_t>(base));
        throw;
    }
    for (int64_t i = 0; i < n; ++i)
        next_id_ = std::max(next_id_, slot_ids_[static_cast<std::size_t>(base + i)] + 1);
}

int64_t IdMap::slot_of(int64_t id) const {
    auto it = slots_.find(id);
    if (it == slots_.end()) throw MissingIdError("id " + std::to_string(id) + " is not in the index");
    return it->second;
}

void IdMap::remove_by_moving_last(int64_t slot) {
    const int64_t last = size() - 1;
    slots_.erase(slot_ids_[static_cast<std::size_t>(slot)]);
    if (slot != last) {
        const int64_t moved = slot_ids_[static_cast<std::size_t>(last)];
        slot_ids_[static_cast<std::size_t>(slot)] = moved;
        slots_[moved] = slot;
    }
    slot_ids_.pop_back();
}

void IdMap::clear() {
    next_id_ = 0;
    slot_ids_.clear();
    slots_.clear();
}

}  // namespace hashindex
