#include "items.h"

#include <cstring>
#include <memory>
#include <mutex>

#include "errors.h"

namespace hashindex {

void check_nbits(int nbits) {
    HX_CHECK(nbits > 0 && nbits % 8 == 0 && nbits <= (1 << 24),
             "nbits must be a positive multiple of 8, at most 2^24, got " + std::to_string(nbits));
}

Items::Items(const std::vector<int>& nbits) {
    HX_CHECK(!nbits.empty(), "at least one field is needed");
    for (const int b : nbits) {
        check_nbits(b);
        stores_.emplace_back(b / 8);
    }
}

void Items::own_groups() {
    if (!no_groups_ && !groups_view_) return;
    std::vector<int64_t> owned(static_cast<std::size_t>(size()));
    for (int64_t s = 0; s < size(); ++s) owned[static_cast<std::size_t>(s)] = group_at(s);
    groups_.swap(owned);
    groups_view_ = nullptr;
    groups_keep_.reset();
    no_groups_ = false;
}

void Items::add(const std::vector<const uint8_t*>& fields, int64_t n, const int64_t* ids, const int64_t* groups) {
    HX_CHECK(n >= 0, "number of items must be >= 0");
    HX_CHECK(static_cast<int>(fields.size()) == nfields(), "one array per field");
    if (groups)
        for (int64_t i = 0; i < n; ++i)
            HX_CHECK(groups[i] >= kNoGroup, "groups must be >= 0, got " + std::to_string(groups[i]));
    if (ids)
        ids_.check_new(ids, n);
    else
        check_default_ids(ids_.next_id(), n);
    const int64_t before = size();
    const bool keep_groups = groups || !no_groups_;
    try {  // a failed allocation leaves every array as it was
        if (keep_groups) {
            own_groups();
            groups_.reserve(static_cast<std::size_t>(before + n));
        }
        for (int f = 0; f < nfields(); ++f) stores_[static_cast<std::size_t>(f)].append(fields[static_cast<std::size_t>(f)], n);
        if (keep_groups)
            for (int64_t i = 0; i < n; ++i) groups_.push_back(groups ? groups[i] : kNoGroup);
        ids_.append(ids, n);
    } catch (...) {
        for (CodeStore& store : stores_) store.truncate(before);
        if (!no_groups_) groups_.resize(static_cast<std::size_t>(before));
        throw;
    }
}

void Items::move_last_into(int64_t slot) {
    // Moving the last item into each hole keeps removal O(removed); result order never depends on
    // slot order, since ties break by id.
    const int64_t last = size() - 1;
    for (CodeStore& store : stores_) {
        if (slot != last) store.move(last, slot);
        store.truncate(last);
    }
    if (!no_groups_) {
        own_groups();
        groups_[static_cast<std::size_t>(slot)] = groups_[static_cast<std::size_t>(last)];
        groups_.pop_back();
    }
    ids_.remove_by_moving_last(slot);
}

void Items::get(int field, const int64_t* ids, int64_t n, uint8_t* out) const {
    HX_CHECK(field >= 0 && field < nfields(), "field must be in [0, " + std::to_string(nfields()) + "), got " + std::to_string(field));
    for (int64_t i = 0; i < n; ++i) ids_.slot_of(ids[i]);
    const CodeStore& s = store(field);
    for (int64_t i = 0; i < n; ++i) s.read_row(ids_.slot_of(ids[i]), out + i * s.code_size());
}

void Items::get_groups(const int64_t* ids, int64_t n, int64_t* out) const {
    for (int64_t i = 0; i < n; ++i) ids_.slot_of(ids[i]);
    for (int64_t i = 0; i < n; ++i) out[i] = group_at(ids_.slot_of(ids[i]));
}

Items Items::subset(const std::vector<int64_t>& slots) const {
    std::vector<int> nbits;
    for (const CodeStore& s : stores_) nbits.push_back(s.code_size() * 8);
    Items sub(nbits);
    const auto m = static_cast<int64_t>(slots.size());
    for (std::size_t f = 0; f < stores_.size(); ++f) sub.stores_[f].append_slots(stores_[f], slots.data(), m);
    // The copy's ids as an adopted array: its id -> slot table is built only if something looks an
    // id up, which a search of the copy never does (an owned map would hash every id first).
    auto ids = std::make_shared<std::vector<int64_t>>();
    ids->reserve(slots.size());
    for (const int64_t s : slots) ids->push_back(ids_.id_of(s));
    sub.ids_.adopt(ids->data(), m, ids, ids_.next_id());
    if (!no_groups_) {
        sub.no_groups_ = false;
        for (const int64_t s : slots) sub.groups_.push_back(group_at(s));
    }
    return sub;
}

void Items::clear() {
    for (CodeStore& store : stores_) store.clear();
    groups_.clear();
    groups_view_ = nullptr;
    groups_keep_.reset();
    no_groups_ = true;
    ids_.clear();
}

std::size_t Items::memory_bytes() const {
    std::size_t total = ids_.memory_bytes() + groups_.capacity() * sizeof(int64_t);
    for (const CodeStore& store : stores_) total += store.memory_bytes();
    return total;
}

uint32_t Items::flags() const {
    bool grouped = false;
    for (int64_t s = 0; s < size() && !grouped && !no_groups_; ++s) grouped = group_at(s) != kNoGroup;
    return (ids_.dense() ? kDenseIds : 0u) | (grouped ? 0u : kNoGroups);
}

void Items::write_body(PayloadWriter& w, uint32_t flags) const {
    const int64_t n = size();
    w.pad_to(kArrayAlign);
    for (const CodeStore& store : stores_)
        if (n) w.put_bytes(store.blocks(), static_cast<std::size_t>(store.layout_bytes(n)));
    if (!(flags & kDenseIds) && n) w.put_bytes(ids_.slot_ids(), static_cast<std::size_t>(n) * sizeof(int64_t));
    if (!(flags & kNoGroups) && n) w.put_bytes(groups_data(), static_cast<std::size_t>(n) * sizeof(int64_t));
}

void Items::read_body(PayloadReader& r, uint64_t n, int64_t next_id, uint32_t flags, std::shared_ptr<const void> keep,
                      bool verify) {
    const bool dense = flags & kDenseIds, grouped = !(flags & kNoGroups);
    r.skip_padding(kArrayAlign);
    uint64_t row_bytes = (dense ? 0 : 8) + (grouped ? 8 : 0);
    for (const CodeStore& store : stores_) row_bytes += store.words() * 8u;
    if (n > r.remaining() / row_bytes) r.fail("ntotal " + std::to_string(n) + " does not fit in the file");
    const auto count = static_cast<int64_t>(n);
    std::vector<const uint8_t*> blocks;
    for (const CodeStore& store : stores_) blocks.push_back(r.take(static_cast<std::size_t>(store.layout_bytes(count)), "codes"));
    const auto* id_view = reinterpret_cast<const int64_t*>(dense ? nullptr : r.take(static_cast<std::size_t>(n) * 8, "ids"));
    const auto* group_view = reinterpret_cast<const int64_t*>(grouped ? r.take(static_cast<std::size_t>(n) * 8, "groups") : nullptr);
    if (next_id < (dense ? count : 0) || next_id > kMaxId + 1) r.fail("invalid next_id " + std::to_string(next_id));
    auto checked = [&r](auto&& check) {
        try {
            check();
        } catch (const std::invalid_argument& e) {
            r.fail(std::string("invalid ids: ") + e.what());
        }
    };
    if (keep) {  // in place: nothing is read beyond the header unless verify
        for (std::size_t f = 0; f < stores_.size(); ++f)
            stores_[f].adopt(reinterpret_cast<const uint64_t*>(blocks[f]), count, keep);
        if (dense)
            ids_.set_dense(count);
        else
            ids_.adopt(id_view, count, keep, next_id);
        if (grouped) {
            groups_view_ = group_view;
            groups_keep_ = keep;
            no_groups_ = false;
        }
        if (verify) checked([&] { ids_.validate(); });
    } else {
        for (std::size_t f = 0; f < stores_.size(); ++f) stores_[f].assign_blocks(blocks[f], count);
        if (dense) {
            ids_.set_dense(count);
        } else {
            std::vector<int64_t> ids(static_cast<std::size_t>(n));
            // memcpy from or to null, even of 0 bytes, is undefined (found by fuzz/fuzz_load.cpp)
            if (n) std::memcpy(ids.data(), id_view, static_cast<std::size_t>(n) * 8);
            checked([&] { ids_.check_new(ids.data(), count); });  // then stored as add stores them
            ids_.append(ids.data(), count);
            if (next_id < ids_.next_id()) r.fail("next_id " + std::to_string(next_id) + " is below the largest id");
        }
        if (grouped) {
            groups_.resize(static_cast<std::size_t>(n));
            if (n) std::memcpy(groups_.data(), group_view, static_cast<std::size_t>(n) * 8);
            no_groups_ = false;
        }
    }
    if (grouped && (verify || !keep))
        for (int64_t s = 0; s < count; ++s)
            if (group_at(s) < kNoGroup) r.fail("invalid group " + std::to_string(group_at(s)));
    ids_.bump_next_id(next_id);
}

int64_t LockedIds::size() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    return id_map().size();
}

std::vector<int64_t> LockedIds::ids() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    return id_map().all();
}

int64_t LockedIds::next_id() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    return id_map().next_id();
}

bool LockedIds::contains(int64_t id) const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    return id_map().contains(id);
}

bool LockedIds::restore_next_id(int64_t next_id) {
    std::unique_lock<std::shared_mutex> lk(mu_);
    if (next_id < id_map().next_id()) return false;
    id_map().bump_next_id(next_id);
    return true;
}

}  // namespace hashindex
