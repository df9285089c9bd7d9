#include "flat_index.h"

#include <algorithm>
#include <mutex>

#include "errors.h"
#include "format.h"
#include "scan.h"

namespace hashindex {

FlatIndex::FlatIndex(int nbits) : nbits_(nbits), store_(nbits > 0 ? nbits / 8 : 1) {
    HX_CHECK(nbits > 0 && nbits % 8 == 0 && nbits <= (1 << 24),
             "nbits must be a positive multiple of 8, at most 2^24, got " + std::to_string(nbits));
}

FlatIndex::FlatIndex(FlatIndex&& o) noexcept : nbits_(o.nbits_), store_(std::move(o.store_)), ids_(std::move(o.ids_)) {}

int64_t FlatIndex::size() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    return store_.size();
}

void FlatIndex::add(const uint8_t* codes, int64_t n, const int64_t* ids) {
    HX_CHECK(n >= 0, "number of codes must be >= 0");
    std::unique_lock<std::shared_mutex> lk(mu_);
    if (ids)
        ids_.check_new(ids, n);
    else
        check_default_ids(ids_.next_id(), n);
    const int64_t before = store_.size();
    store_.append(codes, n);  // all or nothing, like ids_.append: a failed allocation changes neither
    try {
        ids_.append(ids, n);
    } catch (...) {
        store_.truncate(before);
        throw;
    }
}

FlatIndex FlatIndex::subset(const std::vector<int64_t>& slots) const {
    FlatIndex sub(nbits_);
    const auto m = static_cast<int64_t>(slots.size());
    std::vector<uint8_t> rows(slots.size() * static_cast<std::size_t>(code_size()));
    std::vector<int64_t> sub_ids(slots.size());
    for (int64_t i = 0; i < m; ++i) {
        store_.read_row(slots[static_cast<std::size_t>(i)], rows.data() + i * code_size());
        sub_ids[static_cast<std::size_t>(i)] = ids_.slot_ids()[slots[static_cast<std::size_t>(i)]];
    }
    if (m) sub.add(rows.data(), m, sub_ids.data());
    return sub;
}

void FlatIndex::search(const uint8_t* queries, int64_t nq, int64_t k, int threads, int32_t* distances,
                       int64_t* ids, const IdFilter& filter) const {
    HX_CHECK(k > 0, "k must be > 0, got " + std::to_string(k));
    std::shared_lock<std::shared_mutex> lk(mu_);
    const int64_t n = store_.size();
    if (gather_pays(filter, n)) {
        const FlatIndex sub = subset(allowed_slots(filter, ids_));
        lk.unlock();
        sub.search(queries, nq, k, threads, distances, ids);
        return;
    }
    const std::vector<uint64_t> qwords = rows_to_words(queries, nq, code_size());
    const std::vector<uint8_t> mask = filter.active() ? slot_mask(filter, ids_, n, nullptr) : std::vector<uint8_t>();
    const uint8_t* pass = mask.empty() ? nullptr : mask.data();
    scan_store<TopKSink>(
        store_, qwords.data(), nq, threads, [&](int64_t) { return TopKSink(k, n, ids_.slot_ids(), pass); },
        [&](int64_t q, TopKSink& sink) { sink.write_sorted(distances + q * k, ids + q * k); });
}

