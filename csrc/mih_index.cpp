#include "mih_index.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <mutex>
#include <new>

#include "dispatch.h"
#include "errors.h"
#include "format.h"
#include "interrupt.h"
#include "parallel.h"
#include "scan.h"

namespace hashindex {
namespace {

// Substrings are at most this long when m is chosen automatically: a table's
// offsets (2^16 x 4 bytes = 256 KiB) then stay in L2, so a probe costs a
// cache hit, not a trip to memory. log2(N) as in the paper is longer from
// N = 2^17 on (64-bit codes, 1M uniform: m = 3 probes ~43k buckets for the
// 10 nearest, m = 4 ~2.8k).
constexpr int kMaxAutoBits = 16;
// Tables with substrings up to this long index offsets directly by key.
constexpr int kMaxDirectBits = 20;

// Probing cost model, in nanoseconds before calibration (MihCostModel scales
// it by measurement): fitted on the 2-core Sapphire Rapids VM of
// benchmarks/RESULTS.md, single 64-bit queries, m = 4: 1M uniform codes, 1.65k
// buckets and 26.8k candidates took 0.21 ms, 2.78k and 49k 0.35 ms; 10M, ~1.1k
// buckets and 304k candidates 0.50 ms.
constexpr double kProbeNs = 100.0;        // one bucket looked up, its codes fetched
constexpr double kVerifyNsPerWord = 1.5;  // one candidate word verified and filtered
// A candidate within the threshold: its seen-mark and slot are random accesses
// into arrays as large as the index. Clustered queries have many (10M codes:
// without this term the learned scale rose to 5x and k = 100 queries that
// probe in 0.06-0.8 ms were scanned in 4 ms).
constexpr double kHitNs = 150.0;
constexpr double kLearnRate = 0.2;        // weight of a new measurement in the averages
// Queries give up probing (and are scanned) when probing is predicted to cost
// more than a scan; after 12 of the last 16 gave up, probing is skipped for
// all but one query in 16, so a workload that never pays wastes almost nothing.
constexpr int kHistory = 16, kSkipAfter = 12;
// Scales the probing budget; tests raise it to exercise probing on small data.
std::atomic<double> g_budget_scale{1.0};

double binomial(int n, int r) {
    double c = 1;
    for (int i = 1; i <= r; ++i) c = c * (n - r + i) / i;
    return c;
}

uint64_t extract_bits(const uint64_t* words, int lo, int len) {
    const int wi = lo >> 6, off = lo & 63;
    uint64_t v = words[wi] >> off;
    if (off && off + len > 64) v |= words[wi + 1] << (64 - off);
    return len == 64 ? v : v & ((uint64_t{1} << len) - 1);
}

// Calls f(mask) for every mask of `bits` bits with exactly rho set (Gosper's
// hack); stops early when f returns false, and then returns false.
template <class F>
bool for_each_mask(int bits, int rho, F&& f) {
    if (rho > bits) return true;
    if (rho == 0) return f(uint64_t{0});
    uint64_t x = rho == 64 ? ~uint64_t{0} : (uint64_t{1} << rho) - 1;
    for (;;) {
        if (!f(x)) return false;
        const uint64_t r = x + (x & (~x + 1));
        if (r == 0 || (bits < 64 && r >= (uint64_t{1} << bits))) return true;
        x = r | (((x ^ r) >> 2) >> __builtin_ctzll(x));
    }
}

// Per-thread "seen" marks: a generation number per slot, so nothing is cleared per query.
struct Stamps {
    std::vector<uint32_t> mark;
    uint32_t generation = 0;
    uint32_t next(std::size_t n) {
        if (mark.size() < n) mark.resize(n, 0);
        if (++generation == 0) {
            std::fill(mark.begin(), mark.end(), 0);
            generation = 1;
        }
        return generation;
    }
};
thread_local Stamps t_stamps;
thread_local std::vector<uint32_t> t_hit_idx, t_hit_dist;

// Whether every result is in hand once no unseen code is closer than `bound`:
// for k-NN when the k-th best is closer (ties at it are then all seen too),
// for range search when the radius is.
bool all_found(TopKSink& sink, int64_t bound) { return sink.settle() && sink.threshold < bound; }
bool all_found(const RangeSink& sink, int64_t bound) { return sink.threshold < bound; }

// The k-th nearest distance among n uniform random codes of nbits bits: the
// smallest r with n * P(Binomial(nbits, 1/2) <= r) >= k. Real codes are
// clustered, so their k-th distance is smaller: an optimistic estimate.
int64_t uniform_kth_distance(int64_t n, int nbits, int64_t k) {
    double log_term = -nbits * std::log(2.0);  // log P(d = 0)
    double cdf = 0;
    for (int r = 0; r <= nbits; ++r) {
        if (r > 0) log_term += std::log(static_cast<double>(nbits - r + 1) / r);
        cdf += std::exp(log_term);
        if (cdf * static_cast<double>(n) >= static_cast<double>(k)) return r;
    }
    return nbits;
}

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

void set_mih_budget_scale(double scale) {
    HX_CHECK(scale > 0, "scale must be > 0");
    g_budget_scale.store(scale);
}

void MIHIndex::Table::lookup(uint64_t key, uint32_t& begin, uint32_t& end) const {
    if (direct) {
        begin = offsets[key];
        end = offsets[key + 1];
        return;
    }
    const auto it = std::lower_bound(keys.begin(), keys.end(), key);
    if (it == keys.end() || *it != key) {
        begin = end = 0;
        return;
    }
    const std::size_t i = static_cast<std::size_t>(it - keys.begin());
    begin = offsets[i];
    end = offsets[i + 1];
}

MIHIndex::MIHIndex(int nbits, int m)
    : nbits_(nbits), words_(words_for(nbits > 0 ? nbits / 8 : 1)), m_requested_(m),
      main_(nbits > 0 ? nbits / 8 : 1), tail_(nbits > 0 && nbits % 8 == 0 ? nbits : 8) {
    HX_CHECK(nbits > 0 && nbits % 8 == 0 && nbits <= (1 << 24),
             "nbits must be a positive multiple of 8, at most 2^24, got " + std::to_string(nbits));
    HX_CHECK(m >= 0 && m <= nbits, "m must be between 1 and nbits (or None), got " + std::to_string(m));
    HX_CHECK(m == 0 || (nbits + m - 1) / m <= 64,
             "m must be at least nbits / 64 = " + std::to_string((nbits + 63) / 64) +
                 " so that substrings fit in 64 bits, got " + std::to_string(m));
}

MIHIndex::MIHIndex(MIHIndex&& o) noexcept
    : nbits_(o.nbits_), words_(o.words_), m_requested_(o.m_requested_), main_(std::move(o.main_)),
      main_ids_(std::move(o.main_ids_)), alive_(std::move(o.alive_)), dead_(o.dead_), tables_(std::move(o.tables_)),
      tail_(std::move(o.tail_)) {}

int64_t MIHIndex::size() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    return main_.size() - dead_ + tail_.size();
}

int MIHIndex::m() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    return static_cast<int>(tables_.size());
}

