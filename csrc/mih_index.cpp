// MIHIndex: the engine's tables (mih_engine.h) over one field, and its probe loop: a query probes
// every table at substring radius 0, 1, 2, ..., verifies each bucket's codes with the SIMD filter
// kernel, and stops once the pigeonhole bound proves its results.
#include "mih_index.h"

#include <cstring>

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <new>

#include "dispatch.h"
#include "errors.h"
#include "format.h"
#include "interrupt.h"
#include "mih_engine.h"

namespace hashindex {
namespace {

thread_local std::vector<uint32_t> t_hit_idx, t_hit_dist;

// Whether every result is in hand once no unseen code is closer than `bound`:
// for k-NN when the k-th best is closer (ties at it are then all seen too),
// for range search when the radius is.
bool all_found(TopKSink& sink, int64_t bound) { return sink.settle() && sink.threshold < bound; }
bool all_found(const RangeSink& sink, int64_t bound) { return sink.threshold < bound; }

int64_t k_of(const TopKSink& sink) { return sink.k; }
int64_t k_of(const RangeSink&) { return 1; }
// How many results a merge keeps.
int64_t sink_k(const TopKSink& sink) { return sink.k; }
int64_t sink_k(const RangeSink&) { return std::numeric_limits<int64_t>::max(); }

// The distance the cost model expects probing to have to prove: for k-NN,
// once k codes are held, the smaller of the k-th best found so far (an upper
// bound on the final one, loose early on) and the uniform-data estimate; -1
// (unknown: only the next step is priced) before that, so that clustered
// queries, whose neighbours share the query's buckets, always get a first look.
// For range search the radius.
int64_t target_distance(const TopKSink& sink, int64_t estimate) {
    return static_cast<int64_t>(sink.hits.size()) >= sink.k ? std::min<int64_t>(sink.threshold, estimate) : -1;
}
int64_t target_distance(const RangeSink& sink, int64_t) { return sink.threshold; }

// The queries flagged, ascending.
std::vector<int64_t> chosen(const std::vector<uint8_t>& flags) {
    std::vector<int64_t> out;
    for (std::size_t q = 0; q < flags.size(); ++q)
        if (flags[q]) out.push_back(static_cast<int64_t>(q));
    return out;
}
}  // namespace

MIHIndex::MIHIndex(int nbits, int m) : IndexCore({nbits}), m_requested_(m) {
    HX_CHECK(m >= 0 && m <= nbits, "m must be between 1 and nbits (or None), got " + std::to_string(m));
    HX_CHECK(m == 0 || (nbits + m - 1) / m <= 64,
             "m must be at least nbits / 64 = " + std::to_string((nbits + 63) / 64) +
                 " so that substrings fit in 64 bits, got " + std::to_string(m));
}

MIHIndex::MIHIndex(MIHIndex&& o) noexcept
    : IndexCore(std::move(o)), m_requested_(o.m_requested_), tables_(std::move(o.tables_)) {}

MIHIndex::~MIHIndex() = default;

int MIHIndex::m() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    return tables_ ? static_cast<int>(tables_->subs.size()) : 0;
}

void MIHIndex::maybe_rebuild() {
    const int64_t n = items_.size();
    if (n == 0) tables_.reset();
    if (!tables_stale(tables_.get(), n)) return;
    // The tables only speed searches up (unindexed items are scanned): an index that cannot
    // allocate them keeps the old ones (or none), and a later change retries.
    try {
        tables_ = build_tables(items_, TableSpec{{m_requested_}, true, false});
    } catch (const std::bad_alloc&) {
        return;
    }
    cost_.gave_up_history.store(0);
    const int words = items_.store(0).words();
    const std::vector<uint64_t> q = [&] {
        std::vector<uint64_t> w(static_cast<std::size_t>(calibration_queries() * words));
        for (int64_t i = 0; i < calibration_queries(); ++i)
            items_.store(0).read_words(calibration_slot(i, n), &w[static_cast<std::size_t>(i * words)]);
        return w;
    }();
    const double uniform = static_cast<double>(mih::uniform_kth_distance(n, nbits(), 10));
    calibrate(
        cost_, n, static_cast<double>(n) * words, n,
        [&](int64_t count) {
            scan_store<TopKSink>(items_.store(0), q.data(), count, 0,
                                 [&](int64_t) { return TopKSink(10, n, items_.ids().slot_ids()); },
                                 [](int64_t, TopKSink&) {});
        },
        [&](int64_t i, double budget, MihStats& st, double& kth) {
            TopKSink sink(10, n, items_.ids().slot_ids());
            const bool done = probe(&q[static_cast<std::size_t>(i * words)], sink, budget, st);
            const std::vector<Hit> best = sink.best_k();
            if (done && uniform > 0 && best.size() == 10) kth = best.back().distance / uniform;
            return ProbeOutcome{done, MihCostModel::modelled_probe_ns(st.buckets, st.candidates * words, st.hits)};
        });
}

