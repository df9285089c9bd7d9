#include "multi_field_index.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <set>
#include <unordered_map>

#include "dispatch.h"
#include "errors.h"
#include "format.h"
#include "interrupt.h"
#include "parallel.h"
#include "results.h"
#include "multi_field_top.h"
#include "scan.h"

namespace hashindex {
namespace {

// Items scanned per pass of a query block: 1024 codes of a few hundred bytes per field stay in L2
// while every query of the block passes over them.
constexpr int64_t kChunkSlots = 1024;
// Queries sharing the passes over one chunk (the kernel takes them 4 at a time): the chunk comes
// from memory once per block of queries, so larger blocks cut memory traffic (32 left "both fields"
// at 1.30x FlatIndex's time at 200k items; see benchmarks/RESULTS.md).
constexpr int64_t kQueryBlock = 256;

}  // namespace

MultiFieldIndex::MultiFieldIndex(std::vector<std::string> names, std::vector<int> nbits, bool mih)
    : names_(std::move(names)), nbits_(std::move(nbits)), mih_(mih) {
    HX_CHECK(!nbits_.empty(), "at least one field is needed");
    HX_CHECK(names_.size() == nbits_.size(), "one name per field");
    for (int b : nbits_) {
        HX_CHECK(b > 0 && b % 8 == 0 && b <= (1 << 24),
                 "nbits must be a positive multiple of 8, at most 2^24, got " + std::to_string(b));
        stores_.emplace_back(b / 8);
    }
}

MultiFieldIndex::MultiFieldIndex(MultiFieldIndex&& o) noexcept
    : names_(std::move(o.names_)), nbits_(std::move(o.nbits_)), stores_(std::move(o.stores_)),
      groups_(std::move(o.groups_)), groups_view_(o.groups_view_), groups_keep_(std::move(o.groups_keep_)),
      no_groups_(o.no_groups_), ids_(std::move(o.ids_)), mih_(o.mih_), tables_(std::move(o.tables_)) {}

MultiFieldIndex::~MultiFieldIndex() = default;

void MultiFieldIndex::own_groups() {
    if (!no_groups_ && !groups_view_) return;
    std::vector<int64_t> owned(static_cast<std::size_t>(ids_.size()));
    for (int64_t s = 0; s < ids_.size(); ++s) owned[static_cast<std::size_t>(s)] = group_at(s);
    groups_.swap(owned);
    groups_view_ = nullptr;
    groups_keep_.reset();
    no_groups_ = false;
}

int64_t MultiFieldIndex::size() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    return ids_.size();
}