int MIHIndex::choose_m(int64_t n) const {
    if (m_requested_ > 0) return m_requested_;
    const int bits = std::max(4, std::min(kMaxAutoBits, static_cast<int>(std::lround(std::log2(std::max<int64_t>(n, 2))))));
    return std::min(nbits_, (nbits_ + bits - 1) / bits);
}

void MIHIndex::rebuild() {
    // Every live code (main without tombstones, then the tail) becomes the new main. Everything is
    // built aside and swapped in at the end, so a failed allocation leaves the index as it was.
    const int cs = code_size();
    std::vector<uint8_t> rows;
    std::vector<int64_t> ids;
    gather_live(&rows, ids);
    const int64_t n = static_cast<int64_t>(ids.size());

    CodeStore main(cs);
    main.append(rows.data(), n);
    IdMap main_ids;
    main_ids.append(ids.data(), n);
    main_ids.bump_next_id(next_default_id());
    std::vector<uint8_t> alive(static_cast<std::size_t>(n), 1);
    std::vector<Table> tables;
    if (n > 0) {
        const std::vector<uint64_t> words = rows_to_words(rows.data(), n, cs);
        const int m = choose_m(n);
        tables.resize(static_cast<std::size_t>(m));
        int lo = 0;
        for (int t = 0; t < m; ++t) {
            Table& T = tables[static_cast<std::size_t>(t)];
            T.bit_lo = lo;
            T.bits = nbits_ / m + (t < nbits_ % m ? 1 : 0);
            lo += T.bits;
            std::vector<uint64_t> keys(static_cast<std::size_t>(n));
            for (int64_t s = 0; s < n; ++s) keys[static_cast<std::size_t>(s)] = extract_bits(&words[static_cast<std::size_t>(s) * words_], T.bit_lo, T.bits);
            std::vector<uint32_t> order(static_cast<std::size_t>(n));
            T.direct = T.bits <= kMaxDirectBits;
            if (T.direct) {  // counting sort by key
                T.offsets.assign((std::size_t{1} << T.bits) + 1, 0);
                for (uint64_t key : keys) ++T.offsets[key + 1];
                for (std::size_t i = 1; i < T.offsets.size(); ++i) T.offsets[i] += T.offsets[i - 1];
                std::vector<uint32_t> fill(T.offsets.begin(), T.offsets.end() - 1);
                for (int64_t s = 0; s < n; ++s) order[fill[keys[static_cast<std::size_t>(s)]]++] = static_cast<uint32_t>(s);
            } else {
                for (int64_t s = 0; s < n; ++s) order[static_cast<std::size_t>(s)] = static_cast<uint32_t>(s);
                std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return keys[a] < keys[b]; });
                for (std::size_t i = 0; i < order.size(); ++i) {
                    if (i == 0 || keys[order[i]] != keys[order[i - 1]]) {
                        T.keys.push_back(keys[order[i]]);
                        T.offsets.push_back(static_cast<uint32_t>(i));
                    }
                }
                T.offsets.push_back(static_cast<uint32_t>(n));
            }
            T.slots = order;
            T.codes.resize(static_cast<std::size_t>(n) * words_);
            for (int64_t i = 0; i < n; ++i)
                std::copy_n(&words[static_cast<std::size_t>(order[static_cast<std::size_t>(i)]) * words_], words_,
                            &T.codes[static_cast<std::size_t>(i) * words_]);
        }
    }
    // Commit: nothing below allocates.
    main_ = std::move(main);
    main_ids_ = std::move(main_ids);
    alive_.swap(alive);
    dead_ = 0;
    tables_.swap(tables);
    tail_.reset();
    cost_.gave_up_history.store(0);
}

