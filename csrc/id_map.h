// User ids <-> storage slots, shared by every index kind.
#pragma once
#include <cstdint>
#include <limits>
#include <unordered_map>
#include <vector>

namespace hashindex {

// Ids are int64 in [0, kMaxId]: -1 pads results, and 2^63 - 1 stays free so that
// "largest id + 1", the next default id, always exists without overflow.
constexpr int64_t kMaxId = std::numeric_limits<int64_t>::max() - 1;

// Throws std::invalid_argument if n default ids counted from next_id would pass kMaxId.
void check_default_ids(int64_t next_id, int64_t n);

class IdMap {
public:
    int64_t size() const { return static_cast<int64_t>(slot_ids_.size()); }
    const int64_t* slot_ids() const { return slot_ids_.data(); }
    int64_t next_id() const { return next_id_; }
    // Raises next_id (never lowers it): restores a saved index's id counter.
    void bump_next_id(int64_t next_id) { next_id_ = next_id > next_id_ ? next_id : next_id_; }

    // Throws std::invalid_argument for an id outside [0, kMaxId], repeated, or already present.
    void check_new(const int64_t* ids, int64_t n) const;
    // Throws MissingIdError for an absent id, std::invalid_argument for a repeat.
    void check_present(const int64_t* ids, int64_t n) const;
    // Gives slots size() .. size()+n-1 these ids, or the next default ids if null. All or nothing.
    void append(const int64_t* ids, int64_t n);
    // Throws MissingIdError if absent.
    int64_t slot_of(int64_t id) const;
    bool contains(int64_t id) const { return slots_.count(id) != 0; }
    // Swap-remove: the last slot's id moves to `slot`, whose id is forgotten.
    void remove_by_moving_last(int64_t slot);
    // Forgets an id but keeps its slot (a tombstone the owner tracks).
    void forget(int64_t id) { slots_.erase(id); }
    void clear();

private:
    int64_t next_id_ = 0;
    std::vector<int64_t> slot_ids_;
    std::unordered_map<int64_t, int64_t> slots_;
};

}  // namespace hashindex
