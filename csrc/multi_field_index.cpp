#include "multi_field_index.h"

#include <algorithm>
#include <cstring>
#include <cmath>
#include <limits>
#include <mutex>
#include <unordered_map>

#include "dispatch.h"
#include "errors.h"
#include "flat_index.h"
#include "format.h"
#include "interrupt.h"
#include "parallel.h"
#include "results.h"
#include "mih_engine.h"
#include "multi_field_top.h"
#include "scan.h"

namespace hashindex {

MultiFieldIndex::MultiFieldIndex(std::vector<std::string> names, std::vector<int> nbits, bool mih)
    : IndexCore(nbits), names_(std::move(names)), nbits_(std::move(nbits)), mih_(mih) {
    HX_CHECK(names_.size() == nbits_.size(), "one name per field");
}

MultiFieldIndex::MultiFieldIndex(MultiFieldIndex&& o) noexcept
    : IndexCore(std::move(o)), names_(std::move(o.names_)), nbits_(std::move(o.nbits_)), mih_(o.mih_),
      tables_(std::move(o.tables_)) {}

MultiFieldIndex::~MultiFieldIndex() = default;

void MultiFieldIndex::add(const std::vector<const uint8_t*>& fields, int64_t n, const int64_t* ids,
                          const int64_t* groups) {
    std::unique_lock<std::shared_mutex> lk(mu_);
    // The tables hold 32-bit slots.
    if (mih_ && items_.size() + n >= (int64_t{1} << 32))
        throw std::invalid_argument("codes: a MultiFieldIndex with mih holds fewer than 2^32 items; it has " +
                                    std::to_string(items_.size()) + ", adding " + std::to_string(n));
    items_.add(fields, n, ids, groups);
    maybe_rebuild_tables();
}

namespace {

// One query's sink for the weighted kernel: re-checks each reported slot exactly (the weighted sum
// in field order, as the Python oracle adds it), applies the group rules and the filter, offers it
// to the query's Top, and lowers the kernel's bound to the new k-th best.
struct FusedSink : WeightedSink {
    MultiFieldIndex::Top* top;
    const std::vector<double>* weights;  // of the active fields, in field order
    const int64_t* slot_ids;
    const int64_t* groups;
    const uint8_t* pass;
    int64_t begin, end, exclude;

