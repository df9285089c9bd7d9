// IVFIndex's lists: adding codes to them and removing them, all or nothing as every kind does; each
// list's members kept in order by distance to its centroid, and its bounds (ivf_bounds.h).
#include <algorithm>
#include <cstring>
#include <mutex>
#include <new>
#include <numeric>
#include <optional>

#include "errors.h"
#include "ivf_index.h"

namespace hashindex {

namespace {
// Positions 0 .. d.size() - 1 in order of d (distances to a centroid), ties in position order.
std::vector<std::size_t> by_distance(const std::vector<uint32_t>& d) {
    std::vector<std::size_t> order(d.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return d[a] < d[b]; });
    return order;
}
}  // namespace

std::vector<int64_t> IVFIndex::list_sizes() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    std::vector<int64_t> out;
    for (const Items& list : lists_) out.push_back(list.size());
    return out;
}

void IVFIndex::add(const uint8_t* codes, int64_t n, const int64_t* ids, const int64_t* chosen) {
    HX_CHECK(n >= 0, "number of codes must be >= 0");
    std::unique_lock<std::shared_mutex> lk(mu_);
    std::vector<int64_t> lists;
    if (chosen) {
        check_lists(chosen, n, false);
        lists.assign(chosen, chosen + n);
    } else {  // under the lock that the change holds, so that the centroids cannot change in between
        check_trained();
        lists = nearest_lists(rows_to_words(codes, n, code_size_).data(), n, 1, 0);
    }
    if (ids)
        ids_.check_new(ids, n);
    else
        check_default_ids(ids_.next_id(), n);
    std::vector<int64_t> assigned(static_cast<std::size_t>(n));
    for (int64_t i = 0; i < n; ++i) assigned[static_cast<std::size_t>(i)] = ids ? ids[i] : ids_.next_id() + i;
    // Grouped by list, so that each list grows once; all or nothing as every kind's add.
    std::vector<std::vector<int64_t>> rows(static_cast<std::size_t>(nlist_));
    for (int64_t i = 0; i < n; ++i) rows[static_cast<std::size_t>(lists[static_cast<std::size_t>(i)])].push_back(i);
    std::vector<int64_t> grown;
    try {
        list_by_slot_.reserve(list_by_slot_.size() + static_cast<std::size_t>(n));
        for (int l = 0; l < nlist_; ++l) {
            auto& r = rows[static_cast<std::size_t>(l)];
            if (r.empty()) continue;
            const auto m = static_cast<int64_t>(r.size());
            std::vector<uint8_t> block(r.size() * static_cast<std::size_t>(code_size_));
            auto gather = [&] {
                for (std::size_t j = 0; j < r.size(); ++j)
                    std::memcpy(&block[j * static_cast<std::size_t>(code_size_)], codes + r[j] * code_size_, static_cast<std::size_t>(code_size_));
            };
            gather();
            std::vector<uint32_t> d;
            if (trained_) {  // the new members in order by distance to the centroid (ivf_bounds.h)
                const std::vector<uint32_t> by_row = to_centroid(l, rows_to_words(block.data(), m, code_size_).data(), m);
                std::vector<int64_t> sorted;
                for (const std::size_t j : by_distance(by_row)) {
                    sorted.push_back(r[j]);
                    d.push_back(by_row[j]);
                }
                r.swap(sorted);
                gather();
            }
            std::vector<int64_t> block_ids;
            for (const int64_t i : r) block_ids.push_back(assigned[static_cast<std::size_t>(i)]);
            Items& list = lists_[static_cast<std::size_t>(l)];
            list.add({block.data()}, m, block_ids.data(), nullptr);
            grown.push_back(l);
            ivf::Bounds& bound = bounds_[static_cast<std::size_t>(l)];
            for (int64_t i = 0; i < static_cast<int64_t>(d.size()); ++i)  // an add undone keeps them valid
                bound.widen(list.size() - m + i, static_cast<int32_t>(d[static_cast<std::size_t>(i)]));
            if (list.size() > m) bound.unsorted += m;  // (the members of an empty list are in order now)
        }
        ids_.append(assigned.data(), n);
    } catch (...) {
        for (const int64_t l : grown) {  // undo: the new items are the last of each list they went to
            Items& list = lists_[static_cast<std::size_t>(l)];
            const auto& r = rows[static_cast<std::size_t>(l)];
            std::vector<int64_t> back;
            for (const int64_t i : r) back.push_back(assigned[static_cast<std::size_t>(i)]);
            list.remove(back.data(), static_cast<int64_t>(back.size()), [](int64_t, int64_t) {});
        }
        throw;
    }
    for (int64_t i = 0; i < n; ++i) list_by_slot_.push_back(static_cast<int32_t>(lists[static_cast<std::size_t>(i)]));
    for (const int64_t l : grown) order_list_if_needed(l);
}