void MIHIndex::add(const uint8_t* codes, int64_t n, const int64_t* ids) {
    std::unique_lock<std::shared_mutex> lk(mu_);
    if (items_.size() + n >= (int64_t{1} << 32))  // the tables hold 32-bit slots
        throw std::invalid_argument("codes: an MIHIndex holds fewer than 2^32 codes; it has " +
                                    std::to_string(items_.size()) + ", adding " + std::to_string(n));
    items_.add({codes}, n, ids, nullptr);
    maybe_rebuild();
}

void MIHIndex::remove(const int64_t* ids, int64_t n) {
    std::unique_lock<std::shared_mutex> lk(mu_);
    items_.remove(ids, n, [&](int64_t from, int64_t to) {
        if (tables_) tables_->moved(from, to);
    });
    maybe_rebuild();
}

void MIHIndex::get(const int64_t* ids, int64_t n, uint8_t* out) const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    items_.get(0, ids, n, out);
}

void MIHIndex::reset() {
    std::unique_lock<std::shared_mutex> lk(mu_);
    items_.clear();
    tables_.reset();
}

std::size_t MIHIndex::memory_bytes() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    return items_.memory_bytes() + (tables_ ? tables_->memory_bytes() : 0);
}

template <class Sink>
bool MIHIndex::probe(const uint64_t* q, Sink& sink, double budget_ns, MihStats& st) const {
    const Tables& tables = *tables_;
    const FilterFn filter = active_kernels().filter;
    const int m = static_cast<int>(tables.subs.size());
    const int words = items_.store(0).words();
    const int64_t n = items_.size();
    Stamps& stamps = thread_stamps();  // thread_locals read once: each access is a call in a shared library
    std::vector<uint32_t>& hit_idx = t_hit_idx;
    std::vector<uint32_t>& hit_dist = t_hit_dist;
    const uint32_t gen = stamps.next(static_cast<std::size_t>(tables.built));
    uint32_t* mark = stamps.mark.data();
    std::vector<uint64_t> qsub(static_cast<std::size_t>(m));
    int max_bits = 0;
    for (int t = 0; t < m; ++t) {
        const SubTable& sub = tables.subs[static_cast<std::size_t>(t)];
        qsub[static_cast<std::size_t>(t)] = mih::extract_bits(q, sub.bit_lo, sub.bits);
        max_bits = std::max(max_bits, sub.bits);
    }
    int64_t buckets = 0, candidates = 0, survivors = 0;
    bool gave_up = false;
    const double scale = cost_.probe_scale.load(std::memory_order_relaxed);
    const int64_t estimate = static_cast<int64_t>(std::ceil(cost_.kth_scale.load(std::memory_order_relaxed) *
        static_cast<double>(mih::uniform_kth_distance(tables.built, nbits(), k_of(sink)))));
    auto spent = [&] { return scale * (buckets * mih::kProbeNs + candidates * words * mih::kVerifyNsPerWord); };

    // Buckets are looked up in batches and their codes prefetched before any is
    // verified: a probe's bucket is a random access into tables as large as the
    // database, and overlapping those misses is what makes probing cheap.
    constexpr int kBatch = 32;
    uint32_t batch_begin[kBatch], batch_end[kBatch];
    int pending = 0;
    const SubTable* table = nullptr;
    auto verify_pending = [&] {
        interruption_point();  // a probe is bounded by a scan's cost, which may be seconds
        for (int p = 0; p < pending; ++p) {
            const uint32_t b = batch_begin[p], e = batch_end[p];
            if (hit_idx.size() < e - b) {
                hit_idx.resize(e - b);
                hit_dist.resize(e - b);
            }
            const int64_t hits = filter(&table->codes[static_cast<std::size_t>(b) * words], e - b, words, q,
                                        sink.threshold, hit_idx.data(), hit_dist.data());
            candidates += e - b;
            survivors += hits;
            for (int64_t h = 0; h < hits; ++h) {
                const uint32_t slot = table->slots[b + hit_idx[static_cast<std::size_t>(h)]];
                if (mark[slot] == gen) continue;
                mark[slot] = gen;
                if (tables.indexed(slot, n)) sink.offer(static_cast<int32_t>(hit_dist[static_cast<std::size_t>(h)]), slot);
            }
        }
        pending = 0;
    };

    bool proven = false;
    for (int rho = 0; rho <= max_bits && !gave_up && !proven; ++rho) {
        st.max_radius = std::max(st.max_radius, rho);
        for (int t = 0; t < m; ++t) {
            table = &tables.subs[static_cast<std::size_t>(t)];
            const uint64_t qt = qsub[static_cast<std::size_t>(t)];
            if (rho <= table->bits && spent() + scale * predicted_cost(rho, t, target_distance(sink, estimate)) > budget_ns) {
                gave_up = true;
                break;
            }
            const bool finished = for_each_mask(table->bits, rho, [&](uint64_t mask) {
                uint32_t b, e;
                table->lookup(qt ^ mask, b, e);
                ++buckets;
                if (e > b) {
                    prefetch_bytes(&table->codes[static_cast<std::size_t>(b) * words],
                                   std::min<std::size_t>(static_cast<std::size_t>(e - b) * words * 8, 4096));
                    batch_begin[pending] = b;
                    batch_end[pending] = e;
                    if (++pending == kBatch) verify_pending();
                }
                gave_up = (buckets & 63) == 0 && spent() > budget_ns;
                return !gave_up;
            });
            verify_pending();
            if (!finished) break;
            // Every code has been seen once a table has enumerated all its keys; else none unseen
            // is closer than the pigeonhole bound.
            if (rho >= table->bits || all_found(sink, static_cast<int64_t>(m) * rho + t + 1)) {
                proven = true;
                break;
            }
        }
    }
    st.buckets += buckets;
    st.candidates += candidates;
    st.hits += survivors;
    return proven || !gave_up;
}

