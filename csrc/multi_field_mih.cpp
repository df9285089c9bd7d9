// MultiFieldIndex's multi-index hashing: per-field substring tables, the weighted probe and its
// stopping rule (multi_field_index.h), and the choice between probing and scanning, which reuses
// MIHIndex's cost model (mih_cost.h) and its calibration at build time.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <mutex>
#include <new>
#include <thread>

#include "dispatch.h"
#include "errors.h"
#include "interrupt.h"
#include "mih_cost.h"
#include "multi_field_index.h"
#include "multi_field_top.h"
#include "parallel.h"
#include "probe_util.h"
#include "scan.h"

namespace hashindex {
namespace {

// Substrings are at most 16 bits (as MIHIndex's automatic choice): a table's offsets, 2^16 + 1
// entries, are then indexed directly by key. For the encoder's codes (16-bit signatures per cell of
// an 8 x 8 grid) 16-bit substrings are exactly the cells.
constexpr int kMaxSubBits = 16;
// Items added or moved since the build are checked by every query; past this share (or 1024 items)
// the tables are rebuilt, which amortises the O(N) build over N/64 changes (as MIHIndex).
constexpr int64_t kTailShare = 64;
constexpr int64_t kMinTail = 1024;
// Tables with at most this many distinct keys have their items counted per radius from the query's
// key (one pass over the keys, at the table's first step past radius 0) for the step's price.
constexpr std::size_t kCountKeys = 4096;

double binomial(int n, int r) {
    double c = 1;
    for (int i = 1; i <= r; ++i) c = c * (n - r + i) / i;
    return c;
}

// MIHIndex's fixed model, with every candidate a random access (a row of each field, read from the
// row-major copy by slot), where MIHIndex reads its candidates in bucket order and pays the random
// access only for hits: without it calibration measured probing at the clamp, 10x the model, on 1M
// items of two 1024-bit fields.
double modelled_ns(int64_t buckets, int64_t candidates, int words) {
    return MihCostModel::modelled_probe_ns(buckets, candidates * words, candidates);
}

uint64_t code_hash(const uint64_t* words, int n) {
    uint64_t h = 0x9e3779b97f4a7c15ull;
    for (int w = 0; w < n; ++w) {  // splitmix64's finaliser over each word in turn
        uint64_t z = h ^ words[w];
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        h = z ^ (z >> 31);
    }
    return h;
}

// popcount(a XOR b) through the active level's filter kernel (one row, no threshold): POPCNT or
// VPOPCNTQ as the level has them. This translation unit is built without ISA flags, where
// __builtin_popcountll is a library call per word.
uint32_t distance(FilterFn filter, const uint64_t* a, const uint64_t* b, int words) {
    uint32_t slot = 0, d = 0;
    filter(a, 1, words, b, std::numeric_limits<int32_t>::max(), &slot, &d);
    return d;
}

}  // namespace

void MultiFieldIndex::maybe_rebuild_tables() {
    if (!mih_) return;
    const int64_t n = ids_.size();
    if (n == 0) {
        tables_.reset();
        return;
    }
    const int64_t unindexed = tables_ ? std::max<int64_t>(0, n - tables_->built) +
                                            static_cast<int64_t>(tables_->dirty_slots.size())
                                      : n;
    if (tables_ && unindexed <= std::max(kMinTail, n / kTailShare)) return;
    // As MIHIndex: the tables only speed searches up, so an index that cannot allocate them keeps
    // the old ones (or none) and scans; a later change retries.
    try {
        rebuild_tables();
    } catch (const std::bad_alloc&) {
    }
}

void MultiFieldIndex::rebuild_tables() {
    const int64_t n = ids_.size();
    auto t = std::make_unique<Tables>();
    t->built = n;
    const int bits = std::max(4, std::min(kMaxSubBits, static_cast<int>(std::lround(std::log2(std::max<int64_t>(n, 2))))));
    for (int f = 0; f < nfields(); ++f) {
        const int nb = nbits_[static_cast<std::size_t>(f)], m = std::min(nb, (nb + bits - 1) / bits);
        for (int i = 0, lo = 0; i < m; ++i) {
            Tables::Sub sub;
            sub.field = f;
            sub.bit_lo = lo;
            sub.bits = nb / m + (i < nb % m ? 1 : 0);
            lo += sub.bits;
            t->subs.push_back(std::move(sub));
        }
    }
    // Tables are independent: one task each (1M items, two 1024-bit fields, 128 tables: 3.4 s on one
    // thread of the 2-core VM).
    constexpr int64_t kRowsPerTask = 1 << 16;
    const int64_t row_tasks = (n + kRowsPerTask - 1) / kRowsPerTask;
    t->rows.resize(stores_.size());
    for (std::size_t f = 0; f < stores_.size(); ++f) t->rows[f].resize(static_cast<std::size_t>(n * stores_[f].words()));
    parallel_for(resolve_threads(0), row_tasks * nfields(), [&](int64_t task) {
        const auto f = static_cast<std::size_t>(task / row_tasks);
        const int words = stores_[f].words();
        const int64_t s0 = task % row_tasks * kRowsPerTask, s1 = std::min(n, s0 + kRowsPerTask);
        for (int64_t s = s0; s < s1; ++s) stores_[f].read_words(s, &t->rows[f][static_cast<std::size_t>(s * words)]);
    });
    // Buckets list their items in id order, so that a bucket of exact ties can stop once k are held
    // (probe()); with ids 0..n-1 that is slot order.
    std::vector<uint32_t> by_id;
    if (!ids_.dense()) {
        by_id.resize(static_cast<std::size_t>(n));
        for (int64_t s = 0; s < n; ++s) by_id[static_cast<std::size_t>(s)] = static_cast<uint32_t>(s);
        const int64_t* sid = ids_.slot_ids();
        std::sort(by_id.begin(), by_id.end(), [&](uint32_t a, uint32_t b) { return sid[a] < sid[b]; });
    }
    t->hashes.resize(stores_.size());
    parallel_for(resolve_threads(0), nfields(), [&](int64_t f) {
        const int words = stores_[static_cast<std::size_t>(f)].words();
        std::vector<uint64_t>& h = t->hashes[static_cast<std::size_t>(f)];
        h.resize(static_cast<std::size_t>(n));
        for (int64_t s = 0; s < n; ++s) h[static_cast<std::size_t>(s)] = code_hash(&t->rows[static_cast<std::size_t>(f)][static_cast<std::size_t>(s * words)], words);
        std::sort(h.begin(), h.end());
    });
    parallel_for(resolve_threads(0), static_cast<int64_t>(t->subs.size()), [&](int64_t i) {
        Tables::Sub& sub = t->subs[static_cast<std::size_t>(i)];
        const auto& rows = t->rows[static_cast<std::size_t>(sub.field)];
        const int words = stores_[static_cast<std::size_t>(sub.field)].words();
        std::vector<uint32_t> keys(static_cast<std::size_t>(n));
        for (int64_t s = 0; s < n; ++s)
            keys[static_cast<std::size_t>(s)] =
                static_cast<uint32_t>(mih::extract_bits(&rows[static_cast<std::size_t>(s * words)], sub.bit_lo, sub.bits));
        sub.offsets.assign((std::size_t{1} << sub.bits) + 1, 0);  // counting sort by key
        for (const uint32_t key : keys) ++sub.offsets[key + 1];
        for (std::size_t k = 0; k + 1 < sub.offsets.size(); ++k)
            if (sub.offsets[k + 1]) sub.keys.push_back(static_cast<uint32_t>(k));
        for (std::size_t k = 1; k < sub.offsets.size(); ++k) sub.offsets[k] += sub.offsets[k - 1];
        std::vector<uint32_t> fill(sub.offsets.begin(), sub.offsets.end() - 1);
        sub.slots.resize(static_cast<std::size_t>(n));
        for (int64_t i = 0; i < n; ++i) {
            const uint32_t s = by_id.empty() ? static_cast<uint32_t>(i) : by_id[static_cast<std::size_t>(i)];
            sub.slots[fill[keys[s]]++] = s;
        }
    });
    t->dirty.assign(static_cast<std::size_t>(n), 0);
    tables_ = std::move(t);  // commit: nothing below allocates but calibration's scratch
    cost_.gave_up_history.store(0);
    calibrate_tables();
}

void MultiFieldIndex::tables_moved(int64_t from, int64_t to) {
    if (!tables_) return;
    // Slot `to` now holds another item; slot `from` is empty, and will hold the next item added.
    for (const int64_t s : {from, to}) {
        if (s >= tables_->built || tables_->dirty[static_cast<std::size_t>(s)]) continue;
        tables_->dirty[static_cast<std::size_t>(s)] = 1;
        tables_->dirty_slots.push_back(s);
    }
}

int MultiFieldIndex::active_words(const std::vector<FieldQuery>& queries) const {
    int words = 0;
    for (std::size_t f = 0; f < queries.size(); ++f)
        if (queries[f].weight > 0) words += stores_[f].words();
    return words;
}

double MultiFieldIndex::scan_budget_ns(int words, int64_t nq, int threads) const {
    const bool batch = nq >= 2 * resolve_threads(threads);
    const double per_word = (batch ? cost_.scan_batch_ns : cost_.scan_single_ns).load(std::memory_order_relaxed);
    return per_word * static_cast<double>(ids_.size()) * words * mih::budget_scale();
}

void MultiFieldIndex::offer_unindexed(const std::vector<std::vector<uint64_t>>& qwords,
                                      const std::vector<FieldQuery>& queries, int64_t q,
                                      const int64_t* exclude_groups, const uint8_t* pass, Top& top) const {
    const Tables& t = *tables_;
    const int64_t n = ids_.size();
    const int64_t exclude = exclude_groups ? exclude_groups[q] : kNoGroup;
    const FilterFn filter = active_kernels().filter;
    if (n > t.built) scan_range(qwords, queries, q, q + 1, t.built, n, exclude_groups, pass, &top);
    std::vector<uint64_t> row;
    for (const int64_t s : t.dirty_slots) {
        if (s >= n || (pass && !pass[s])) continue;
        double d = 0;
        for (std::size_t f = 0; f < queries.size(); ++f) {
            if (queries[f].weight <= 0) continue;
            const int words = stores_[f].words();
            row.resize(static_cast<std::size_t>(words));
            stores_[f].read_words(s, row.data());
            d += queries[f].weight * distance(filter, &qwords[f][static_cast<std::size_t>(q) * words], row.data(), words);
        }
        const int64_t g = group_at(s);
        if (exclude != kNoGroup && g == exclude) continue;
        top.offer(WeightedHit{d, ids_.id_of(s), g});
    }
}

bool MultiFieldIndex::probe(const std::vector<std::vector<uint64_t>>& qwords, const std::vector<FieldQuery>& queries,
                            int64_t q, int64_t exclude, const uint8_t* pass, Top& top, double budget_ns,
                            MihStats& st) const {
    const Tables& t = *tables_;
    const int64_t n = ids_.size();
    const FilterFn filter = active_kernels().filter;
    Stamps& stamps = thread_stamps();
    const uint32_t gen = stamps.next(static_cast<std::size_t>(t.built));
    uint32_t* mark = stamps.mark.data();
    const int nf = nfields();

    struct Active {
        const Tables::Sub* sub;
        uint32_t key;
        int radius;  // the next radius to probe: every unseen item differs in >= radius bits here
        // Items per radius from the key, counted over the keys present when they are few (skewed
        // tables, where the uniform estimate is far off: the neighbours of a common key are common).
        std::vector<uint32_t> at_radius;
    };
    std::vector<Active> active;
    std::vector<const uint64_t*> qf(static_cast<std::size_t>(nf), nullptr), rows(static_cast<std::size_t>(nf), nullptr);
    std::vector<int> fwords(static_cast<std::size_t>(nf), 0);
    const int verify_words = active_words(queries);
    for (int f = 0; f < nf; ++f) {
        if (queries[static_cast<std::size_t>(f)].weight <= 0) continue;
        fwords[static_cast<std::size_t>(f)] = stores_[static_cast<std::size_t>(f)].words();
        qf[static_cast<std::size_t>(f)] = &qwords[static_cast<std::size_t>(f)][static_cast<std::size_t>(q) * fwords[static_cast<std::size_t>(f)]];
        rows[static_cast<std::size_t>(f)] = t.rows[static_cast<std::size_t>(f)].data();
    }
    for (const Tables::Sub& sub : t.subs)
        if (qf[static_cast<std::size_t>(sub.field)])
            active.push_back(Active{&sub, static_cast<uint32_t>(mih::extract_bits(qf[static_cast<std::size_t>(sub.field)], sub.bit_lo, sub.bits)), 0});
    std::vector<int64_t> radius_sum(static_cast<std::size_t>(nf), 0);

    const double scale = cost_.probe_scale.load(std::memory_order_relaxed);
    int64_t buckets = 0, candidates = 0, hits = 0;
    auto spent = [&] { return scale * modelled_ns(buckets, candidates, verify_words); };
    auto verify = [&](uint32_t slot) {
        if (mark[slot] == gen) return;
        mark[slot] = gen;
        if (slot >= n || t.dirty[slot] || (pass && !pass[slot])) return;
        ++candidates;
        // The weighted sum in field order, as the scan's sink adds it: equal items, equal sums.
        double d = 0;
        for (int f = 0; f < nf; ++f)
            if (qf[static_cast<std::size_t>(f)])
                d += queries[static_cast<std::size_t>(f)].weight *
                     distance(filter, rows[static_cast<std::size_t>(f)] + static_cast<std::size_t>(slot) * fwords[static_cast<std::size_t>(f)], qf[static_cast<std::size_t>(f)], fwords[static_cast<std::size_t>(f)]);
        if (d > top.bar()) return;
        ++hits;
        const int64_t g = group_at(slot);
        if (exclude != kNoGroup && g == exclude) return;
        top.offer(WeightedHit{d, ids_.id_of(slot), g});
    };
    // Items whose code equals the query's in every field asked for, at most (hashes may collide).
    double ties = kInf;
    for (int f = 0; f < nf; ++f) {
        if (!qf[static_cast<std::size_t>(f)]) continue;
        const std::vector<uint64_t>& h = t.hashes[static_cast<std::size_t>(f)];
        const auto range = std::equal_range(h.begin(), h.end(), code_hash(qf[static_cast<std::size_t>(f)], fwords[static_cast<std::size_t>(f)]));
        ties = std::min(ties, static_cast<double>(range.second - range.first));
    }
    bool proven = false;
    // False once the budget is spent (checked every 256 candidates: one bucket may hold most items),
    // or once a bucket of the query's own key (radius 0) holds k results at distance 0 and its
    // next item a larger id: the bucket is in id order, so no later item of it comes before them,
    // and an item outside it is at least this field's weight away.
    auto visit = [&](const Tables::Sub& sub, uint32_t key, bool own) {
        ++buckets;
        const uint32_t b = sub.offsets[key], e = sub.offsets[key + 1];
        constexpr uint32_t kAhead = 8;  // candidates are random rows: their misses overlap this far ahead
        for (uint32_t i = b; i < e; ++i) {
            if (((i - b) & 255) == 255 && spent() > budget_ns) return false;
            if (i + kAhead < e) {
                const uint32_t ahead = sub.slots[i + kAhead];
                for (int f = 0; f < nf; ++f)
                    if (qf[static_cast<std::size_t>(f)]) __builtin_prefetch(rows[static_cast<std::size_t>(f)] + static_cast<std::size_t>(ahead) * fwords[static_cast<std::size_t>(f)]);
            }
            verify(sub.slots[i]);
            if (own && top.full() && top.bar() <= 0 && i + 1 < e) {
                const uint32_t next = sub.slots[i + 1];
                if (next < n && !t.dirty[next] && ids_.id_of(next) > top.best.rbegin()->id) {
                    proven = true;
                    return false;
                }
            }
        }
        return (buckets & 255) || spent() <= budget_ns;
    };
    bool gave_up = false;
    for (;;) {
        double bound = 0;  // no unseen item is closer (same operation order as the sums: monotone)
        for (int f = 0; f < nf; ++f)
            if (qf[static_cast<std::size_t>(f)]) bound += queries[static_cast<std::size_t>(f)].weight * static_cast<double>(radius_sum[static_cast<std::size_t>(f)]);
        if (top.full() && top.bar() < bound) break;
        // The cheapest step per unit of bound gained: keys to look up and candidates to verify,
        // exact at radius 0 (the query's own bucket), the uniform estimate beyond.
        Active* next = nullptr;
        double next_cost = 0, best_rate = kInf;
        for (Active& a : active) {
            const Tables::Sub& sub = *a.sub;
            const double keys = std::min(binomial(sub.bits, a.radius), static_cast<double>(sub.keys.size()));
            if (a.radius == 1 && a.at_radius.empty() && sub.keys.size() <= kCountKeys) {
                a.at_radius.assign(static_cast<std::size_t>(sub.bits) + 1, 0);
                for (const uint32_t key : sub.keys)
                    a.at_radius[static_cast<std::size_t>(popcount32(key ^ a.key))] += sub.offsets[key + 1] - sub.offsets[key];
            }
            const double own = sub.offsets[a.key + 1] - sub.offsets[a.key];
            // With k exact ties among `own` items in id order, about k * own / ties are read.
            const double cands = a.radius == 0 ? (ties >= static_cast<double>(top.k) ? std::min(own, top.k * own / ties) : own)
                                 : !a.at_radius.empty()
                                     ? static_cast<double>(a.at_radius[static_cast<std::size_t>(a.radius)])
                                     : static_cast<double>(t.built) * binomial(sub.bits, a.radius) / std::ldexp(1.0, sub.bits);
            const double cost = scale * modelled_ns(static_cast<int64_t>(keys), static_cast<int64_t>(cands), verify_words);
            const double rate = cost / queries[static_cast<std::size_t>(sub.field)].weight;
            if (rate < best_rate) {
                best_rate = rate;
                next = &a;
                next_cost = cost;
            }
        }
        // Past the first steps, the work still needed is at least what the bound has cost so far per
        // unit, times the distance still to cover (later steps cost more per unit: probes widen), so
        // a query whose neighbours are far gives up after a part of the budget, not all of it.
        const double at = spent();
        if (at + next_cost > budget_ns ||
            (top.full() && bound > 0 && at * (top.bar() + 1) / bound > budget_ns)) {
            gave_up = true;
            break;
        }
        interruption_point();
        const Tables::Sub& sub = *next->sub;
        const int r = next->radius;
        st.max_radius = std::max(st.max_radius, r);
        if (binomial(sub.bits, r) <= static_cast<double>(sub.keys.size())) {
            for_each_mask(sub.bits, r, [&](uint64_t mask) { return visit(sub, next->key ^ static_cast<uint32_t>(mask), r == 0); });
        } else {
            for (const uint32_t key : sub.keys)
                if (popcount32(key ^ next->key) == r && !visit(sub, key, false)) break;
        }
        if (proven) break;
        if (spent() > budget_ns) {  // a step the estimate priced too low
            gave_up = true;
            break;
        }
        ++next->radius;
        ++radius_sum[static_cast<std::size_t>(sub.field)];
        if (next->radius > sub.bits) break;  // every key of this table visited: every item seen
    }
    st.buckets += buckets;
    st.candidates += candidates;
    st.hits += hits;
    return !gave_up;
}

void MultiFieldIndex::search_tables(const std::vector<std::vector<uint64_t>>& qwords,
                                    const std::vector<FieldQuery>& queries, int64_t nq, int64_t k,
                                    const int64_t* exclude_groups, bool one_per_group, int threads,
                                    const uint8_t* pass, double* distances, int64_t* ids, MihStats& stats) const {
    // What pays depends on k, the fields asked and the group rule: each has its own give-up history.
    int64_t workload = k * 4 + (one_per_group ? 2 : 0) + (exclude_groups ? 1 : 0);
    for (std::size_t f = 0; f < queries.size() && f < 24; ++f)
        if (queries[f].weight > 0) workload |= int64_t{1} << (40 + f);
    cost_.set_workload(workload);
    const int64_t n = ids_.size();
    stats.tail = std::max<int64_t>(0, n - tables_->built) + static_cast<int64_t>(tables_->dirty_slots.size());
    stats.probe_scale = cost_.probe_scale.load(std::memory_order_relaxed);
    const int nthreads = resolve_threads(threads);
    stats.scan_ns_per_word =
        (nq >= 2 * nthreads ? cost_.scan_batch_ns : cost_.scan_single_ns).load(std::memory_order_relaxed);
    const int words = active_words(queries);
    const double budget = scan_budget_ns(words, nq, threads);
    std::vector<int64_t> rescan;
    std::mutex mu;
    parallel_for(nthreads, nq, [&](int64_t q) {
        Top top{k, one_per_group, {}, {}};
        const int64_t exclude = exclude_groups ? exclude_groups[q] : kNoGroup;
        MihStats st;
        bool done = false;
        if (!cost_.skip_probe()) {
            // The marks of a thread's first probe are a page-faulting allocation: made before the
            // clock starts, as in MIHIndex::try_probe.
            thread_stamps().next(static_cast<std::size_t>(tables_->built));
            const double t0 = mih::now_ns();
            offer_unindexed(qwords, queries, q, exclude_groups, pass, top);
            done = probe(qwords, queries, q, exclude, pass, top, budget, st);
            cost_.observe_probe(mih::now_ns() - t0, modelled_ns(st.buckets, st.candidates, words), done);
        }
        if (done) top.write(distances + q * k, ids + q * k);
        std::lock_guard<std::mutex> g(mu);
        stats.buckets += st.buckets;
        stats.candidates += st.candidates;
        stats.hits += st.hits;
        stats.max_radius = std::max(stats.max_radius, st.max_radius);
        (done ? stats.by_mih : stats.by_scan) += 1;
        if (!done) rescan.push_back(q);
    });
    if (rescan.empty()) return;
    // The queries handed back: one scan of every item, timed for the cost model.
    std::sort(rescan.begin(), rescan.end());
    const auto ns = static_cast<int64_t>(rescan.size());
    std::vector<std::vector<uint64_t>> rq(qwords.size());
    for (std::size_t f = 0; f < qwords.size(); ++f) {
        if (qwords[f].empty()) continue;
        const auto w = static_cast<std::size_t>(stores_[f].words());
        for (const int64_t q : rescan)
            rq[f].insert(rq[f].end(), qwords[f].begin() + static_cast<std::ptrdiff_t>(q * w),
                         qwords[f].begin() + static_cast<std::ptrdiff_t>((q + 1) * w));
    }
    std::vector<int64_t> rexclude;
    if (exclude_groups)
        for (const int64_t q : rescan) rexclude.push_back(exclude_groups[q]);
    std::vector<double> rd(static_cast<std::size_t>(ns * k));
    std::vector<int64_t> ri(static_cast<std::size_t>(ns * k));
    const double t0 = mih::now_ns();
    scan_search(rq, queries, ns, k, exclude_groups ? rexclude.data() : nullptr, one_per_group, threads, pass,
                rd.data(), ri.data());
    cost_.observe_scan(mih::now_ns() - t0, static_cast<double>(n) * words, ns, nthreads);
    for (int64_t i = 0; i < ns; ++i) {
        const int64_t q = rescan[static_cast<std::size_t>(i)];
        std::copy_n(&rd[static_cast<std::size_t>(i * k)], k, distances + q * k);
        std::copy_n(&ri[static_cast<std::size_t>(i * k)], k, ids + q * k);
    }
}

// As MIHIndex::calibrate: the fixed model's constants were fitted on one VM, so each build times a
// scan of this index (one query, and a batch) and probes of stored items (queries near stored
// items are what retrieval asks), all fields at weight 1. Small indexes skip it.
void MultiFieldIndex::calibrate_tables() {
    const int64_t n = ids_.size();
    if (n < (int64_t{1} << 14)) return;
    const int threads = resolve_threads(0);
    const int64_t nq = std::max<int64_t>(8, 2 * threads);
    std::vector<std::vector<uint64_t>> qwords(stores_.size());
    std::vector<FieldQuery> queries(stores_.size());
    double words = 0;
    for (std::size_t f = 0; f < stores_.size(); ++f) {
        const int w = stores_[f].words();
        words += w;
        qwords[f].resize(static_cast<std::size_t>(nq * w));
        for (int64_t i = 0; i < nq; ++i) stores_[f].read_words(i * (n / nq), &qwords[f][static_cast<std::size_t>(i * w)]);
        queries[f].weight = 1.0;
    }
    auto scan_ns = [&](int64_t count) {
        std::vector<double> d(static_cast<std::size_t>(count * 10));
        std::vector<int64_t> i(static_cast<std::size_t>(count * 10));
        return mih::fastest_ns([&] { scan_search(qwords, queries, count, 10, nullptr, false, 0, nullptr, d.data(), i.data()); });
    };
    const double all = static_cast<double>(n) * words;
    const double single = scan_ns(1);
    cost_.scan_single_ns.store(single / all, std::memory_order_relaxed);
    cost_.scan_batch_ns.store(scan_ns(nq) * threads / (static_cast<double>(nq) * all), std::memory_order_relaxed);
    std::vector<double> ratios;
    for (int64_t i = 0; i < nq; ++i) {
        Top top{10, false, {}, {}};
        MihStats st;
        thread_stamps().next(static_cast<std::size_t>(tables_->built));
        const double t0 = mih::now_ns();
        // Bounded: where neighbours are far a probe to the end verifies every item by random access
        // (0.5 s each on 1M encoder-like items, against a 5 ms scan); the ratio needs only some work.
        probe(qwords, queries, i, kNoGroup, nullptr, top, 2 * single, st);
        const double elapsed = mih::now_ns() - t0;
        const double modelled = modelled_ns(st.buckets, st.candidates, static_cast<int>(words));
        if (modelled > 0) ratios.push_back(elapsed / modelled);
    }
    if (ratios.empty()) return;
    std::nth_element(ratios.begin(), ratios.begin() + static_cast<std::ptrdiff_t>(ratios.size() / 2), ratios.end());
    cost_.probe_scale.store(std::min(10.0, std::max(0.1, ratios[ratios.size() / 2])), std::memory_order_relaxed);
}

}  // namespace hashindex
