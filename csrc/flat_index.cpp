#include "flat_index.h"

#include <algorithm>
#include <mutex>

#include "errors.h"
#include "format.h"
#include "scan.h"

namespace hashindex {

void FlatIndex::add(const uint8_t* codes, int64_t n, const int64_t* ids) {
    std::unique_lock<std::shared_mutex> lk(mu_);
    items_.add({codes}, n, ids, nullptr);
}

void knn_scan(const CodeStore& store, const int64_t* slot_ids, const uint8_t* pass, const uint8_t* queries,
              int64_t nq, int64_t k, int threads, int32_t* distances, int64_t* ids) {
    const std::vector<uint64_t> qwords = rows_to_words(queries, nq, store.code_size());
    const int64_t n = store.size();
    const int32_t nbits = store.code_size() * 8;
    if (nbits > kCountedBits) {
        scan_store<TopKSink>(
            store, qwords.data(), nq, threads, [&](int64_t) { return TopKSink(k, n, slot_ids, pass); },
            [&](int64_t q, TopKSink& sink) { sink.write_sorted(distances + q * k, ids + q * k); });
        return;
    }
    scan_store<CountingSink>(
        store, qwords.data(), nq, threads,
        [&](int64_t) {
            CountingSink sink(nbits, k);
            sink.reads(slot_ids, n, pass);
            return sink;
        },
        [&](int64_t q, CountingSink& sink) { write_padded(sink.result(), k, distances + q * k, ids + q * k); });
}

RangeResult range_scan(const CodeStore& store, const int64_t* slot_ids, const uint8_t* pass, const uint8_t* queries,
                       int64_t nq, int32_t radius, int threads) {
    const std::vector<uint64_t> qwords = rows_to_words(queries, nq, store.code_size());
    const int64_t n = store.size();
    std::vector<std::vector<Hit>> per_query(static_cast<std::size_t>(nq));
    scan_store<RangeSink>(
        store, qwords.data(), nq, threads, [&](int64_t) { return RangeSink(radius, n, slot_ids, pass); },
        [&](int64_t q, RangeSink& sink) { per_query[static_cast<std::size_t>(q)] = sink.sorted(); });
    return ranges_of(per_query);
}

RangeResult ranges_of(const std::vector<std::vector<Hit>>& per_query) {
    const auto nq = static_cast<int64_t>(per_query.size());
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

std::optional<Items> gather(const Items& items, const IdFilter& filter, int64_t nq,
                            std::shared_lock<std::shared_mutex>& lk) {
    if (!gather_pays(filter, items.size(), nq)) return std::nullopt;
    std::optional<Items> copy(items.subset(allowed_slots(filter, items.ids())));
    lk.unlock();
    return copy;
}

void FlatIndex::search(const uint8_t* queries, int64_t nq, int64_t k, int threads, int32_t* distances,
                       int64_t* ids, const IdFilter& filter) const {
    HX_CHECK(k > 0, "k must be > 0, got " + std::to_string(k));
    std::shared_lock<std::shared_mutex> lk(mu_);
    if (const auto g = gather(items_, filter, nq, lk))
        return knn_scan(g->store(0), g->ids().slot_ids(), nullptr, queries, nq, k, threads, distances, ids);
    const std::vector<uint8_t> mask = filter.active() ? slot_mask(filter, items_.ids(), items_.size(), nullptr) : std::vector<uint8_t>();
    knn_scan(items_.store(0), items_.ids().slot_ids(), mask.empty() ? nullptr : mask.data(), queries, nq, k, threads,
             distances, ids);
}

RangeResult FlatIndex::range_search(const uint8_t* queries, int64_t nq, int32_t radius, int threads,
                                    const IdFilter& filter) const {
    HX_CHECK(radius >= 0, "radius must be >= 0, got " + std::to_string(radius));
    std::shared_lock<std::shared_mutex> lk(mu_);
    if (const auto g = gather(items_, filter, nq, lk))
        return range_scan(g->store(0), g->ids().slot_ids(), nullptr, queries, nq, radius, threads);
    const std::vector<uint8_t> mask = filter.active() ? slot_mask(filter, items_.ids(), items_.size(), nullptr) : std::vector<uint8_t>();
    return range_scan(items_.store(0), items_.ids().slot_ids(), mask.empty() ? nullptr : mask.data(), queries, nq,
                      radius, threads);
}

void FlatIndex::remove(const int64_t* ids, int64_t n) {
    std::unique_lock<std::shared_mutex> lk(mu_);
    items_.remove(ids, n, [](int64_t, int64_t) {});
}

void FlatIndex::get(const int64_t* ids, int64_t n, uint8_t* out) const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    items_.get(0, ids, n, out);
}

void FlatIndex::reset() {
    std::unique_lock<std::shared_mutex> lk(mu_);
    items_.clear();
}

// Payload of kind Flat, format 2: nbits u32, flags u32 (bit 0: the ids are 0..n-1 and not stored),
// ntotal u64, next_id i64, zero padding to a 64-byte file offset, the codes in the kernels' blocked
// layout (CodeStore::layout_bytes), then ntotal int64 ids unless bit 0. Format 1: CodesPayload
// (format.h: row-major codes and ids), still read.
std::vector<uint8_t> FlatIndex::to_bytes() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    const int64_t n = items_.size();
    const uint32_t flags = items_.ids().dense() ? Items::kDenseIds : 0u;
    PayloadWriter w;
    w.reserve(static_cast<std::size_t>(items_.store(0).layout_bytes(n) + (flags ? 0 : n * 8) + 64));
    w.put<uint32_t>(static_cast<uint32_t>(nbits()));
    w.put<uint32_t>(flags);
    w.put<uint64_t>(static_cast<uint64_t>(n));
    w.put<int64_t>(items_.ids().next_id());
    items_.write_body(w, flags | Items::kNoGroups);
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
    const uint32_t nbits = r.get_nbits();
    const uint32_t flags = r.get<uint32_t>("flags");
    if (flags & ~Items::kDenseIds) r.fail("unknown flags " + std::to_string(flags));
    const uint64_t n = r.get<uint64_t>("ntotal");
    const int64_t next_id = r.get<int64_t>("next_id");
    FlatIndex index(static_cast<int>(nbits));
    index.items_.read_body(r, n, next_id, flags | Items::kNoGroups, std::move(keep), verify);
    r.expect_end();
    return index;
}

std::size_t FlatIndex::memory_bytes() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    return items_.memory_bytes();
}

}  // namespace hashindex