RangeResult FlatIndex::range_search(const uint8_t* queries, int64_t nq, int32_t radius, int threads,
                                    const IdFilter& filter) const {
    HX_CHECK(radius >= 0, "radius must be >= 0, got " + std::to_string(radius));
    std::vector<std::vector<Hit>> per_query(static_cast<std::size_t>(nq));
    {
        std::shared_lock<std::shared_mutex> lk(mu_);
        const int64_t n = store_.size();
        if (gather_pays(filter, n)) {
            const FlatIndex sub = subset(allowed_slots(filter, ids_));
            lk.unlock();
            return sub.range_search(queries, nq, radius, threads);
        }
        const std::vector<uint64_t> qwords = rows_to_words(queries, nq, code_size());
        const std::vector<uint8_t> mask = filter.active() ? slot_mask(filter, ids_, n, nullptr) : std::vector<uint8_t>();
        const uint8_t* pass = mask.empty() ? nullptr : mask.data();
        scan_store<RangeSink>(
            store_, qwords.data(), nq, threads, [&](int64_t) { return RangeSink(radius, n, ids_.slot_ids(), pass); },
            [&](int64_t q, RangeSink& sink) { per_query[static_cast<std::size_t>(q)] = sink.sorted(); });
    }
    RangeResult r;
    r.lims.resize(static_cast<std::size_t>(nq) + 1, 0);
    for (int64_t q = 0; q < nq; ++q)
        r.lims[static_cast<std::size_t>(q + 1)] = r.lims[static_cast<std::size_t>(q)] + per_query[static_cast<std::size_t>(q)].size();
    r.distances.reserve(static_cast<std::size_t>(r.lims.back()));
    r.ids.reserve(static_cast<std::size_t>(r.lims.back()));
    for (auto& hits : per_query)
        for (const Hit& h : hits) {
            r.distances.push_back(h.distance);
            r.ids.push_back(h.id);
        }
    return r;
}

void FlatIndex::remove(const int64_t* ids, int64_t n) {
    std::unique_lock<std::shared_mutex> lk(mu_);
    ids_.check_present(ids, n);
    // Moving the last code into each hole keeps removal O(removed); result
    // order never depends on slot order, since ties break by id.
    for (int64_t i = 0; i < n; ++i) {
        const int64_t slot = ids_.slot_of(ids[i]);
        const int64_t last = store_.size() - 1;
        if (slot != last) store_.move(last, slot);
        ids_.remove_by_moving_last(slot);
        store_.truncate(last);
    }
}

void FlatIndex::get(const int64_t* ids, int64_t n, uint8_t* out) const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    for (int64_t i = 0; i < n; ++i) ids_.slot_of(ids[i]);
    for (int64_t i = 0; i < n; ++i) store_.read_row(ids_.slot_of(ids[i]), out + i * code_size());
}

std::vector<int64_t> FlatIndex::ids() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    return std::vector<int64_t>(ids_.slot_ids(), ids_.slot_ids() + ids_.size());
}

int64_t FlatIndex::next_id() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    return ids_.next_id();
}

bool FlatIndex::contains(int64_t id) const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    return ids_.contains(id);
}

void FlatIndex::reset() {
    std::unique_lock<std::shared_mutex> lk(mu_);
    store_.clear();
    ids_.clear();
}

// Payload of kind Flat: CodesPayload (format.h) with parameter 0.
std::vector<uint8_t> FlatIndex::to_bytes() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    const int64_t n = store_.size();
    PayloadWriter w;
    write_codes_header(w, nbits_, 0, n, ids_.next_id());
    std::vector<uint8_t> row(static_cast<std::size_t>(code_size()));
    for (int64_t s = 0; s < n; ++s) {
        store_.read_row(s, row.data());
        w.put_bytes(row.data(), row.size());
    }
    w.put_bytes(ids_.slot_ids(), static_cast<std::size_t>(n) * sizeof(int64_t));
    return w.finish(IndexKind::Flat);
}

FlatIndex FlatIndex::from_bytes(const uint8_t* data, std::size_t size, const std::string& source) {
    PayloadReader r(data, size, IndexKind::Flat, source);
    const CodesPayload p = read_codes_payload(r);
    return index_from_payload(p, r, FlatIndex(static_cast<int>(p.nbits)));
}

bool FlatIndex::restore_next_id(int64_t next_id) {
    std::unique_lock<std::shared_mutex> lk(mu_);
    if (next_id < ids_.next_id()) return false;
    ids_.bump_next_id(next_id);
    return true;
}

}  // namespace hashindex