void MultiFieldIndex::add(const std::vector<const uint8_t*>& fields, int64_t n, const int64_t* ids,
                          const int64_t* groups) {
    HX_CHECK(n >= 0, "number of items must be >= 0");
    HX_CHECK(static_cast<int>(fields.size()) == nfields(), "one array per field");
    if (groups)
        for (int64_t i = 0; i < n; ++i)
            HX_CHECK(groups[i] >= kNoGroup, "groups must be >= 0, got " + std::to_string(groups[i]));
    std::unique_lock<std::shared_mutex> lk(mu_);
    // The tables hold 32-bit slots.
    if (mih_ && ids_.size() + n >= (int64_t{1} << 32))
        throw std::invalid_argument("codes: a MultiFieldIndex with mih holds fewer than 2^32 items; it has " +
                                    std::to_string(ids_.size()) + ", adding " + std::to_string(n));
    if (ids)
        ids_.check_new(ids, n);
    else
        check_default_ids(ids_.next_id(), n);
    const int64_t before = ids_.size();
    own_groups();
    try {  // all or nothing: a failed allocation leaves every field as it was
        groups_.reserve(static_cast<std::size_t>(before + n));
        for (int f = 0; f < nfields(); ++f) stores_[static_cast<std::size_t>(f)].append(fields[static_cast<std::size_t>(f)], n);
        for (int64_t i = 0; i < n; ++i) groups_.push_back(groups ? groups[i] : kNoGroup);
        ids_.append(ids, n);
    } catch (...) {
        for (CodeStore& store : stores_) store.truncate(before);
        groups_.resize(static_cast<std::size_t>(before));
        throw;
    }
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

void MultiFieldIndex::scan_range(const std::vector<std::vector<uint64_t>>& qwords,
                                 const std::vector<FieldQuery>& queries, int64_t q0, int64_t q1, int64_t slot_begin,
                                 int64_t slot_end, const int64_t* exclude_groups, const uint8_t* pass,
                                 Top* tops) const {
    const Kernels& kern = active_kernels();
    std::vector<FieldBlocks> fields;
    std::vector<double> weights;
    for (int f = 0; f < nfields(); ++f) {
        const FieldQuery& fq = queries[static_cast<std::size_t>(f)];
        if (fq.weight <= 0) continue;
        const CodeStore& store = stores_[static_cast<std::size_t>(f)];
        fields.push_back(FieldBlocks{store.blocks(), store.words(),
                                     qwords[static_cast<std::size_t>(f)].data() + q0 * store.words(), fq.weight});
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
        s.slot_ids = ids_.slot_ids();
        s.groups = groups_data();
        s.pass = pass;
        s.begin = slot_begin;
        s.end = slot_end;
        s.exclude = exclude_groups ? exclude_groups[q0 + i] : kNoGroup;
        s.tighten();
        ptrs[static_cast<std::size_t>(i)] = &s;
    }
    std::vector<uint32_t> scratch(fields.size() * kBlock);
    // Chunks of items whose codes stay in L2 while every query of the block passes over them.
    for (int64_t c0 = slot_begin; c0 < slot_end; c0 += kChunkSlots) {
        interruption_point();
        const int64_t c1 = std::min(slot_end, c0 + kChunkSlots);
        kern.weighted(fields.data(), static_cast<int>(fields.size()), c0 / kBlock, (c1 + kBlock - 1) / kBlock, nqb,
                      ptrs.data(), scratch.data());
    }
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
    const int64_t n = ids_.size();
    if (gather_pays(filter, n, nq)) {
        const MultiFieldIndex sub = subset(allowed_slots(filter, ids_));
        lk.unlock();
        sub.search(queries, nq, k, exclude_groups, one_per_group, threads, distances, ids);
        st.by_scan = nq;
        return;
    }
    std::vector<std::vector<uint64_t>> qwords(queries.size());
    for (std::size_t f = 0; f < queries.size(); ++f)
        if (queries[f].weight > 0) qwords[f] = rows_to_words(queries[f].rows, nq, code_size(static_cast<int>(f)));
    const std::vector<uint8_t> mask = filter.active() ? slot_mask(filter, ids_, n, nullptr) : std::vector<uint8_t>();
    const uint8_t* pass = mask.empty() ? nullptr : mask.data();
    if (tables_) {
        search_tables(qwords, queries, nq, k, exclude_groups, one_per_group, threads, pass, distances, ids, st);
        return;
    }
    st.by_scan = nq;
    scan_search(qwords, queries, nq, k, exclude_groups, one_per_group, threads, pass, distances, ids);
}

void MultiFieldIndex::scan_search(const std::vector<std::vector<uint64_t>>& qwords,
                                  const std::vector<FieldQuery>& queries, int64_t nq, int64_t k,
                                  const int64_t* exclude_groups, bool one_per_group, int threads, const uint8_t* pass,
                                  double* distances, int64_t* ids) const {
    const int64_t n = ids_.size();
    threads = resolve_threads(threads);
    if (nq >= threads || n < 4 * kChunkSlots) {
        // Blocks of queries, at least one block per thread.
        const int64_t block = std::clamp<int64_t>((nq + threads - 1) / threads, 1, kQueryBlock);
        parallel_for(threads, (nq + block - 1) / block, [&](int64_t t) {
            const int64_t q0 = t * block, q1 = std::min(nq, q0 + block);
            std::vector<Top> tops(static_cast<std::size_t>(q1 - q0), Top{k, one_per_group, {}, {}});
            scan_range(qwords, queries, q0, q1, 0, n, exclude_groups, pass, tops.data());
            for (int64_t q = q0; q < q1; ++q) tops[static_cast<std::size_t>(q - q0)].write(distances + q * k, ids + q * k);
        });
        return;
    }
    // Few queries: each thread takes a block-aligned part of the items; the parts' results merge exactly.
    const int64_t parts = threads;
    const int64_t per = (n / parts + kBlock) / kBlock * kBlock;
    for (int64_t q = 0; q < nq; ++q) {
        std::vector<Top> tops(static_cast<std::size_t>(parts), Top{k, one_per_group, {}, {}});
        parallel_for(threads, parts, [&](int64_t t) {
            scan_range(qwords, queries, q, q + 1, std::min(n, t * per), std::min(n, (t + 1) * per), exclude_groups,
                       pass, &tops[static_cast<std::size_t>(t)]);
        });
        for (int64_t t = 1; t < parts; ++t) tops[0].absorb(tops[static_cast<std::size_t>(t)]);
        tops[0].write(distances + q * k, ids + q * k);
    }
}

MultiFieldIndex MultiFieldIndex::subset(const std::vector<int64_t>& slots) const {
    MultiFieldIndex sub(names_, nbits_);
    const auto m = static_cast<int64_t>(slots.size());
    if (m == 0) return sub;
    std::vector<std::vector<uint8_t>> rows(stores_.size());
    std::vector<const uint8_t*> fields;
    for (std::size_t f = 0; f < stores_.size(); ++f) {
        const int cs = stores_[f].code_size();
        rows[f].resize(slots.size() * static_cast<std::size_t>(cs));
        for (int64_t i = 0; i < m; ++i) stores_[f].read_row(slots[static_cast<std::size_t>(i)], rows[f].data() + i * cs);
        fields.push_back(rows[f].data());
    }
    std::vector<int64_t> sub_ids, sub_groups;
    for (const int64_t s : slots) {
        sub_ids.push_back(ids_.id_of(s));
        sub_groups.push_back(group_at(s));
    }
    sub.add(fields, m, sub_ids.data(), sub_groups.data());
    return sub;
}

void MultiFieldIndex::remove(const int64_t* ids, int64_t n) {
    std::unique_lock<std::shared_mutex> lk(mu_);
    ids_.check_present(ids, n);
    for (int64_t i = 0; i < n; ++i) {
        const int64_t slot = ids_.slot_of(ids[i]);
        const int64_t last = ids_.size() - 1;
        for (CodeStore& store : stores_) {
            if (slot != last) store.move(last, slot);
            store.truncate(last);
        }
        own_groups();
        groups_[static_cast<std::size_t>(slot)] = groups_[static_cast<std::size_t>(last)];
        groups_.pop_back();
        ids_.remove_by_moving_last(slot);
        tables_moved(last, slot);
    }
    maybe_rebuild_tables();
}

void MultiFieldIndex::get(int field, const int64_t* ids, int64_t n, uint8_t* out) const {
    HX_CHECK(field >= 0 && field < nfields(), "field out of range");
    std::shared_lock<std::shared_mutex> lk(mu_);
    for (int64_t i = 0; i < n; ++i) ids_.slot_of(ids[i]);
    const CodeStore& store = stores_[static_cast<std::size_t>(field)];
    for (int64_t i = 0; i < n; ++i) store.read_row(ids_.slot_of(ids[i]), out + i * store.code_size());
}

void MultiFieldIndex::get_groups(const int64_t* ids, int64_t n, int64_t* out) const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    for (int64_t i = 0; i < n; ++i) ids_.slot_of(ids[i]);
    for (int64_t i = 0; i < n; ++i) out[i] = group_at(ids_.slot_of(ids[i]));
}

