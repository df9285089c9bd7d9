// What every index kind holds and does alike: per field the codes in the kernels' blocked layout,
// the ids, optional groups; add and remove all or nothing; the arrays of a format-2 file written,
// and read in place from a mapped file, once. IndexCore adds the lock and the accessors every kind
// shares, so that a kind adds only its searches and, where it has them, its tables.
#pragma once
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <vector>

#include "code_store.h"
#include "format.h"
#include "id_map.h"

namespace hashindex {

// Groups are ids >= 0; kNoGroup marks an item (or a query) without one.
constexpr int64_t kNoGroup = -1;

// Throws std::invalid_argument unless nbits is a positive multiple of 8, at most 2^24.
void check_nbits(int nbits);

class Items {
public:
    explicit Items(const std::vector<int>& nbits);
    Items(Items&&) noexcept = default;
    Items& operator=(Items&&) noexcept = default;

    int nfields() const { return static_cast<int>(stores_.size()); }
    const CodeStore& store(int field) const { return stores_[static_cast<std::size_t>(field)]; }
    int64_t size() const { return ids_.size(); }
    const IdMap& ids() const { return ids_; }
    IdMap& ids() { return ids_; }
    // Groups: owned, in a mapped file, or none at all (every item's is kNoGroup, nothing stored).
    int64_t group_at(int64_t slot) const {
        return no_groups_ ? kNoGroup : (groups_view_ ? groups_view_[slot] : groups_[static_cast<std::size_t>(slot)]);
    }
    const int64_t* groups_data() const { return no_groups_ ? nullptr : (groups_view_ ? groups_view_ : groups_.data()); }

    // fields[f]: n rows of field f. ids / groups may be null (default ids; no group). All or nothing.
    void add(const std::vector<const uint8_t*>& fields, int64_t n, const int64_t* ids, const int64_t* groups);
    // All or nothing (MissingIdError before any change). Each hole takes the last item; moved(from,
    // to) is told of every move, and of the slot it empties (from == to for the last item itself).
    template <class Moved>
    void remove(const int64_t* ids, int64_t n, Moved moved) {
        ids_.check_present(ids, n);
        for (int64_t i = 0; i < n; ++i) {
            const int64_t slot = ids_.slot_of(ids[i]), last = ids_.size() - 1;
            move_last_into(slot);
            moved(last, slot);
        }
    }
    // Rows of one field (or groups) by id; MissingIdError before writing anything.
    void get(int field, const int64_t* ids, int64_t n, uint8_t* out) const;
    void get_groups(const int64_t* ids, int64_t n, int64_t* out) const;
    // Copies of these slots' items (a search restricted to a short allow list scans the copy).
    Items subset(const std::vector<int64_t>& slots) const;
    void clear();
    std::size_t memory_bytes() const;

    // Format 2's arrays. Flags: bit 0, the ids are 0..n-1 and not stored; bit 1, no item has a
    // group and none are stored. The body: zero padding to a 64-byte file offset, per field the
    // codes in the blocked layout, n int64 ids unless bit 0, n int64 groups unless bit 1.
    static constexpr uint32_t kDenseIds = 1, kNoGroups = 2;
    uint32_t flags() const;
    void write_body(PayloadWriter& w, uint32_t flags) const;
    // keep non-null: the arrays are used in place (only the header is read unless verify). The
    // caller checks what follows (a file may hold several bodies).
    void read_body(PayloadReader& r, uint64_t n, int64_t next_id, uint32_t flags, std::shared_ptr<const void> keep,
                   bool verify);

private:
    void move_last_into(int64_t slot);
    void own_groups();  // a mapped or absent group array becomes an owned one before a change

    std::vector<CodeStore> stores_;
    IdMap ids_;
    std::vector<int64_t> groups_;
    const int64_t* groups_view_ = nullptr;
    std::shared_ptr<const void> groups_keep_;
    bool no_groups_ = true;
};

// The lock and the id accessors every kind shares; a kind says where its ids are. Searches share
// the lock; changes exclude (searches run with the GIL released).
class LockedIds {
public:
    int64_t size() const;
    std::vector<int64_t> ids() const;
    // The first default id: one past the largest id ever added.
    int64_t next_id() const;
    bool contains(int64_t id) const;
    // Raises the default-id counter to a saved value; false if below the largest id.
    bool restore_next_id(int64_t next_id);

protected:
    LockedIds() = default;
    LockedIds(LockedIds&&) noexcept {}  // a lock is not moved: a moved-to index has its own
    virtual ~LockedIds() = default;
    virtual const IdMap& id_map() const = 0;
    virtual IdMap& id_map() = 0;

    mutable std::shared_mutex mu_;
};

// What every kind whose items sit in one Items holds (IVFIndex keeps one per list).
class IndexCore : public LockedIds {
protected:
    explicit IndexCore(const std::vector<int>& nbits) : items_(nbits) {}
    IndexCore(IndexCore&& o) noexcept : LockedIds(std::move(o)), items_(std::move(o.items_)) {}
    const IdMap& id_map() const override { return items_.ids(); }
    IdMap& id_map() override { return items_.ids(); }

    Items items_;
};

}  // namespace hashindex
