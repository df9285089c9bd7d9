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

IdMap::IdMap(IdMap&& o) noexcept { *this = std::move(o); }

IdMap& IdMap::operator=(IdMap&& o) noexcept {
    n_ = o.n_;
    next_id_ = o.next_id_;
    dense_ = o.dense_;
    slot_ids_ = std::move(o.slot_ids_);
    view_ = o.view_;
    keep_ = std::move(o.keep_);
    slots_ = std::move(o.slots_);
    table_ready_.store(o.table_ready_.load());
    o.n_ = 0;
    o.next_id_ = 0;
    o.dense_ = true;
    o.view_ = nullptr;
    o.table_ready_.store(true);
    return *this;
}

std::size_t IdMap::memory_bytes() const {
    if (dense_) return 0;
    // unordered_map: a node (key, value, next pointer, cached hash) per id plus a bucket pointer
    const std::size_t table = slots_.size() * (4 * sizeof(void*) + 2 * sizeof(int64_t)) + slots_.bucket_count() * sizeof(void*);
    return slot_ids_.capacity() * sizeof(int64_t) + table;
}

void IdMap::ensure_table() const {
    if (table_ready_.load(std::memory_order_acquire)) return;
    std::lock_guard<std::mutex> g(table_mu_);
    if (table_ready_.load(std::memory_order_relaxed)) return;
    std::unordered_map<int64_t, int64_t> table;
    table.reserve(static_cast<std::size_t>(n_));
    for (int64_t s = 0; s < n_; ++s) table.emplace(view_[s], s);
    slots_.swap(table);
    table_ready_.store(true, std::memory_order_release);
}

void IdMap::to_owned() {
    if (!dense_ && !view_) return;
    std::vector<int64_t> ids(static_cast<std::size_t>(n_));
    std::unordered_map<int64_t, int64_t> table;
    table.reserve(static_cast<std::size_t>(n_));
    for (int64_t s = 0; s < n_; ++s) {
        ids[static_cast<std::size_t>(s)] = id_of(s);
        table.emplace(ids[static_cast<std::size_t>(s)], s);
    }
    slot_ids_.swap(ids);
    slots_.swap(table);
    dense_ = false;
    view_ = nullptr;
    keep_.reset();
    table_ready_.store(true);
}

std::vector<int64_t> IdMap::all() const {
    std::vector<int64_t> out(static_cast<std::size_t>(n_));
    for (int64_t s = 0; s < n_; ++s) out[static_cast<std::size_t>(s)] = id_of(s);
    return out;
}

int64_t IdMap::find_in_table(int64_t id) const {
    ensure_table();
    auto it = slots_.find(id);
    return it == slots_.end() ? -1 : it->second;
}

bool IdMap::contains(int64_t id) const {
    if (dense_) return id >= 0 && id < n_;
    ensure_table();
    return slots_.count(id) != 0;
}

int64_t IdMap::slot_of(int64_t id) const {
    if (dense_) {
        if (id < 0 || id >= n_) throw MissingIdError("id " + std::to_string(id) + " is not in the index");
        return id;
    }
    ensure_table();
    auto it = slots_.find(id);
    if (it == slots_.end()) throw MissingIdError("id " + std::to_string(id) + " is not in the index");
    return it->second;
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
    if (n <= 0) return;
    // Stays dense while the new ids are the new slots: default ids from next_id == size, or the same
    // given explicitly.
    bool stays_dense = dense_ && next_id_ <= n_;
    if (stays_dense && ids)
        for (int64_t i = 0; i < n && stays_dense; ++i) stays_dense = ids[i] == n_ + i;
    if (stays_dense) {
        n_ += n;
        next_id_ = std::max(next_id_, n_);
        return;
    }
    to_owned();
    const int64_t base = n_;
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
    n_ = base + n;
    for (int64_t i = 0; i < n; ++i)
        next_id_ = std::max(next_id_, slot_ids_[static_cast<std::size_t>(base + i)] + 1);
}

void IdMap::remove_by_moving_last(int64_t slot) {
    to_owned();
    const int64_t last = size() - 1;
    slots_.erase(slot_ids_[static_cast<std::size_t>(slot)]);
    if (slot != last) {
        const int64_t moved = slot_ids_[static_cast<std::size_t>(last)];
        slot_ids_[static_cast<std::size_t>(slot)] = moved;
        slots_[moved] = slot;
    }
    slot_ids_.pop_back();
    --n_;
}

void IdMap::forget(int64_t id) {
    to_owned();
    slots_.erase(id);
}

void IdMap::clear() {
    n_ = 0;
    next_id_ = 0;
    dense_ = true;
    slot_ids_.clear();
    view_ = nullptr;
    keep_.reset();
    slots_.clear();
    table_ready_.store(true);
}

void IdMap::adopt(const int64_t* ids, int64_t n, std::shared_ptr<const void> keep, int64_t next_id) {
    clear();
    dense_ = false;
    view_ = ids;
    keep_ = std::move(keep);
    n_ = n;
    next_id_ = next_id;
    table_ready_.store(false);
}

void IdMap::validate() const {
    if (dense_) return;
    const int64_t* ids = slot_ids();
    std::unordered_map<int64_t, int64_t> seen;
    seen.reserve(static_cast<std::size_t>(n_));
    for (int64_t s = 0; s < n_; ++s) {
        if (ids[s] < 0 || ids[s] > kMaxId || ids[s] >= next_id_)
            throw std::invalid_argument("id " + std::to_string(ids[s]) + " at slot " + std::to_string(s) +
                                        " is outside [0, next_id " + std::to_string(next_id_) + ")");
        if (!seen.emplace(ids[s], s).second)
            throw std::invalid_argument("id " + std::to_string(ids[s]) + " appears twice");
    }
}

void IdMap::set_dense(int64_t n) {
    clear();
    n_ = n;
    next_id_ = n;
}

}  // namespace hashindex