    void tighten() {
        const double bar = top->bar();
        // A margin for the kernel's own summation order (FMA, lanes): it must never drop a slot the
        // exact sum keeps; the exact re-check below decides.
        bound = bar == kInf ? kInf : bar + std::abs(bar) * 1e-9 + 1e-9;
    }
    static void cb(WeightedSink* self, int64_t first_slot, uint32_t lanes, const uint32_t* dist) {
        auto* s = static_cast<FusedSink*>(self);
        const std::size_t nf = s->weights->size();
        while (lanes) {
            const int l = __builtin_ctz(lanes);
            lanes &= lanes - 1;
            const int64_t slot = first_slot + l;
            if (slot < s->begin || slot >= s->end || (s->pass && !s->pass[slot])) continue;
            double d = 0.0;
            for (std::size_t f = 0; f < nf; ++f) d += (*s->weights)[f] * dist[f * kBlock + static_cast<std::size_t>(l)];
            if (d > s->top->bar()) continue;
            const int64_t g = s->groups ? s->groups[slot] : kNoGroup;
            if (s->exclude != kNoGroup && g == s->exclude) continue;
            s->top->offer(WeightedHit{d, slot_id(s->slot_ids, slot), g});
        }
        s->tighten();
    }
};

}  // namespace

void MultiFieldIndex::scan_range(const Ask& ask, int64_t q0, int64_t q1, int64_t slot_begin, int64_t slot_end,
                                 Top* tops) const {
    const Kernels& kern = active_kernels();
    std::vector<FieldBlocks> fields;
    std::vector<double> weights;
    for (int f = 0; f < nfields(); ++f) {
        const FieldQuery& fq = ask.queries[static_cast<std::size_t>(f)];
        if (fq.weight <= 0) continue;
        const CodeStore& store = items_.store(f);
        fields.push_back(FieldBlocks{store.blocks(), store.words(),
                                     ask.qwords[static_cast<std::size_t>(f)].data() + q0 * store.words(), fq.weight});
        weights.push_back(fq.weight);
    }
    const int64_t nqb = q1 - q0;
    std::vector<FusedSink> sinks(static_cast<std::size_t>(nqb));
    std::vector<WeightedSink*> ptrs(static_cast<std::size_t>(nqb));
    for (int64_t i = 0; i < nqb; ++i) {
        FusedSink& s = sinks[static_cast<std::size_t>(i)];
        s.on_hits = &FusedSink::cb;
        s.top = &tops[i];
        s.weights = &weights;
        s.slot_ids = items_.ids().slot_ids();
        s.groups = items_.groups_data();
        s.pass = ask.pass;
        s.begin = slot_begin;
        s.end = slot_end;
        s.exclude = ask.exclude(q0 + i);
        s.tighten();
        ptrs[static_cast<std::size_t>(i)] = &s;
    }
    std::vector<uint32_t> scratch(fields.size() * kBlock);
    // The driver (scan.h) hands over L2-sized chunks; a range from elsewhere is scanned in one call.
    kern.weighted(fields.data(), static_cast<int>(fields.size()), slot_begin / kBlock, (slot_end + kBlock - 1) / kBlock,
                  nqb, ptrs.data(), scratch.data());
}

void MultiFieldIndex::search(const std::vector<FieldQuery>& queries, int64_t nq, int64_t k,
                             const int64_t* exclude_groups, bool one_per_group, int threads, double* distances,
                             int64_t* ids, const IdFilter& filter, MihStats* stats) const {
    HX_CHECK(k > 0, "k must be > 0, got " + std::to_string(k));
    HX_CHECK(static_cast<int>(queries.size()) == nfields(), "one query entry per field");
    bool any = false;
    for (const FieldQuery& fq : queries) {
        HX_CHECK(fq.weight >= 0 && fq.weight < kInf, "weights must be finite and >= 0");
        HX_CHECK(fq.weight == 0 || fq.rows != nullptr, "a field with a positive weight needs queries");
        any = any || fq.weight > 0;
    }
    HX_CHECK(any, "at least one weight must be > 0");
    MihStats local;
    MihStats& st = stats ? *stats : local;
    st = MihStats{};
    st.queries = nq;
    std::shared_lock<std::shared_mutex> lk(mu_);
    std::vector<std::vector<uint64_t>> qwords(queries.size());
    for (std::size_t f = 0; f < queries.size(); ++f)
        if (queries[f].weight > 0) qwords[f] = rows_to_words(queries[f].rows, nq, code_size(static_cast<int>(f)));
    if (auto g = gather(items_, filter, nq, lk)) {  // the tables are not copied
        MultiFieldIndex sub(names_, nbits_);
        sub.items_ = std::move(*g);
        sub.scan_search(Ask{qwords, queries, k, exclude_groups, one_per_group, nullptr}, nq, threads, distances, ids);
        st.by_scan = nq;
        return;
    }
    const std::vector<uint8_t> mask = filter.active() ? slot_mask(filter, items_.ids(), items_.size(), nullptr) : std::vector<uint8_t>();
    const Ask ask{qwords, queries, k, exclude_groups, one_per_group, mask.empty() ? nullptr : mask.data()};
    if (tables_) return search_tables(ask, nq, threads, distances, ids, st);
    st.by_scan = nq;
    scan_search(ask, nq, threads, distances, ids);
}

void MultiFieldIndex::scan_search(const Ask& ask, int64_t nq, int threads, double* distances, int64_t* ids) const {
    const int64_t n = items_.size(), k = ask.k;
    drive_scan<Top>(
        (n + kBlock - 1) / kBlock, int64_t{kBlock} * 8 * active_words(ask.queries), nq, threads,
        [&](int64_t) { return Top{k, ask.one_per_group, {}, {}}; },
        [&](int64_t b0, int64_t b1, int64_t q0, int64_t nqs, Top* tops) {
            scan_range(ask, q0, q0 + nqs, b0 * kBlock, std::min(n, b1 * kBlock), tops);
        },
        [&](int64_t q, Top& top) { top.write(distances + q * k, ids + q * k); });
}

void MultiFieldIndex::remove(const int64_t* ids, int64_t n) {
    std::unique_lock<std::shared_mutex> lk(mu_);
    items_.remove(ids, n, [&](int64_t from, int64_t to) {
        if (tables_) tables_->moved(from, to);
    });
    maybe_rebuild_tables();
}

void MultiFieldIndex::get(int field, const int64_t* ids, int64_t n, uint8_t* out) const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    items_.get(field, ids, n, out);
}

void MultiFieldIndex::get_groups(const int64_t* ids, int64_t n, int64_t* out) const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    items_.get_groups(ids, n, out);
}

void MultiFieldIndex::reset() {
    std::unique_lock<std::shared_mutex> lk(mu_);
    items_.clear();
    tables_.reset();
}