// Modelled cost (ns, before calibration) of probing table t at radius rho and
// every later (radius, table) step until the pigeonhole bound exceeds
// `target`. Checked before each step, so a query that cannot pay gives up
// before spending, not after. (Predicting with the k-th distance found so far
// alone gave up on queries that pay (benchmarks/RESULTS.md, "Measurements behind the code");
// hence the optimistic estimate in target_distance.)
double MIHIndex::predicted_cost(int rho, int t, int64_t target) const {
    const int m = static_cast<int>(tables_->subs.size());
    const double n = static_cast<double>(tables_->built);
    const int words = items_.store(0).words();
    double cost = 0;
    for (int r = rho;; ++r) {
        for (int u = (r == rho ? t : 0); u < m; ++u) {
            const SubTable& T = tables_->subs[static_cast<std::size_t>(u)];
            if (r > T.bits) return cost;
            const double occupancy = T.bits >= 63 ? 0.0 : n / std::ldexp(1.0, T.bits);
            cost += mih::binomial(T.bits, r) * (mih::kProbeNs + occupancy * words * mih::kVerifyNsPerWord);
            if (target < 0 || r >= T.bits || static_cast<int64_t>(m) * r + u + 1 > target) return cost;
        }
    }
}

template <class Sink, class Make>
std::vector<std::vector<Hit>> MIHIndex::find(const uint8_t* queries, int64_t nq, int threads, int64_t workload,
                                             const uint8_t* pass, MihStats& stats, Make make) const {
    const CodeStore& store = items_.store(0);
    const int words = store.words();
    const int64_t n = items_.size();
    const std::vector<uint64_t> qwords = rows_to_words(queries, nq, code_size());
    std::vector<std::vector<Hit>> found(static_cast<std::size_t>(nq));
    std::vector<uint8_t> probed(static_cast<std::size_t>(nq), 0);
    // Scans `from` for the queries qs, merging into their results.
    auto scan = [&](const Items& from, const uint8_t* from_pass, const std::vector<int64_t>& qs) {
        std::vector<uint64_t> rq;
        for (const int64_t q : qs)
            rq.insert(rq.end(), &qwords[static_cast<std::size_t>(q * words)], &qwords[static_cast<std::size_t>((q + 1) * words)]);
        scan_store<Sink>(from.store(0), rq.data(), static_cast<int64_t>(qs.size()), threads,
                         [&](int64_t) { return make(from.size(), from.ids().slot_ids(), from_pass); },
                         [&](int64_t i, Sink& sink) { merge_best_k(found[static_cast<std::size_t>(qs[static_cast<std::size_t>(i)])], hits_of(sink), sink_k(sink)); });
    };
    stats.queries = nq;
    if (!tables_) {  // empty, or the tables could not be allocated: one scan of everything
        stats.by_scan = nq;
        scan(items_, pass, chosen(std::vector<uint8_t>(static_cast<std::size_t>(nq), 1)));
        return found;
    }
    cost_.set_workload(workload);
    stats.tail = tables_->unindexed(n);
    probe_or_scan(
        cost_, nq, threads, static_cast<double>(n) * words, tables_->built, stats,
        [&](int64_t q, double budget, MihStats& st) {
            Sink sink = make(n, items_.ids().slot_ids(), pass);
            const bool done = probe(&qwords[static_cast<std::size_t>(q * words)], sink, budget, st);
            if (done) {
                found[static_cast<std::size_t>(q)] = hits_of(sink);
                probed[static_cast<std::size_t>(q)] = 1;
            }
            return ProbeOutcome{done, MihCostModel::modelled_probe_ns(st.buckets, st.candidates * words, st.hits)};
        },
        [&](const std::vector<int64_t>& back) { scan(items_, pass, back); });
    // The items the tables do not hold, for the queries that probed.
    std::vector<int64_t> slots = tables_->unindexed_slots(n);
    if (pass) slots.erase(std::remove_if(slots.begin(), slots.end(), [&](int64_t s) { return !pass[s]; }), slots.end());
    if (!slots.empty()) scan(items_.subset(slots), nullptr, chosen(probed));
    return found;
}