int64_t MultiFieldIndex::next_id() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    return ids_.next_id();
}

std::vector<int64_t> MultiFieldIndex::ids() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    return ids_.all();
}

bool MultiFieldIndex::contains(int64_t id) const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    return ids_.contains(id);
}

void MultiFieldIndex::reset() {
    std::unique_lock<std::shared_mutex> lk(mu_);
    for (CodeStore& store : stores_) store.clear();
    groups_.clear();
    groups_view_ = nullptr;
    groups_keep_.reset();
    no_groups_ = false;
    ids_.clear();
    tables_.reset();
}

// Payload of kind MultiField, format 2: nfields u32; per field nbits u32, name length u32 and name
// bytes; n u64, next_id i64, flags u32 (bit 0: ids are 0..n-1 and not stored; bit 1: no item has a
// group, none stored); zero padding to a 64-byte file offset; per field the codes in the blocked
// layout (each a multiple of 64 bytes); n int64 ids unless bit 0; n int64 groups unless bit 1.
// Format 1 (still read): the same header without flags, per field n code rows, ids, groups.
std::vector<uint8_t> MultiFieldIndex::to_bytes() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    const int64_t n = ids_.size();
    const bool dense = ids_.dense();
    bool grouped = false;
    for (int64_t s = 0; s < n && !grouped; ++s) grouped = group_at(s) != kNoGroup;
    PayloadWriter w;
    w.put<uint32_t>(static_cast<uint32_t>(nfields()));
    for (int f = 0; f < nfields(); ++f) {
        w.put<uint32_t>(static_cast<uint32_t>(nbits_[static_cast<std::size_t>(f)]));
        w.put<uint32_t>(static_cast<uint32_t>(names_[static_cast<std::size_t>(f)].size()));
        w.put_bytes(names_[static_cast<std::size_t>(f)].data(), names_[static_cast<std::size_t>(f)].size());
    }
    w.put<uint64_t>(static_cast<uint64_t>(n));
    w.put<int64_t>(ids_.next_id());
    w.put<uint32_t>((dense ? 1u : 0u) | (grouped ? 0u : 2u) | (mih_ ? 4u : 0u));
    w.pad_to(kArrayAlign);
    for (const CodeStore& store : stores_)
        if (n) w.put_bytes(store.blocks(), static_cast<std::size_t>(store.layout_bytes(n)));
    if (!dense && n) w.put_bytes(ids_.slot_ids(), static_cast<std::size_t>(n) * sizeof(int64_t));
    if (grouped) {
        std::vector<int64_t> groups(static_cast<std::size_t>(n));
        for (int64_t s = 0; s < n; ++s) groups[static_cast<std::size_t>(s)] = group_at(s);
        w.put_bytes(groups.data(), groups.size() * sizeof(int64_t));
    }
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
        const uint32_t b = r.get<uint32_t>("nbits");
        if (b == 0 || b % 8 || b > (1u << 24)) r.fail("invalid nbits " + std::to_string(b));
        const uint32_t len = r.get<uint32_t>("name length");
        if (len > r.remaining()) r.fail("field name longer than the file");
        const uint8_t* name = r.take(len, "field name");
        names.emplace_back(reinterpret_cast<const char*>(name), len);
        nbits.push_back(static_cast<int>(b));
    }
    const uint64_t n = r.get<uint64_t>("ntotal");
    const int64_t next_id = r.get<int64_t>("next_id");
    const bool v1 = r.version() == 1;
    const uint32_t flags = v1 ? 0u : r.get<uint32_t>("flags");
    if (flags & ~7u) r.fail("unknown flags " + std::to_string(flags));
    const bool dense = flags & 1u, grouped = !(flags & 2u), mih = flags & 4u;
    if (!v1) r.skip_padding(kArrayAlign);
    MultiFieldIndex index(names, nbits, mih);
    uint64_t row_bytes = (dense ? 0 : 8) + (grouped ? 8 : 0);
    for (const CodeStore& store : index.stores_) row_bytes += v1 ? static_cast<uint64_t>(store.code_size()) : store.words() * 8u;
    if (row_bytes && n > r.remaining() / row_bytes) r.fail("ntotal " + std::to_string(n) + " does not fit in the file");
    const auto count = static_cast<int64_t>(n);
    std::vector<const uint8_t*> fields;
    for (const CodeStore& store : index.stores_)
        fields.push_back(r.take(static_cast<std::size_t>(v1 ? count * store.code_size() : store.layout_bytes(count)), "codes"));
    const uint8_t* id_bytes = dense ? nullptr : r.take(static_cast<std::size_t>(n) * 8, "ids");
    const uint8_t* group_bytes = grouped ? r.take(static_cast<std::size_t>(n) * 8, "groups") : nullptr;
    r.expect_end();
    if (next_id < (dense ? count : 0) || next_id > kMaxId + 1) r.fail("invalid next_id " + std::to_string(next_id));
    if (keep && !v1) {  // in place: nothing is read beyond the header unless verify
        for (std::size_t f = 0; f < fields.size(); ++f)
            index.stores_[f].adopt(reinterpret_cast<const uint64_t*>(fields[f]), count, keep);
        if (dense)
            index.ids_.set_dense(count);
        else
            index.ids_.adopt(reinterpret_cast<const int64_t*>(id_bytes), count, keep, next_id);
        if (grouped) {
            index.groups_view_ = reinterpret_cast<const int64_t*>(group_bytes);
            index.groups_keep_ = keep;
        } else {
            index.no_groups_ = true;
        }
        if (verify) {
            try {
                index.ids_.validate();
            } catch (const std::invalid_argument& e) {
                r.fail(std::string("invalid ids: ") + e.what());
            }
            for (int64_t s = 0; s < count; ++s)
                if (index.group_at(s) < kNoGroup) r.fail("invalid group " + std::to_string(index.group_at(s)));
        }
        index.ids_.bump_next_id(next_id);
        index.maybe_rebuild_tables();  // the tables read every code: opening in place costs a scan then
        return index;
    }
    std::vector<int64_t> ids(static_cast<std::size_t>(n)), groups(static_cast<std::size_t>(n), kNoGroup);
    // memcpy from or to null, even of 0 bytes, is undefined (found by fuzz/fuzz_load.cpp)
    if (n && id_bytes) std::memcpy(ids.data(), id_bytes, static_cast<std::size_t>(n) * 8);
    if (n && dense)
        for (int64_t s = 0; s < count; ++s) ids[static_cast<std::size_t>(s)] = s;
    if (n && group_bytes) std::memcpy(groups.data(), group_bytes, static_cast<std::size_t>(n) * 8);
    for (int64_t g : groups)
        if (g < kNoGroup) r.fail("invalid group " + std::to_string(g));  // -1: saved without a group
    try {
        if (v1) {
            index.add(fields, count, ids.data(), groups.data());
        } else {
            index.ids_.check_new(ids.data(), count);
            for (std::size_t f = 0; f < fields.size(); ++f) index.stores_[f].assign_blocks(fields[f], count);
            index.ids_.append(ids.data(), count);
            if (grouped) index.groups_.swap(groups);
            else index.no_groups_ = true;
        }
    } catch (const std::invalid_argument& e) {
        r.fail(std::string("invalid ids: ") + e.what());
    }
    if (next_id < index.ids_.next_id()) r.fail("next_id " + std::to_string(next_id) + " is below the largest id");
    index.ids_.bump_next_id(next_id);
    index.maybe_rebuild_tables();
    return index;
}

std::size_t MultiFieldIndex::memory_bytes() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    std::size_t total = ids_.memory_bytes() + groups_.capacity() * sizeof(int64_t);
    for (const CodeStore& store : stores_) total += store.memory_bytes();
    return total + (tables_ ? tables_->memory_bytes() : 0);
}

}  // namespace hashindex