void IVFIndex::remove(const int64_t* ids, int64_t n) {
    std::unique_lock<std::shared_mutex> lk(mu_);
    ids_.check_present(ids, n);
    for (int64_t i = 0; i < n; ++i) {
        const int64_t slot = ids_.slot_of(ids[i]), last = ids_.size() - 1;
        const int32_t l = list_by_slot_[static_cast<std::size_t>(slot)];
        Items& list = lists_[static_cast<std::size_t>(l)];
        list.remove(ids + i, 1, [&](int64_t from, int64_t to) {  // the list's last member moved into the hole
            if (from == to) return;
            std::vector<uint64_t> row(static_cast<std::size_t>(words_for(code_size_)));
            list.store(0).read_words(to, row.data());
            widen_bounds(l, to, row.data(), 1);
            ++bounds_[static_cast<std::size_t>(l)].unsorted;
        });
        bounds_[static_cast<std::size_t>(l)].truncate(list.size());
        order_list_if_needed(l);
        list_by_slot_[static_cast<std::size_t>(slot)] = list_by_slot_[static_cast<std::size_t>(last)];
        list_by_slot_.pop_back();
        ids_.remove_by_moving_last(slot);
    }
}

void IVFIndex::get(const int64_t* ids, int64_t n, uint8_t* out) const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    for (int64_t i = 0; i < n; ++i) ids_.slot_of(ids[i]);
    for (int64_t i = 0; i < n; ++i)
        lists_[static_cast<std::size_t>(list_by_slot_[static_cast<std::size_t>(ids_.slot_of(ids[i]))])].get(0, ids + i, 1, out + i * code_size_);
}

void IVFIndex::reset() {
    std::unique_lock<std::shared_mutex> lk(mu_);
    for (Items& list : lists_) list.clear();
    for (ivf::Bounds& b : bounds_) b.clear();
    ids_.clear();
    list_by_slot_.clear();
}

std::size_t IVFIndex::memory_bytes() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    std::size_t total = centroids_.memory_bytes() + ids_.memory_bytes() + list_by_slot_.capacity() * sizeof(int32_t);
    for (const Items& list : lists_) total += list.memory_bytes();
    for (const ivf::Bounds& b : bounds_) total += b.memory_bytes();
    return total;
}

void IVFIndex::widen_bounds(int64_t l, int64_t slot, const uint64_t* rows, int64_t n) {
    if (!trained_ || n == 0) return;  // codes placed by the caller's quantizer, no centroid: no bound
    const std::vector<uint32_t> d = to_centroid(l, rows, n);
    for (int64_t i = 0; i < n; ++i) bounds_[static_cast<std::size_t>(l)].widen(slot + i, static_cast<int32_t>(d[static_cast<std::size_t>(i)]));
}

void IVFIndex::compute_bounds() {
    for (int l = 0; l < nlist_; ++l) bound_list(l, false);
}

void IVFIndex::bound_list(int64_t l, bool order) {
    Items& list = lists_[static_cast<std::size_t>(l)];
    const int words = words_for(code_size_);
    const int64_t n = list.size();
    std::vector<uint64_t> rows(static_cast<std::size_t>(n * words));
    for (int64_t s = 0; s < n; ++s) list.store(0).read_words(s, &rows[static_cast<std::size_t>(s * words)]);
    std::vector<uint32_t> d = trained_ ? to_centroid(l, rows.data(), n) : std::vector<uint32_t>{};
    std::optional<Items> sorted;  // a copy in order, to replace the list once nothing can fail
    if (order && trained_) {
        const std::vector<std::size_t> slots = by_distance(d);
        std::vector<uint8_t> codes(static_cast<std::size_t>(n * code_size_));
        std::vector<int64_t> ids(static_cast<std::size_t>(n));
        std::vector<uint32_t> sorted_d(static_cast<std::size_t>(n));
        for (int64_t i = 0; i < n; ++i) {
            const auto s = static_cast<int64_t>(slots[static_cast<std::size_t>(i)]);
            list.store(0).read_row(s, &codes[static_cast<std::size_t>(i * code_size_)]);
            ids[static_cast<std::size_t>(i)] = list.ids().id_of(s);
            sorted_d[static_cast<std::size_t>(i)] = d[static_cast<std::size_t>(s)];
        }
        sorted.emplace(std::vector<int>{nbits()});
        sorted->add({codes.data()}, n, ids.data(), nullptr);
        d.swap(sorted_d);
    }
    ivf::Bounds fresh;
    for (int64_t s = 0; s < static_cast<int64_t>(d.size()); ++s) fresh.widen(s, static_cast<int32_t>(d[static_cast<std::size_t>(s)]));
    if (sorted) list = std::move(*sorted);
    bounds_[static_cast<std::size_t>(l)] = std::move(fresh);
}

void IVFIndex::order_list_if_needed(int64_t l) {
    // Put in order again once a tenth of the list is out of it: each member is copied about ten
    // times over any number of adds, and at most a tenth of the blocks have loose bounds.
    const ivf::Bounds& b = bounds_[static_cast<std::size_t>(l)];
    if (!trained_ || b.unsorted * 10 <= lists_[static_cast<std::size_t>(l)].size()) return;
    try {
        bound_list(l, true);
    } catch (const std::bad_alloc&) {  // the order only speeds searches up; the bounds still hold
    }
}

}  // namespace hashindex