void MIHIndex::search(const uint8_t* queries, int64_t nq, int64_t k, int threads, int32_t* distances,
                      int64_t* ids, MihStats* stats, const IdFilter& filter) const {
    HX_CHECK(k > 0, "k must be > 0, got " + std::to_string(k));
    MihStats st;
    std::shared_lock<std::shared_mutex> lk(mu_);
    if (const auto g = gather(items_, filter, nq, lk)) {
        knn_scan(g->store(0), g->ids().slot_ids(), nullptr, queries, nq, k, threads, distances, ids);
        st.queries = st.by_scan = nq;
    } else {
        const std::vector<uint8_t> mask = filter.active() ? slot_mask(filter, items_.ids(), items_.size(), nullptr) : std::vector<uint8_t>();
        const auto found = find<TopKSink>(queries, nq, threads, k, mask.empty() ? nullptr : mask.data(), st,
                                          [&](int64_t n, const int64_t* sid, const uint8_t* pass) { return TopKSink(k, n, sid, pass); });
        for (int64_t q = 0; q < nq; ++q) write_padded(found[static_cast<std::size_t>(q)], k, distances + q * k, ids + q * k);
    }
    if (stats) *stats = st;
}

RangeResult MIHIndex::range_search(const uint8_t* queries, int64_t nq, int32_t radius, int threads,
                                   MihStats* stats, const IdFilter& filter) const {
    HX_CHECK(radius >= 0, "radius must be >= 0, got " + std::to_string(radius));
    MihStats st;
    RangeResult r;
    std::shared_lock<std::shared_mutex> lk(mu_);
    if (const auto g = gather(items_, filter, nq, lk)) {
        r = range_scan(g->store(0), g->ids().slot_ids(), nullptr, queries, nq, radius, threads);
        st.queries = st.by_scan = nq;
    } else {
        const std::vector<uint8_t> mask = filter.active() ? slot_mask(filter, items_.ids(), items_.size(), nullptr) : std::vector<uint8_t>();
        r = ranges_of(find<RangeSink>(queries, nq, threads, -1 - static_cast<int64_t>(radius), mask.empty() ? nullptr : mask.data(), st,
                                      [&](int64_t n, const int64_t* sid, const uint8_t* pass) { return RangeSink(radius, n, sid, pass); }));
    }
    if (stats) *stats = st;
    return r;
}

