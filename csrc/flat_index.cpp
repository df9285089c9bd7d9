#include "flat_index.h"

#include <algorithm>
#include <mutex>

#include "errors.h"
#include "format.h"
#include "scan.h"

namespace hashindex {

FlatIndex::FlatIndex(int nbits) : nbits_(nbits), store_(nbits > 0 ? nbits / 8 : 1) {
    HX_CHECK(nbits > 0 && nbits % 8 == 0, "nbits must be a positive multiple of 8, got " + std::to_string(nbits));
}

FlatIndex::FlatIndex(FlatIndex&& o) noexcept : nbits_(o.nbits_), store_(std::move(o.store_)), ids_(std::move(o.ids_)) {}

int64_t FlatIndex::size() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    return store_.size();
}

void FlatIndex::add(const uint8_t* codes, int64_t n, const int64_t* ids) {
    HX_CHECK(n >= 0, "number of codes must be >= 0");
    std::unique_lock<std::shared_mutex> lk(mu_);
    if (ids) ids_.check_new(ids, n);
    store_.append(codes, n);
    ids_.append(ids, n);
}

void FlatIndex::search(const uint8_t* queries, int64_t nq, int64_t k, int threads, int32_t* distances,
                       int64_t* ids) const {
    HX_CHECK(k > 0, "k must be > 0, got " + std::to_string(k));
    const std::vector<uint64_t> qwords = rows_to_words(queries, nq, code_size());
    std::shared_lock<std::shared_mutex> lk(mu_);
    const int64_t n = store_.size();
    scan_store<TopKSink>(
        store_, qwords.data(), nq, threads, [&](int64_t) { return TopKSink(k, n, ids_.slot_ids()); },
        [&](int64_t q, TopKSink& sink) { sink.write_sorted(distances + q * k, ids + q * k); });
}

RangeResult FlatIndex::range_search(const uint8_t* queries, int64_t nq, int32_t radius, int threads) const {
    HX_CHECK(radius >= 0, "radius must be >= 0, got " + std::to_string(radius));
    const std::vector<uint64_t> qwords = rows_to_words(queries, nq, code_size());
    std::vector<std::vector<Hit>> per_query(static_cast<std::size_t>(nq));
    {
        std::shared_lock<std::shared_mutex> lk(mu_);
        const int64_t n = store_.size();
        scan_store<RangeSink>(
            store_, qwords.data(), nq, threads, [&](int64_t) { return RangeSink(radius, n, ids_.slot_ids()); },
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

bool FlatIndex::contains(int64_t id) const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    return ids_.contains(id);
}

void FlatIndex::reset() {
    std::unique_lock<std::shared_mutex> lk(mu_);
    store_.clear();
    ids_.clear();
}

// Payload of kind Flat: nbits u32, reserved u32 (0), ntotal u64, next_id i64,
// codes (ntotal rows of nbits/8 bytes, row-major), ids (ntotal i64).
std::vector<uint8_t> FlatIndex::to_bytes() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    const int64_t n = store_.size();
    PayloadWriter w;
    w.reserve(static_cast<std::size_t>(24 + n * (code_size() + 8)));
    w.put<uint32_t>(static_cast<uint32_t>(nbits_));
    w.put<uint32_t>(0);
    w.put<uint64_t>(static_cast<uint64_t>(n));
    w.put<int64_t>(ids_.next_id());
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
    const auto nbits = r.get<uint32_t>("nbits");
    if (nbits == 0 || nbits % 8 != 0 || nbits > (1u << 24)) r.fail("invalid nbits " + std::to_string(nbits));
    r.get<uint32_t>("reserved");
    const auto n = r.get<uint64_t>("ntotal");
    const auto next_id = r.get<int64_t>("next_id");
    const std::size_t code_size = nbits / 8;
    if (n > size / (code_size + 8)) r.fail("ntotal " + std::to_string(n) + " does not fit in the file");
    const uint8_t* codes = r.take(static_cast<std::size_t>(n) * code_size, "codes");
    const uint8_t* id_bytes = r.take(static_cast<std::size_t>(n) * 8, "ids");
    r.expect_end();
    std::vector<int64_t> ids(static_cast<std::size_t>(n));
    if (n) std::memcpy(ids.data(), id_bytes, static_cast<std::size_t>(n) * 8);
    FlatIndex index(static_cast<int>(nbits));
    try {
        index.add(codes, static_cast<int64_t>(n), ids.data());
    } catch (const std::invalid_argument& e) {
        r.fail(std::string("invalid ids: ") + e.what());
    }
    if (next_id < index.ids_.next_id()) r.fail("next_id " + std::to_string(next_id) + " is below the largest id");
    index.ids_.bump_next_id(next_id);
    return index;
}

}  // namespace hashindex