// Payload of kind MultiField, format 2: nfields u32; per field nbits u32, name length u32 and name
// bytes; n u64, next_id i64, flags u32 (Items::flags, and bit 2: mih); then Items' body. Format 1
// (still read): the same header without flags, per field n code rows, ids, groups.
std::vector<uint8_t> MultiFieldIndex::to_bytes() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    PayloadWriter w;
    w.put<uint32_t>(static_cast<uint32_t>(nfields()));
    for (int f = 0; f < nfields(); ++f) {
        w.put<uint32_t>(static_cast<uint32_t>(nbits_[static_cast<std::size_t>(f)]));
        w.put<uint32_t>(static_cast<uint32_t>(names_[static_cast<std::size_t>(f)].size()));
        w.put_bytes(names_[static_cast<std::size_t>(f)].data(), names_[static_cast<std::size_t>(f)].size());
    }
    w.put<uint64_t>(static_cast<uint64_t>(items_.size()));
    w.put<int64_t>(items_.ids().next_id());
    const uint32_t flags = items_.flags();
    w.put<uint32_t>(flags | (mih_ ? kMihFlag : 0u));
    items_.write_body(w, flags);
    return w.finish(IndexKind::MultiField);
}

MultiFieldIndex MultiFieldIndex::from_bytes(const uint8_t* data, std::size_t size, const std::string& source) {
    return from_image(data, size, source, nullptr, true);
}

MultiFieldIndex MultiFieldIndex::from_image(const uint8_t* data, std::size_t size, const std::string& source,
                                            std::shared_ptr<const void> keep, bool verify) {
    PayloadReader r(data, size, IndexKind::MultiField, source, verify || !keep);
    const uint32_t nfields = r.get<uint32_t>("nfields");
    if (nfields == 0 || nfields > 1024) r.fail("invalid number of fields " + std::to_string(nfields));
    std::vector<std::string> names;
    std::vector<int> nbits;
    for (uint32_t f = 0; f < nfields; ++f) {
        const uint32_t b = r.get_nbits();
        const uint32_t len = r.get<uint32_t>("name length");
        if (len > r.remaining()) r.fail("field name longer than the file");
        const uint8_t* name = r.take(len, "field name");
        names.emplace_back(reinterpret_cast<const char*>(name), len);
        nbits.push_back(static_cast<int>(b));
    }
    const uint64_t n = r.get<uint64_t>("ntotal");
    const int64_t next_id = r.get<int64_t>("next_id");
    if (r.version() == 1) return from_v1(r, std::move(names), std::move(nbits), n, next_id);
    const uint32_t flags = r.get<uint32_t>("flags");
    if (flags & ~(Items::kDenseIds | Items::kNoGroups | kMihFlag)) r.fail("unknown flags " + std::to_string(flags));
    MultiFieldIndex index(std::move(names), std::move(nbits), flags & kMihFlag);
    index.items_.read_body(r, n, next_id, flags & ~kMihFlag, std::move(keep), verify);
    r.expect_end();
    index.maybe_rebuild_tables();  // the tables read every code: opening in place costs a scan then
    return index;
}

// Format 1's arrays: per field n code rows, n ids, n groups (-1: none), added as add adds them.
MultiFieldIndex MultiFieldIndex::from_v1(PayloadReader& r, std::vector<std::string> names, std::vector<int> nbits,
                                         uint64_t n, int64_t next_id) {
    MultiFieldIndex index(std::move(names), std::move(nbits));
    if (next_id < 0) r.fail("invalid next_id " + std::to_string(next_id));
    uint64_t row_bytes = 16;
    for (const int b : index.nbits_) row_bytes += static_cast<uint64_t>(b / 8);
    if (n > r.remaining() / row_bytes) r.fail("ntotal " + std::to_string(n) + " does not fit in the file");
    const auto count = static_cast<int64_t>(n);
    std::vector<const uint8_t*> fields;
    for (const int b : index.nbits_) fields.push_back(r.take(static_cast<std::size_t>(count * (b / 8)), "codes"));
    std::vector<int64_t> ids(static_cast<std::size_t>(n)), groups(static_cast<std::size_t>(n));
    // memcpy from or to null, even of 0 bytes, is undefined (found by fuzz/fuzz_load.cpp)
    if (n) std::memcpy(ids.data(), r.take(static_cast<std::size_t>(n) * 8, "ids"), static_cast<std::size_t>(n) * 8);
    if (n) std::memcpy(groups.data(), r.take(static_cast<std::size_t>(n) * 8, "groups"), static_cast<std::size_t>(n) * 8);
    r.expect_end();
    for (const int64_t g : groups)
        if (g < kNoGroup) r.fail("invalid group " + std::to_string(g));
    try {
        index.items_.add(fields, count, ids.data(), groups.data());
    } catch (const std::invalid_argument& e) {
        r.fail(std::string("invalid ids: ") + e.what());
    }
    if (!index.restore_next_id(next_id)) r.fail("next_id " + std::to_string(next_id) + " is below the largest id");
    return index;
}

std::size_t MultiFieldIndex::memory_bytes() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    return items_.memory_bytes() + (tables_ ? tables_->memory_bytes() : 0);
}

}  // namespace hashindex