// Payload of kind MIH, format 2: nbits u32, the requested m u32 (0 = automatic), flags u32 (bit 0:
// the ids are 0..n-1 and not stored), 4 zero bytes, ntotal u64, next_id i64, ntotal code rows, then
// ntotal int64 ids unless bit 0. Format 1: CodesPayload (format.h) with m as its parameter. Tables
// are rebuilt on load.
std::vector<uint8_t> MIHIndex::to_bytes() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    const int64_t n = items_.size();
    const bool dense = items_.ids().dense();
    PayloadWriter w;
    w.reserve(static_cast<std::size_t>(n * (code_size() + (dense ? 0 : 8)) + 32));
    w.put<uint32_t>(static_cast<uint32_t>(nbits()));
    w.put<uint32_t>(static_cast<uint32_t>(m_requested_));
    w.put<uint32_t>(dense ? Items::kDenseIds : 0u);
    w.put<uint32_t>(0);
    w.put<uint64_t>(static_cast<uint64_t>(n));
    w.put<int64_t>(items_.ids().next_id());
    std::vector<uint8_t> row(static_cast<std::size_t>(code_size()));
    for (int64_t s = 0; s < n; ++s) {
        items_.store(0).read_row(s, row.data());
        w.put_bytes(row.data(), row.size());
    }
    if (!dense && n) w.put_bytes(items_.ids().slot_ids(), static_cast<std::size_t>(n) * sizeof(int64_t));
    return w.finish(IndexKind::MIH);
}

MIHIndex MIHIndex::from_bytes(const uint8_t* data, std::size_t size, const std::string& source) {
    PayloadReader r(data, size, IndexKind::MIH, source);
    CodesPayload p;
    if (r.version() == 1) {
        p = read_codes_payload(r);
    } else {
        p.nbits = r.get_nbits();
        p.param = r.get<uint32_t>("m");
        const uint32_t flags = r.get<uint32_t>("flags");
        if (flags & ~Items::kDenseIds) r.fail("unknown flags " + std::to_string(flags));
        if (r.get<uint32_t>("reserved") != 0) r.fail("reserved bytes are not zero");
        p.n = r.get<uint64_t>("ntotal");
        p.next_id = r.get<int64_t>("next_id");
        const bool dense = flags & Items::kDenseIds;
        const std::size_t row = p.nbits / 8;
        if (p.n > r.remaining() / (row + (dense ? 0 : 8))) r.fail("ntotal " + std::to_string(p.n) + " does not fit in the file");
        p.codes = r.take(static_cast<std::size_t>(p.n) * row, "codes");
        const uint8_t* id_bytes = dense ? nullptr : r.take(static_cast<std::size_t>(p.n) * 8, "ids");
        r.expect_end();
        p.ids.resize(static_cast<std::size_t>(p.n));
        if (dense)
            for (uint64_t i = 0; i < p.n; ++i) p.ids[static_cast<std::size_t>(i)] = static_cast<int64_t>(i);
        else if (p.n)
            std::memcpy(p.ids.data(), id_bytes, static_cast<std::size_t>(p.n) * 8);
    }
    const uint32_t m = p.param;
    if (m > p.nbits || (m > 0 && (p.nbits + m - 1) / m > 64)) r.fail("invalid m " + std::to_string(m));
    return index_from_payload(p, r, MIHIndex(static_cast<int>(p.nbits), static_cast<int>(m)));
}

}  // namespace hashindex
