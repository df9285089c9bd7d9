#include "flat_index.h"

#include <algorithm>
#include <mutex>

#include "errors.h"
#include "format.h"
#include <cstring>
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

void knn_scan(const CodeStore& store, const int64_t* slot_ids, const uint8_t* pass, const uint8_t* queries,
              int64_t nq, int64_t k, int threads, int32_t* distances, int64_t* ids) {
    const std::vector<uint64_t> qwords = rows_to_words(queries, nq, store.code_size());
    const int64_t n = store.size();
    scan_store<TopKSink>(
        store, qwords.data(), nq, threads, [&](int64_t) { return TopKSink(k, n, slot_ids, pass); },
        [&](int64_t q, TopKSink& sink) { sink.write_sorted(distances + q * k, ids + q * k); });
}

RangeResult range_scan(const CodeStore& store, const int64_t* slot_ids, const uint8_t* pass, const uint8_t* queries,
                       int64_t nq, int32_t radius, int threads) {
    const std::vector<uint64_t> qwords = rows_to_words(queries, nq, store.code_size());
    const int64_t n = store.size();
    std::vector<std::vector<Hit>> per_query(static_cast<std::size_t>(nq));
    scan_store<RangeSink>(
        store, qwords.data(), nq, threads, [&](int64_t) { return RangeSink(radius, n, slot_ids, pass); },
        [&](int64_t q, RangeSink& sink) { per_query[static_cast<std::size_t>(q)] = sink.sorted(); });
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

Gathered FlatIndex::gather(const IdFilter& filter) const {
    Gathered g(code_size());
    const std::vector<int64_t> slots = allowed_slots(filter, ids_);
    g.store.append_slots(store_, slots.data(), static_cast<int64_t>(slots.size()));
    g.ids.reserve(slots.size());
    for (const int64_t s : slots) g.ids.push_back(ids_.id_of(s));
    return g;
}

void FlatIndex::search(const uint8_t* queries, int64_t nq, int64_t k, int threads, int32_t* distances,
                       int64_t* ids, const IdFilter& filter) const {
    HX_CHECK(k > 0, "k must be > 0, got " + std::to_string(k));
    std::shared_lock<std::shared_mutex> lk(mu_);
    const int64_t n = store_.size();
    if (gather_pays(filter, n, nq)) {
        const Gathered g = gather(filter);
        lk.unlock();
        knn_scan(g.store, g.ids.data(), nullptr, queries, nq, k, threads, distances, ids);
        return;
    }
    const std::vector<uint8_t> mask = filter.active() ? slot_mask(filter, ids_, n, nullptr) : std::vector<uint8_t>();
    knn_scan(store_, ids_.slot_ids(), mask.empty() ? nullptr : mask.data(), queries, nq, k, threads, distances, ids);
}

RangeResult FlatIndex::range_search(const uint8_t* queries, int64_t nq, int32_t radius, int threads,
                                    const IdFilter& filter) const {
    HX_CHECK(radius >= 0, "radius must be >= 0, got " + std::to_string(radius));
    std::shared_lock<std::shared_mutex> lk(mu_);
    const int64_t n = store_.size();
    if (gather_pays(filter, n, nq)) {
        const Gathered g = gather(filter);
        lk.unlock();
        return range_scan(g.store, g.ids.data(), nullptr, queries, nq, radius, threads);
    }
    const std::vector<uint8_t> mask = filter.active() ? slot_mask(filter, ids_, n, nullptr) : std::vector<uint8_t>();
    return range_scan(store_, ids_.slot_ids(), mask.empty() ? nullptr : mask.data(), queries, nq, radius, threads);
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
    return ids_.all();
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

// Payload of kind Flat, format 2: nbits u32, flags u32 (bit 0: the ids are 0..n-1 and not stored),
// ntotal u64, next_id i64, zero padding to a 64-byte file offset, the codes in the kernels' blocked
// layout (CodeStore::layout_bytes), then ntotal int64 ids unless bit 0. Format 1: CodesPayload
// (format.h: row-major codes and ids), still read.
std::vector<uint8_t> FlatIndex::to_bytes() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    const int64_t n = store_.size();
    const bool dense = ids_.dense();
    PayloadWriter w;
    w.reserve(static_cast<std::size_t>(store_.layout_bytes(n) + (dense ? 0 : n * 8) + 64));
    w.put<uint32_t>(static_cast<uint32_t>(nbits_));
    w.put<uint32_t>(dense ? 1u : 0u);
    w.put<uint64_t>(static_cast<uint64_t>(n));
    w.put<int64_t>(ids_.next_id());
    w.pad_to(kArrayAlign);
    if (n) w.put_bytes(store_.blocks(), static_cast<std::size_t>(store_.layout_bytes(n)));
    if (!dense && n) w.put_bytes(ids_.slot_ids(), static_cast<std::size_t>(n) * sizeof(int64_t));
    return w.finish(IndexKind::Flat);
}

FlatIndex FlatIndex::from_bytes(const uint8_t* data, std::size_t size, const std::string& source) {
    return from_image(data, size, source, nullptr, true);
}

FlatIndex FlatIndex::from_image(const uint8_t* data, std::size_t size, const std::string& source,
                                std::shared_ptr<const void> keep, bool verify) {
    PayloadReader r(data, size, IndexKind::Flat, source, verify || !keep);
    if (r.version() == 1) {
        const CodesPayload p = read_codes_payload(r);
        return index_from_payload(p, r, FlatIndex(static_cast<int>(p.nbits)));
    }
    const uint32_t nbits = r.get<uint32_t>("nbits");
    if (nbits == 0 || nbits % 8 != 0 || nbits > (1u << 24)) r.fail("invalid nbits " + std::to_string(nbits));
    const uint32_t flags = r.get<uint32_t>("flags");
    if (flags & ~1u) r.fail("unknown flags " + std::to_string(flags));
    const bool dense = flags & 1u;
    const uint64_t n = r.get<uint64_t>("ntotal");
    const int64_t next_id = r.get<int64_t>("next_id");
    r.skip_padding(kArrayAlign);
    FlatIndex index(static_cast<int>(nbits));
    const std::size_t block_row = static_cast<std::size_t>(index.store_.words()) * 8;  // bytes per code in the layout
    if (n > r.remaining() / (block_row + (dense ? 0 : 8))) r.fail("ntotal " + std::to_string(n) + " does not fit in the file");
    const auto count = static_cast<int64_t>(n);
    const uint8_t* blocks = r.take(static_cast<std::size_t>(index.store_.layout_bytes(count)), "codes");
    const uint8_t* id_bytes = dense ? nullptr : r.take(static_cast<std::size_t>(n) * 8, "ids");
    r.expect_end();
    if (next_id < (dense ? count : 0) || next_id > kMaxId + 1) r.fail("invalid next_id " + std::to_string(next_id));
    if (keep) {
        index.store_.adopt(reinterpret_cast<const uint64_t*>(blocks), count, keep);
        if (dense)
            index.ids_.set_dense(count);
        else
            index.ids_.adopt(reinterpret_cast<const int64_t*>(id_bytes), count, keep, next_id);
    } else {
        index.store_.assign_blocks(blocks, count);
        if (dense) {
            index.ids_.set_dense(count);
        } else {
            std::vector<int64_t> ids(static_cast<std::size_t>(n));
            if (n) std::memcpy(ids.data(), id_bytes, static_cast<std::size_t>(n) * 8);
            try {  // the same checks as add, then the ids as add stores them (dense if they are 0..n-1)
                index.ids_.check_new(ids.data(), count);
            } catch (const std::invalid_argument& e) {
                r.fail(std::string("invalid ids: ") + e.what());
            }
            index.ids_.append(ids.data(), count);
            if (next_id < index.ids_.next_id()) r.fail("next_id " + std::to_string(next_id) + " is below the largest id");
        }
    }
    if (verify && keep) {
        try {
            index.ids_.validate();
        } catch (const std::invalid_argument& e) {
            r.fail(std::string("invalid ids: ") + e.what());
        }
    }
    index.ids_.bump_next_id(next_id);
    return index;
}

std::size_t FlatIndex::memory_bytes() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    return store_.memory_bytes() + ids_.memory_bytes();
}

bool FlatIndex::restore_next_id(int64_t next_id) {
    std::unique_lock<std::shared_mutex> lk(mu_);
    if (next_id < ids_.next_id()) return false;
    ids_.bump_next_id(next_id);
    return true;
}

}  // namespace hashindex
