// User ids <-> storage slots, shared by every index kind.
//
// Three forms, chosen by what the ids are: dense (ids are exactly the slots 0..n-1, as default ids
// are until a removal or an explicit id: nothing is stored, 0 bytes per code), mapped (an id array
// in a mapped file, its id -> slot table built on first need, so opening stays O(1)), and owned
// (an id array and a hash table). Any change that the dense or mapped form cannot express turns
// the map into the owned form first.
#pragma once
#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
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
    IdMap() = default;
    IdMap(IdMap&& other) noexcept;
    IdMap& operator=(IdMap&& other) noexcept;

    int64_t size() const { return n_; }
    // Slot -> id array; null when dense (then the id of slot s is s): read ids through id_of.
    const int64_t* slot_ids() const { return dense_ ? nullptr : (view_ ? view_ : slot_ids_.data()); }
    int64_t id_of(int64_t slot) const { return dense_ ? slot : slot_ids()[slot]; }
    // Every id, in slot order.
    std::vector<int64_t> all() const;
    bool dense() const { return dense_; }
    int64_t next_id() const { return next_id_; }
    // Raises next_id (never lowers it): restores a saved index's id counter.
    void bump_next_id(int64_t next_id) { next_id_ = next_id > next_id_ ? next_id : next_id_; }
    // Bytes the map holds besides the codes (its id array and hash table; 0 when dense).
    std::size_t memory_bytes() const;

    // Throws std::invalid_argument for an id outside [0, kMaxId], repeated, or already present.
    void check_new(const int64_t* ids, int64_t n) const;
    // Throws MissingIdError for an absent id, std::invalid_argument for a repeat.
    void check_present(const int64_t* ids, int64_t n) const;
    // Gives slots size() .. size()+n-1 these ids, or the next default ids if null. All or nothing.
    void append(const int64_t* ids, int64_t n);
    // Throws MissingIdError if absent.
    int64_t slot_of(int64_t id) const;
    // The slot of an id, or -1 if absent (inline for dense ids: filters look up every listed id).
    int64_t find(int64_t id) const { return dense_ ? (id >= 0 && id < n_ ? id : -1) : find_in_table(id); }
    bool contains(int64_t id) const;
    // Swap-remove: the last slot's id moves to `slot`, whose id is forgotten.
    void remove_by_moving_last(int64_t slot);
    // Forgets an id but keeps its slot (a tombstone the owner tracks).
    void forget(int64_t id);
    void clear();
    // n ids held in memory that `keep` holds alive (a mapped file), read as they are (nothing is
    // scanned: opening stays O(1)); next_id as the file recorded it.
    void adopt(const int64_t* ids, int64_t n, std::shared_ptr<const void> keep, int64_t next_id);
    // Throws std::invalid_argument unless the ids are in [0, kMaxId], distinct and below next_id
    // (builds the id -> slot table: reads every id).
    void validate() const;
    // Ids 0..n-1 for n slots (a file's dense ids).
    void set_dense(int64_t n);

private:
    int64_t find_in_table(int64_t id) const;
    void to_owned();           // dense or mapped -> owned
    void ensure_table() const;  // the mapped form's id -> slot table, built once

    int64_t n_ = 0;
    int64_t next_id_ = 0;
    bool dense_ = true;
    std::vector<int64_t> slot_ids_;
    const int64_t* view_ = nullptr;
    std::shared_ptr<const void> keep_;
    mutable std::unordered_map<int64_t, int64_t> slots_;
    mutable std::atomic<bool> table_ready_{true};
    mutable std::mutex table_mu_;
};

}  // namespace hashindex