// Codes added since the last rebuild are scanned with every query, so the tail
// is kept to 1/64 of the main part (a rebuild costs O(N) and is amortised over
// N/64 additions); a quarter of tombstones also triggers one.
void MIHIndex::maybe_rebuild() {
    const int64_t live_main = main_.size() - dead_;
    const bool tail_big = tail_.size() > std::max<int64_t>(1024, live_main / 64);
    const bool first = tables_.empty() && tail_.size() > 0;
    const bool many_dead = dead_ > 0 && dead_ * 4 > main_.size();
    if (!(tail_big || first || many_dead)) return;
    // The rebuild only speeds searches up (the tail is scanned, tombstones skipped): if it cannot
    // allocate, the add or remove that asked for it has still happened, and a later one retries.
    try {
        rebuild();
    } catch (const std::bad_alloc&) {
    }
}

void MIHIndex::add(const uint8_t* codes, int64_t n, const int64_t* ids) {
    HX_CHECK(n >= 0, "number of codes must be >= 0");
    std::unique_lock<std::shared_mutex> lk(mu_);
    // Tables hold 32-bit slots.
    if (main_.size() - dead_ + tail_.size() + n >= (int64_t{1} << 32))
        throw std::invalid_argument("codes: an MIHIndex holds fewer than 2^32 codes; it has " +
                                    std::to_string(main_.size() - dead_ + tail_.size()) + ", adding " + std::to_string(n));
    std::vector<int64_t> assigned;
    if (ids) {
        main_ids_.check_new(ids, n);
        for (int64_t i = 0; i < n; ++i)
            if (tail_.contains(ids[i]))
                throw std::invalid_argument("ids: id " + std::to_string(ids[i]) + " (position " + std::to_string(i) +
                                            ") is already in the index");
    } else {
        const int64_t next = next_default_id();
        check_default_ids(next, n);
        assigned.resize(static_cast<std::size_t>(n));
        for (int64_t i = 0; i < n; ++i) assigned[static_cast<std::size_t>(i)] = next + i;
        ids = assigned.data();
    }
    tail_.add(codes, n, ids);
    maybe_rebuild();
}

