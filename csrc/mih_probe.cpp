// The probe loop of multi-index hashing: a query probes every table at substring radius 0, 1, 2,
// ..., verifies the candidates of each bucket with the SIMD filter kernel, and stops once the
// pigeonhole bound proves its results; the cost model (mih_cost.h) may hand it to the scan first.
#include "mih_index.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>
#include <new>
#include <thread>

#include "dispatch.h"
#include "errors.h"
#include "format.h"
#include "interrupt.h"
#include "mih_cost.h"
#include "parallel.h"
#include "probe_util.h"
#include "scan.h"


namespace hashindex {

Stamps& thread_stamps() {
    thread_local Stamps stamps;
    return stamps;
}

namespace {


thread_local std::vector<uint32_t> t_hit_idx, t_hit_dist;

// Whether every result is in hand once no unseen code is closer than `bound`:
// for k-NN when the k-th best is closer (ties at it are then all seen too),
// for range search when the radius is.
bool all_found(TopKSink& sink, int64_t bound) { return sink.settle() && sink.threshold < bound; }
bool all_found(const RangeSink& sink, int64_t bound) { return sink.threshold < bound; }

int64_t k_of(const TopKSink& sink) { return sink.k; }
int64_t k_of(const RangeSink&) { return 1; }

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

void add_stats(MihStats& into, const MihStats& s) {
    into.queries += s.queries;
    into.by_mih += s.by_mih;
    into.by_scan += s.by_scan;
    into.candidates += s.candidates;
    into.hits += s.hits;
    into.buckets += s.buckets;
    into.max_radius = std::max(into.max_radius, s.max_radius);
}

}  // namespace

template <class Sink>
bool MIHIndex::probe(const uint64_t* q, Sink& sink, double budget_ns, MihStats& st) const {
    const FilterFn filter = active_kernels().filter;
    const int m = static_cast<int>(tables_.size());
    const int64_t n = main_.size();
    Stamps& stamps = thread_stamps();  // thread_locals read once: each access is a call in a shared library
    std::vector<uint32_t>& hit_idx = t_hit_idx;
    std::vector<uint32_t>& hit_dist = t_hit_dist;
    const uint32_t gen = stamps.next(static_cast<std::size_t>(n));
    uint32_t* mark = stamps.mark.data();
    std::vector<uint64_t> qsub(static_cast<std::size_t>(m));
    int max_bits = 0;
    for (int t = 0; t < m; ++t) {
        qsub[static_cast<std::size_t>(t)] = mih::extract_bits(q, tables_[static_cast<std::size_t>(t)].bit_lo, tables_[static_cast<std::size_t>(t)].bits);
        max_bits = std::max(max_bits, tables_[static_cast<std::size_t>(t)].bits);
    }
    int64_t buckets = 0, candidates = 0, survivors = 0;
    bool gave_up = false;
    const double scale = cost_.probe_scale.load(std::memory_order_relaxed);
    const int64_t estimate = static_cast<int64_t>(
        std::ceil(cost_.kth_scale.load(std::memory_order_relaxed) * static_cast<double>(mih::uniform_kth_distance(n, nbits_, k_of(sink)))));

    // Buckets are looked up in batches and their codes prefetched before any is
    // verified: a probe's bucket is a random access into tables as large as the
    // database, and overlapping those misses is what makes probing cheap.
    constexpr int kBatch = 32;
    uint32_t batch_begin[kBatch], batch_end[kBatch];
    int pending = 0;
    const Table* table = nullptr;
    auto verify_pending = [&] {
        interruption_point();  // a probe is bounded by a scan's cost, which may be seconds
        for (int p = 0; p < pending; ++p) {
            const uint32_t b = batch_begin[p], e = batch_end[p];
            if (hit_idx.size() < e - b) {
                hit_idx.resize(e - b);
                hit_dist.resize(e - b);
            }
            const int64_t hits = filter(&table->codes[static_cast<std::size_t>(b) * words_], e - b, words_, q,
                                        sink.threshold, hit_idx.data(), hit_dist.data());
            candidates += e - b;
            survivors += hits;
            for (int64_t h = 0; h < hits; ++h) {
                const uint32_t slot = table->slots[b + hit_idx[static_cast<std::size_t>(h)]];
                if (mark[slot] == gen) continue;
                mark[slot] = gen;
                sink.offer(static_cast<int32_t>(hit_dist[static_cast<std::size_t>(h)]), slot);
            }
        }
        pending = 0;
    };

    for (int rho = 0; rho <= max_bits; ++rho) {
        st.max_radius = std::max(st.max_radius, rho);
        for (int t = 0; t < m; ++t) {
            table = &tables_[static_cast<std::size_t>(t)];
            const uint64_t qt = qsub[static_cast<std::size_t>(t)];
            const double spent = scale * (buckets * mih::kProbeNs + candidates * words_ * mih::kVerifyNsPerWord);
            if (rho <= table->bits && spent + scale * predicted_cost(rho, t, target_distance(sink, estimate)) > budget_ns) {
                gave_up = true;
                break;
            }
            const bool finished = for_each_mask(table->bits, rho, [&](uint64_t mask) {
                uint32_t b, e;
                table->lookup(qt ^ mask, b, e);
                ++buckets;
                if (e > b) {
                    const char* first = reinterpret_cast<const char*>(&table->codes[static_cast<std::size_t>(b) * words_]);
                    const std::size_t bytes = static_cast<std::size_t>(e - b) * words_ * 8;
                    for (std::size_t off = 0; off < bytes && off < 4096; off += 64) __builtin_prefetch(first + off);
                    batch_begin[pending] = b;
                    batch_end[pending] = e;
                    if (++pending == kBatch) verify_pending();
                }
                if ((buckets & 63) == 0 && scale * (buckets * mih::kProbeNs + candidates * words_ * mih::kVerifyNsPerWord) > budget_ns) {
                    gave_up = true;
                    return false;
                }
                return true;
            });
            verify_pending();
            if (!finished) break;
            // Every code has been seen once a table has enumerated all its keys.
            const bool exhausted = rho >= table->bits;
            const int64_t bound = static_cast<int64_t>(m) * rho + t + 1;  // no unseen code is closer
            if (exhausted || all_found(sink, bound)) {
                st.buckets += buckets;
                st.candidates += candidates;
                st.hits += survivors;
                return true;
            }
        }
        if (gave_up) break;
    }
    st.buckets += buckets;
    st.candidates += candidates;
    st.hits += survivors;
    return !gave_up;
}

// The fixed model's constants were fitted on one VM and the scales were learned over the first
// queries: on a Zen 4 host the first 20 queries of a fresh 1M-code index averaged 0.14-0.31 ms
// where probing answers in 0.025 ms. So each rebuild (and load) times what this index costs here:
// scans of the main part (one query, and a batch) and probes of stored codes (queries near stored
// codes are what retrieval asks). Small indexes skip it: their scans take microseconds.
void MIHIndex::calibrate() {
    const int64_t n = main_.size();
    if (n < (int64_t{1} << 14) || tables_.empty()) return;
    const int threads = resolve_threads(0);
    const int64_t nq = std::max<int64_t>(8, 2 * threads);
    std::vector<uint64_t> q(static_cast<std::size_t>(nq * words_));
    for (int64_t i = 0; i < nq; ++i) main_.read_words(i * (n / nq), &q[static_cast<std::size_t>(i * words_)]);
    const double words = static_cast<double>(n) * words_;
    auto scan_ns = [&](int64_t count) {
        return mih::fastest_ns([&] {
            scan_store<TopKSink>(main_, q.data(), count, 0, [&](int64_t) { return TopKSink(10, n, main_ids_.slot_ids(), alive_.data()); },
                                 [](int64_t, TopKSink&) {});
        });
    };
    cost_.scan_single_ns.store(scan_ns(1) / words, std::memory_order_relaxed);
    cost_.scan_batch_ns.store(scan_ns(nq) * threads / (static_cast<double>(nq) * words), std::memory_order_relaxed);
    // Every worker's probe marks (4 bytes per code) are allocated now, not in some later query's
    // time (+0.2 ms on the first query of each thread at 1M codes, +2 ms at 10M): one task per
    // thread, each waiting (at most 20 ms) until all have started, so that each thread takes one.
    std::atomic<int> started{0};
    parallel_for(threads, threads, [&](int64_t) {
        thread_stamps().next(static_cast<std::size_t>(n));
        started.fetch_add(1);
        const double until = mih::now_ns() + 2e7;
        while (started.load() < threads && mih::now_ns() < until) std::this_thread::yield();
    });
    std::vector<double> ratios, kth;
    const double uniform = static_cast<double>(mih::uniform_kth_distance(n, nbits_, 10));
    // Forget the last build's scale: if no probe below finds k results, the uniform estimate holds.
    cost_.kth_scale.store(1.0, std::memory_order_relaxed);
    for (int64_t i = 0; i < nq; ++i) {
        TopKSink sink(10, n, main_ids_.slot_ids(), alive_.data());
        MihStats st;
        const double t0 = mih::now_ns();
        probe(&q[static_cast<std::size_t>(i * words_)], sink, 1e300, st);
        const double elapsed = mih::now_ns() - t0;
        const double modelled = MihCostModel::modelled_probe_ns(st.buckets, st.candidates * words_, st.hits);
        if (modelled > 0) ratios.push_back(elapsed / modelled);
        const std::vector<Hit> best = sink.best_k();
        if (uniform > 0 && static_cast<int64_t>(best.size()) == 10) kth.push_back(best.back().distance / uniform);
    }
    // The pricing's target: with the uniform estimate, clustered queries (1M x 64 bits, k-th 4-5
    // where uniform codes have 15) were priced to a bound they never need and handed to the scan
    // after one bucket (0.3 ms where probing answers in 0.04).
    if (!kth.empty()) {
        std::nth_element(kth.begin(), kth.begin() + static_cast<std::ptrdiff_t>(kth.size() / 2), kth.end());
        cost_.kth_scale.store(std::min(1.0, std::max(0.05, kth[kth.size() / 2])), std::memory_order_relaxed);
    }
    if (ratios.empty()) return;
    std::nth_element(ratios.begin(), ratios.begin() + static_cast<std::ptrdiff_t>(ratios.size() / 2), ratios.end());
    cost_.probe_scale.store(std::min(10.0, std::max(0.1, ratios[ratios.size() / 2])), std::memory_order_relaxed);
}

template <class Sink>
bool MIHIndex::try_probe(const uint64_t* q, Sink& sink, double budget_ns, MihStats& st) const {
    if (cost_.skip_probe()) return false;
    // The marks of a thread's first probe cost a page-faulting allocation (40 MB
    // for 10M codes, ~6 ms): made before the clock starts, or the model learns
    // from it that probing is 900x dearer than it is.
    thread_stamps().next(static_cast<std::size_t>(main_.size()));
    const int64_t buckets0 = st.buckets, candidates0 = st.candidates, hits0 = st.hits;
    const double t0 = mih::now_ns();
    const bool done = probe(q, sink, budget_ns, st);
    const double elapsed = mih::now_ns() - t0;
    cost_.observe_probe(elapsed, MihCostModel::modelled_probe_ns(st.buckets - buckets0,
                                                               (st.candidates - candidates0) * words_, st.hits - hits0),
                        done);
    return done;
}

template <class Sink, class Make, class Keep>
MihStats MIHIndex::answer_main(const std::vector<uint64_t>& qwords, int64_t nq, int threads, int64_t workload,
                               Make make, Keep keep) const {
    cost_.set_workload(workload);
    MihStats total;
    total.queries = nq;
    total.tail = tail_.size();
    total.probe_scale = cost_.probe_scale.load(std::memory_order_relaxed);
    total.scan_ns_per_word = (nq >= 2 * resolve_threads(threads) ? cost_.scan_batch_ns : cost_.scan_single_ns)
                                 .load(std::memory_order_relaxed);
    if (tables_.empty()) return total;  // the main part is empty
    std::vector<int64_t> rescan;
    std::mutex mu;
    const double budget = scan_budget_ns(nq, threads);
    parallel_for(resolve_threads(threads), nq, [&](int64_t q) {
        MihStats st;
        Sink sink = make();
        const bool probed = try_probe(&qwords[static_cast<std::size_t>(q) * words_], sink, budget, st);
        if (probed) keep(q, sink);
        std::lock_guard<std::mutex> g(mu);
        add_stats(total, st);
        (probed ? total.by_mih : total.by_scan) += 1;
        if (!probed) rescan.push_back(q);
    });
    if (rescan.empty()) return total;
    // Queries the cost model handed back: one batched scan of the main part, timed for the model.
    std::sort(rescan.begin(), rescan.end());
    std::vector<uint64_t> rq;
    for (int64_t q : rescan)
        rq.insert(rq.end(), &qwords[static_cast<std::size_t>(q) * words_], &qwords[static_cast<std::size_t>(q + 1) * words_]);
    const int64_t ns = static_cast<int64_t>(rescan.size());
    const double t0 = mih::now_ns();
    scan_store<Sink>(main_, rq.data(), ns, threads, [&](int64_t) { return make(); },
                     [&](int64_t i, Sink& sink) { keep(rescan[static_cast<std::size_t>(i)], sink); });
    cost_.observe_scan(mih::now_ns() - t0, static_cast<double>(main_.size()) * words_, ns, resolve_threads(threads));
    return total;
}

Gathered MIHIndex::gather(const IdFilter& filter) const {
    Gathered g(code_size());
    // removed ids are forgotten by main_ids_, so only live slots are allowed
    const std::vector<int64_t> slots = allowed_slots(filter, main_ids_);
    g.store.append_slots(main_, slots.data(), static_cast<int64_t>(slots.size()));
    for (const int64_t s : slots) g.ids.push_back(main_ids_.id_of(s));
    if (tail_.size() == 0) return g;
    std::vector<int64_t> tail_ids;
    for (int64_t i = 0; i < filter.n; ++i)
        if (!main_ids_.contains(filter.ids[i]) && tail_.contains(filter.ids[i])) tail_ids.push_back(filter.ids[i]);
    std::sort(tail_ids.begin(), tail_ids.end());  // an allow list may repeat an id
    tail_ids.erase(std::unique(tail_ids.begin(), tail_ids.end()), tail_ids.end());
    std::vector<uint8_t> rows(tail_ids.size() * static_cast<std::size_t>(code_size()));
    if (!tail_ids.empty()) {
        tail_.get(tail_ids.data(), static_cast<int64_t>(tail_ids.size()), rows.data());
        g.store.append(rows.data(), static_cast<int64_t>(tail_ids.size()));
        g.ids.insert(g.ids.end(), tail_ids.begin(), tail_ids.end());
    }
    return g;
}

void MIHIndex::search(const uint8_t* queries, int64_t nq, int64_t k, int threads, int32_t* distances,
                      int64_t* ids, MihStats* stats, const IdFilter& filter) const {
    HX_CHECK(k > 0, "k must be > 0, got " + std::to_string(k));
    std::shared_lock<std::shared_mutex> lk(mu_);
    const int64_t n = main_.size();
    if (gather_pays(filter, n + tail_.size(), nq)) {
        const Gathered g = gather(filter);
        lk.unlock();
        knn_scan(g.store, g.ids.data(), nullptr, queries, nq, k, threads, distances, ids);
        if (stats) {
            *stats = MihStats{};
            stats->queries = stats->by_scan = nq;
        }
        return;
    }
    const std::vector<uint64_t> qwords = rows_to_words(queries, nq, code_size());
    const std::vector<uint8_t> mask = filter.active() ? slot_mask(filter, main_ids_, n, alive_.data()) : std::vector<uint8_t>();
    const uint8_t* pass = filter.active() ? mask.data() : alive_.data();
    std::vector<std::vector<Hit>> best(static_cast<std::size_t>(nq));
    const MihStats total = answer_main<TopKSink>(
        qwords, nq, threads, k, [&] { return TopKSink(k, n, main_ids_.slot_ids(), pass); },
        [&](int64_t q, TopKSink& sink) { best[static_cast<std::size_t>(q)] = sink.best_k(); });
    if (tail_.size() > 0) {
        std::vector<int32_t> td(static_cast<std::size_t>(nq * k));
        std::vector<int64_t> ti(static_cast<std::size_t>(nq * k));
        tail_.search(queries, nq, k, threads, td.data(), ti.data(), filter);
        for (int64_t q = 0; q < nq; ++q) {
            std::vector<Hit> more;
            for (int64_t j = 0; j < k && ti[static_cast<std::size_t>(q * k + j)] != kPadId; ++j)
                more.push_back(Hit{td[static_cast<std::size_t>(q * k + j)], ti[static_cast<std::size_t>(q * k + j)]});
            merge_best_k(best[static_cast<std::size_t>(q)], more, k);
        }
    }
    for (int64_t q = 0; q < nq; ++q) write_padded(best[static_cast<std::size_t>(q)], k, distances + q * k, ids + q * k);
    if (stats) *stats = total;
}

RangeResult MIHIndex::range_search(const uint8_t* queries, int64_t nq, int32_t radius, int threads,
                                   MihStats* stats, const IdFilter& filter) const {
    HX_CHECK(radius >= 0, "radius must be >= 0, got " + std::to_string(radius));
    std::shared_lock<std::shared_mutex> lk(mu_);
    const int64_t n = main_.size();
    if (gather_pays(filter, n + tail_.size(), nq)) {
        const Gathered g = gather(filter);
        lk.unlock();
        if (stats) {
            *stats = MihStats{};
            stats->queries = stats->by_scan = nq;
        }
        return range_scan(g.store, g.ids.data(), nullptr, queries, nq, radius, threads);
    }
    const std::vector<uint64_t> qwords = rows_to_words(queries, nq, code_size());
    const std::vector<uint8_t> mask = filter.active() ? slot_mask(filter, main_ids_, n, alive_.data()) : std::vector<uint8_t>();
    const uint8_t* pass = filter.active() ? mask.data() : alive_.data();
    std::vector<std::vector<Hit>> found(static_cast<std::size_t>(nq));
    const MihStats total = answer_main<RangeSink>(
        qwords, nq, threads, -1 - static_cast<int64_t>(radius), [&] { return RangeSink(radius, n, main_ids_.slot_ids(), pass); },
        [&](int64_t q, RangeSink& sink) { found[static_cast<std::size_t>(q)] = sink.sorted(); });
    if (tail_.size() > 0) {
        RangeResult t = tail_.range_search(queries, nq, radius, threads, filter);
        for (int64_t q = 0; q < nq; ++q) {
            std::vector<Hit>& f = found[static_cast<std::size_t>(q)];
            const std::size_t mid = f.size();
            for (int64_t j = t.lims[static_cast<std::size_t>(q)]; j < t.lims[static_cast<std::size_t>(q + 1)]; ++j)
                f.push_back(Hit{t.distances[static_cast<std::size_t>(j)], t.ids[static_cast<std::size_t>(j)]});
            std::inplace_merge(f.begin(), f.begin() + static_cast<std::ptrdiff_t>(mid), f.end());
        }
    }
    RangeResult r;
    r.lims.assign(static_cast<std::size_t>(nq) + 1, 0);
    for (int64_t q = 0; q < nq; ++q)
        r.lims[static_cast<std::size_t>(q + 1)] = r.lims[static_cast<std::size_t>(q)] + static_cast<int64_t>(found[static_cast<std::size_t>(q)].size());
    for (const auto& f : found)
        for (const Hit& h : f) {
            r.distances.push_back(h.distance);
            r.ids.push_back(h.id);
        }
    if (stats) *stats = total;
    return r;
}

}  // namespace hashindex