// Modelled cost (ns, before calibration) of probing table t at radius rho and
// every later (radius, table) step until the pigeonhole bound exceeds
// `target`. Checked before each step, so a query that cannot pay gives up
// before spending, not after. (Predicting with the k-th distance found so far
// alone gave up on queries that pay: 10M uniform 64-bit, k = 10, went from
// 34x faiss to 9x; hence the optimistic estimate in target_distance.)
double MIHIndex::predicted_cost(int rho, int t, int64_t target) const {
    const int m = static_cast<int>(tables_.size());
    const double n = static_cast<double>(main_.size());
    double cost = 0;
    for (int r = rho;; ++r) {
        for (int u = (r == rho ? t : 0); u < m; ++u) {
            const Table& T = tables_[static_cast<std::size_t>(u)];
            if (r > T.bits) return cost;
            const double occupancy = T.bits >= 63 ? 0.0 : n / std::ldexp(1.0, T.bits);
            cost += binomial(T.bits, r) * (kProbeNs + occupancy * words_ * kVerifyNsPerWord);
            if (target < 0 || r >= T.bits || static_cast<int64_t>(m) * r + u + 1 > target) return cost;
        }
    }
}

template <class Sink>
bool MIHIndex::probe(const uint64_t* q, Sink& sink, double budget_ns, MihStats& st) const {
    const FilterFn filter = active_kernels().filter;
    const int m = static_cast<int>(tables_.size());
    const int64_t n = main_.size();
    Stamps& stamps = t_stamps;  // thread_locals read once: each access is a call in a shared library
    std::vector<uint32_t>& hit_idx = t_hit_idx;
    std::vector<uint32_t>& hit_dist = t_hit_dist;
    const uint32_t gen = stamps.next(static_cast<std::size_t>(n));
    uint32_t* mark = stamps.mark.data();
    std::vector<uint64_t> qsub(static_cast<std::size_t>(m));
    int max_bits = 0;
    for (int t = 0; t < m; ++t) {
        qsub[static_cast<std::size_t>(t)] = extract_bits(q, tables_[static_cast<std::size_t>(t)].bit_lo, tables_[static_cast<std::size_t>(t)].bits);
        max_bits = std::max(max_bits, tables_[static_cast<std::size_t>(t)].bits);
    }
    int64_t buckets = 0, candidates = 0, survivors = 0;
    bool gave_up = false;
    const double scale = cost_.probe_scale.load(std::memory_order_relaxed);
    const int64_t estimate = uniform_kth_distance(n, nbits_, k_of(sink));

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
            const double spent = scale * (buckets * kProbeNs + candidates * words_ * kVerifyNsPerWord);
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
                if ((buckets & 63) == 0 && scale * (buckets * kProbeNs + candidates * words_ * kVerifyNsPerWord) > budget_ns) {
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

namespace {
void learn(std::atomic<double>& average, double observed) {
    const double old = average.load(std::memory_order_relaxed);
    average.store((1 - kLearnRate) * old + kLearnRate * observed, std::memory_order_relaxed);
}
double now_ns() {
    return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

double MIHIndex::scan_budget_ns(int64_t nq, int threads) const {
    const bool batch = nq >= 2 * resolve_threads(threads);
    const double per_word = (batch ? cost_.scan_batch_ns : cost_.scan_single_ns).load(std::memory_order_relaxed);
    return per_word * static_cast<double>(main_.size()) * words_ * g_budget_scale.load(std::memory_order_relaxed);
}

template <class Sink>
bool MIHIndex::try_probe(const uint64_t* q, Sink& sink, double budget_ns, MihStats& st) const {
    const uint32_t recent = cost_.gave_up_history.load(std::memory_order_relaxed) & ((1u << kHistory) - 1);
    const uint64_t count = cost_.queries.fetch_add(1, std::memory_order_relaxed);
    if (__builtin_popcount(recent) >= kSkipAfter && count % kHistory != 0) return false;
    // The marks of a thread's first probe cost a page-faulting allocation (40 MB
    // for 10M codes, ~6 ms): made before the clock starts, or the model learns
    // from it that probing is 900x dearer than it is.
    t_stamps.next(static_cast<std::size_t>(main_.size()));
    const int64_t buckets0 = st.buckets, candidates0 = st.candidates, hits0 = st.hits;
    const double t0 = now_ns();
    const bool done = probe(q, sink, budget_ns, st);
    const double elapsed = now_ns() - t0;
    const double modelled = (st.buckets - buckets0) * kProbeNs +
                            (st.candidates - candidates0) * words_ * kVerifyNsPerWord + (st.hits - hits0) * kHitNs;
    // Short calls time mostly noise; one observation moves the scale at most 10x
    // (a preempted thread on a shared machine is not a cost of probing).
    if (modelled > 5000) learn(cost_.probe_scale, std::min(10.0, std::max(0.1, elapsed / modelled)));
    const uint32_t h = cost_.gave_up_history.load(std::memory_order_relaxed);
    cost_.gave_up_history.store((h << 1) | (done ? 0u : 1u), std::memory_order_relaxed);
    return done;
}

template <class Sink, class Make, class Keep>
MihStats MIHIndex::answer_main(const std::vector<uint64_t>& qwords, int64_t nq, int threads, int64_t workload,
                               Make make, Keep keep) const {
    // Whether probing pays depends on k (or the radius): the give-up history of
    // k = 10 says nothing about k = 100 (10M clustered codes: it kept 95 % of
    // k = 100 queries off the tables, at +18 % against a scan).
    if (cost_.workload.exchange(workload, std::memory_order_relaxed) != workload)
        cost_.gave_up_history.store(0, std::memory_order_relaxed);
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
    const double t0 = now_ns();
    scan_store<Sink>(main_, rq.data(), ns, threads, [&](int64_t) { return make(); },
                     [&](int64_t i, Sink& sink) { keep(rescan[static_cast<std::size_t>(i)], sink); });
    const double words = static_cast<double>(main_.size()) * words_;
    const int t = resolve_threads(threads);
    if (words * ns >= 1e5) {  // shorter scans time mostly noise
        const double elapsed = now_ns() - t0;
        auto bounded = [](std::atomic<double>& avg, double observed) {  // as for probe_scale
            const double now = avg.load(std::memory_order_relaxed);
            learn(avg, std::min(10 * now, std::max(0.1 * now, observed)));
        };
        if (ns >= 2 * t)
            bounded(cost_.scan_batch_ns, elapsed * t / (ns * words));
        else if (ns == 1)
            bounded(cost_.scan_single_ns, elapsed / words);
    }
    return total;
}

void MIHIndex::search(const uint8_t* queries, int64_t nq, int64_t k, int threads, int32_t* distances,
                      int64_t* ids, MihStats* stats) const {
    HX_CHECK(k > 0, "k must be > 0, got " + std::to_string(k));
    const std::vector<uint64_t> qwords = rows_to_words(queries, nq, code_size());
    std::shared_lock<std::shared_mutex> lk(mu_);
    const int64_t n = main_.size();
    std::vector<std::vector<Hit>> best(static_cast<std::size_t>(nq));
    const MihStats total = answer_main<TopKSink>(
        qwords, nq, threads, k, [&] { return TopKSink(k, n, main_ids_.slot_ids(), alive_.data()); },
        [&](int64_t q, TopKSink& sink) { best[static_cast<std::size_t>(q)] = sink.best_k(); });
    if (tail_.size() > 0) {
        std::vector<int32_t> td(static_cast<std::size_t>(nq * k));
        std::vector<int64_t> ti(static_cast<std::size_t>(nq * k));
        tail_.search(queries, nq, k, threads, td.data(), ti.data());
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
                                   MihStats* stats) const {
    HX_CHECK(radius >= 0, "radius must be >= 0, got " + std::to_string(radius));
    const std::vector<uint64_t> qwords = rows_to_words(queries, nq, code_size());
    std::shared_lock<std::shared_mutex> lk(mu_);
    const int64_t n = main_.size();
    std::vector<std::vector<Hit>> found(static_cast<std::size_t>(nq));
    const MihStats total = answer_main<RangeSink>(
        qwords, nq, threads, -1 - static_cast<int64_t>(radius), [&] { return RangeSink(radius, n, main_ids_.slot_ids(), alive_.data()); },
        [&](int64_t q, RangeSink& sink) { found[static_cast<std::size_t>(q)] = sink.sorted(); });
    if (tail_.size() > 0) {
        RangeResult t = tail_.range_search(queries, nq, radius, threads);
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

void MIHIndex::remove(const int64_t* ids, int64_t n) {
    std::unique_lock<std::shared_mutex> lk(mu_);
    std::vector<int64_t> from_tail, from_main;
    for (int64_t i = 0; i < n; ++i) (tail_.contains(ids[i]) ? from_tail : from_main).push_back(ids[i]);
    main_ids_.check_present(from_main.data(), static_cast<int64_t>(from_main.size()));
    std::sort(from_tail.begin(), from_tail.end());
    if (std::adjacent_find(from_tail.begin(), from_tail.end()) != from_tail.end())
        throw std::invalid_argument("ids: id " + std::to_string(*std::adjacent_find(from_tail.begin(), from_tail.end())) + " appears twice");
    tail_.remove(from_tail.data(), static_cast<int64_t>(from_tail.size()));
    for (int64_t id : from_main) {
        alive_[static_cast<std::size_t>(main_ids_.slot_of(id))] = 0;
        main_ids_.forget(id);
        ++dead_;
    }
    maybe_rebuild();
}

void MIHIndex::get(const int64_t* ids, int64_t n, uint8_t* out) const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    for (int64_t i = 0; i < n; ++i)
        if (!tail_.contains(ids[i])) main_ids_.slot_of(ids[i]);
    for (int64_t i = 0; i < n; ++i) {
        if (tail_.contains(ids[i]))
            tail_.get(ids + i, 1, out + i * code_size());
        else
            main_.read_row(main_ids_.slot_of(ids[i]), out + i * code_size());
    }
}

std::vector<int64_t> MIHIndex::ids() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    std::vector<int64_t> out;
    gather_live(nullptr, out);
    return out;
}

// Live codes (main part without tombstones, then the tail) and their ids, in
// that order; the caller holds the lock.
void MIHIndex::gather_live(std::vector<uint8_t>* rows, std::vector<int64_t>& ids) const {
    const std::size_t cs = static_cast<std::size_t>(code_size());
    const std::size_t live = static_cast<std::size_t>(main_.size() - dead_ + tail_.size());
    ids.reserve(live);
    if (rows) rows->reserve(live * cs);
    for (int64_t s = 0; s < main_.size(); ++s) {
        if (!alive_[static_cast<std::size_t>(s)]) continue;
        ids.push_back(main_ids_.slot_ids()[s]);
        if (rows) {
            rows->resize(rows->size() + cs);
            main_.read_row(s, rows->data() + rows->size() - cs);
        }
    }
    const std::vector<int64_t> tail_ids = tail_.ids();
    if (rows && !tail_ids.empty()) {
        rows->resize(rows->size() + tail_ids.size() * cs);
        tail_.get(tail_ids.data(), static_cast<int64_t>(tail_ids.size()), rows->data() + rows->size() - tail_ids.size() * cs);
    }
    ids.insert(ids.end(), tail_ids.begin(), tail_ids.end());
}

// Default ids continue after the largest id ever added to either part.
int64_t MIHIndex::next_default_id() const { return std::max(main_ids_.next_id(), tail_.next_id()); }

bool MIHIndex::contains(int64_t id) const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    return main_ids_.contains(id) || tail_.contains(id);
}

void MIHIndex::reset() {
    std::unique_lock<std::shared_mutex> lk(mu_);
    main_.clear();
    main_ids_.clear();
    alive_.clear();
    dead_ = 0;
    tables_.clear();
    tail_.reset();
}

// Payload of kind MIH: CodesPayload (format.h) whose parameter is the
// requested m (0 = automatic). Tables are rebuilt on load.
std::vector<uint8_t> MIHIndex::to_bytes() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    std::vector<uint8_t> rows;
    std::vector<int64_t> ids;
    gather_live(&rows, ids);
    const int64_t n = static_cast<int64_t>(ids.size());
    PayloadWriter w;
    write_codes_header(w, nbits_, static_cast<uint32_t>(m_requested_), n, next_default_id());
    w.put_bytes(rows.data(), rows.size());
    w.put_bytes(ids.data(), static_cast<std::size_t>(n) * sizeof(int64_t));
    return w.finish(IndexKind::MIH);
}

MIHIndex MIHIndex::from_bytes(const uint8_t* data, std::size_t size, const std::string& source) {
    PayloadReader r(data, size, IndexKind::MIH, source);
    const CodesPayload p = read_codes_payload(r);
    const uint32_t m = p.param;
    if (m > p.nbits || (m > 0 && (p.nbits + m - 1) / m > 64)) r.fail("invalid m " + std::to_string(m));
    return index_from_payload(p, r, MIHIndex(static_cast<int>(p.nbits), static_cast<int>(m)));
}

bool MIHIndex::restore_next_id(int64_t next_id) {
    std::unique_lock<std::shared_mutex> lk(mu_);
    if (next_id < next_default_id()) return false;
    main_ids_.bump_next_id(next_id);
    return true;
}

}  // namespace hashindex
