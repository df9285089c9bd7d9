// MultiFieldIndex's multi-index hashing: the engine's tables (mih_engine.h) over every field, and
// the weighted probe and its stopping rule (multi_field_index.h).
#include <algorithm>
#include <cmath>
#include <limits>
#include <new>

#include "dispatch.h"
#include "errors.h"
#include "interrupt.h"
#include "mih_engine.h"
#include "multi_field_index.h"
#include "multi_field_top.h"

namespace hashindex {
namespace {

// Tables with at most this many distinct keys have their items counted per radius from the query's
// key (one pass over the keys, at the table's first step past radius 0) for the step's price.
constexpr std::size_t kCountKeys = 4096;

// MIHIndex's fixed model, with every candidate a random access (a row of each field, read from the
// row-major copy by slot), where MIHIndex reads its candidates in bucket order and pays the random
// access only for hits: without it calibration measured probing at its clamp, far above the model,
// on items of two 1024-bit fields (benchmarks/RESULTS.md, "Measurements behind the code").
double modelled_ns(int64_t buckets, int64_t candidates, int words) {
    return MihCostModel::modelled_probe_ns(buckets, candidates * words, candidates);
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
    const int64_t n = items_.size();
    if (!mih_ || n == 0) tables_.reset();
    if (!mih_ || !tables_stale(tables_.get(), n)) return;
    // As MIHIndex: the tables only speed searches up, so an index that cannot allocate them keeps
    // the old ones (or none) and scans; a later change retries.
    try {
        tables_ = build_tables(items_, TableSpec{std::vector<int>(static_cast<std::size_t>(nfields()), 0), false, true});
    } catch (const std::bad_alloc&) {
        return;
    }
    cost_.gave_up_history.store(0);
    // Calibrated with every field at weight 1.
    std::vector<std::vector<uint64_t>> qwords(static_cast<std::size_t>(nfields()));
    std::vector<FieldQuery> queries(static_cast<std::size_t>(nfields()));
    const int64_t nq = calibration_queries();
    for (int f = 0; f < nfields(); ++f) {
        const int w = items_.store(f).words();
        qwords[static_cast<std::size_t>(f)].resize(static_cast<std::size_t>(nq * w));
        for (int64_t i = 0; i < nq; ++i) items_.store(f).read_words(calibration_slot(i, n), &qwords[static_cast<std::size_t>(f)][static_cast<std::size_t>(i * w)]);
        queries[static_cast<std::size_t>(f)].weight = 1.0;
    }
    const Ask ask{qwords, queries, 10, nullptr, false, nullptr};
    const int words = active_words(queries);
    std::vector<double> d(static_cast<std::size_t>(nq * 10));
    std::vector<int64_t> ids(static_cast<std::size_t>(nq * 10));
    calibrate(
        cost_, n, static_cast<double>(n) * words, n, [&](int64_t count) { scan_search(ask, count, 0, d.data(), ids.data()); },
        [&](int64_t i, double budget, MihStats& st, double&) {
            Top top{10, false, {}, {}};
            const bool done = probe(ask, i, top, budget, st);
            return ProbeOutcome{done, modelled_ns(st.buckets, st.candidates, words)};
        });
}

int MultiFieldIndex::active_words(const std::vector<FieldQuery>& queries) const {
    int words = 0;
    for (std::size_t f = 0; f < queries.size(); ++f)
        if (queries[f].weight > 0) words += items_.store(static_cast<int>(f)).words();
    return words;
}

void MultiFieldIndex::offer_unindexed(const Ask& ask, int64_t q, Top& top) const {
    const Tables& t = *tables_;
    const int64_t n = items_.size();
    const FilterFn filter = active_kernels().filter;
    if (n > t.built) scan_range(ask, q, q + 1, t.built, n, &top);
    std::vector<uint64_t> row;
    for (const int64_t s : t.dirty_slots) {
        if (s >= n || (ask.pass && !ask.pass[s])) continue;
        double d = 0;
        for (int f = 0; f < nfields(); ++f) {
            const FieldQuery& fq = ask.queries[static_cast<std::size_t>(f)];
            if (fq.weight <= 0) continue;
            const int words = items_.store(f).words();
            row.resize(static_cast<std::size_t>(words));
            items_.store(f).read_words(s, row.data());
            d += fq.weight * distance(filter, &ask.qwords[static_cast<std::size_t>(f)][static_cast<std::size_t>(q * words)], row.data(), words);
        }
        const int64_t g = items_.group_at(s);
        if (ask.exclude(q) != kNoGroup && g == ask.exclude(q)) continue;
        top.offer(WeightedHit{d, items_.ids().id_of(s), g});
    }
}

bool MultiFieldIndex::probe(const Ask& ask, int64_t q, Top& top, double budget_ns, MihStats& st) const {
    const Tables& t = *tables_;
    const std::vector<FieldQuery>& queries = ask.queries;
    const uint8_t* pass = ask.pass;
    const int64_t exclude = ask.exclude(q);
    const int64_t n = items_.size();
    const FilterFn filter = active_kernels().filter;
    Stamps& stamps = thread_stamps();
    const uint32_t gen = stamps.next(static_cast<std::size_t>(t.built));
    uint32_t* mark = stamps.mark.data();
    const int nf = nfields();

    struct Active {
        const SubTable* sub;
        uint64_t key;
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
        fwords[static_cast<std::size_t>(f)] = items_.store(f).words();
        qf[static_cast<std::size_t>(f)] = &ask.qwords[static_cast<std::size_t>(f)][static_cast<std::size_t>(q) * fwords[static_cast<std::size_t>(f)]];
        rows[static_cast<std::size_t>(f)] = t.rows[static_cast<std::size_t>(f)].data();
    }
    for (const SubTable& sub : t.subs)
        if (qf[static_cast<std::size_t>(sub.field)])
            active.push_back(Active{&sub, mih::extract_bits(qf[static_cast<std::size_t>(sub.field)], sub.bit_lo, sub.bits), 0, {}});
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
        const int64_t g = items_.group_at(slot);
        if (exclude != kNoGroup && g == exclude) return;
        top.offer(WeightedHit{d, items_.ids().id_of(slot), g});
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
    auto visit = [&](const SubTable& sub, uint64_t key, bool own) {
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
                if (next < n && !t.dirty[next] && items_.ids().id_of(next) > top.worst().id) {
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
            const SubTable& sub = *a.sub;
            const double keys = std::min(mih::binomial(sub.bits, a.radius), static_cast<double>(sub.keys.size()));
            if (a.radius == 1 && a.at_radius.empty() && sub.keys.size() <= kCountKeys) {
                a.at_radius.assign(static_cast<std::size_t>(sub.bits) + 1, 0);
                for (const uint64_t key : sub.keys)
                    a.at_radius[static_cast<std::size_t>(popcount32(static_cast<uint32_t>(key ^ a.key)))] += sub.offsets[key + 1] - sub.offsets[key];
            }
            const double own = sub.offsets[a.key + 1] - sub.offsets[a.key];
            // With k exact ties among `own` items in id order, about k * own / ties are read.
            const double cands = a.radius == 0 ? (ties >= static_cast<double>(top.k) ? std::min(own, top.k * own / ties) : own)
                                 : !a.at_radius.empty()
                                     ? static_cast<double>(a.at_radius[static_cast<std::size_t>(a.radius)])
                                     : static_cast<double>(t.built) * mih::binomial(sub.bits, a.radius) / std::ldexp(1.0, sub.bits);
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
        const SubTable& sub = *next->sub;
        const int r = next->radius;
        st.max_radius = std::max(st.max_radius, r);
        if (mih::binomial(sub.bits, r) <= static_cast<double>(sub.keys.size())) {
            for_each_mask(sub.bits, r, [&](uint64_t mask) { return visit(sub, next->key ^ mask, r == 0); });
        } else {
            for (const uint64_t key : sub.keys)
                if (popcount32(static_cast<uint32_t>(key ^ next->key)) == r && !visit(sub, key, false)) break;
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

void MultiFieldIndex::search_tables(const Ask& ask, int64_t nq, int threads, double* distances, int64_t* ids,
                                    MihStats& stats) const {
    // What pays depends on k, the fields asked and the group rule: each has its own give-up history.
    int64_t workload = ask.k * 4 + (ask.one_per_group ? 2 : 0) + (ask.exclude_groups ? 1 : 0);
    for (std::size_t f = 0; f < ask.queries.size() && f < 24; ++f)
        if (ask.queries[f].weight > 0) workload |= int64_t{1} << (40 + f);
    cost_.set_workload(workload);
    const int64_t n = items_.size(), k = ask.k;
    stats.tail = tables_->unindexed(n);
    const int words = active_words(ask.queries);
    probe_or_scan(
        cost_, nq, threads, static_cast<double>(n) * words, tables_->built, stats,
        [&](int64_t q, double budget, MihStats& st) {
            Top top{k, ask.one_per_group, {}, {}};
            offer_unindexed(ask, q, top);
            const bool done = probe(ask, q, top, budget, st);
            if (done) top.write(distances + q * k, ids + q * k);
            return ProbeOutcome{done, modelled_ns(st.buckets, st.candidates, words)};
        },
        [&](const std::vector<int64_t>& back) {
            // The queries handed back: one scan of every item.
            const auto nb = static_cast<int64_t>(back.size());
            std::vector<std::vector<uint64_t>> rq(ask.qwords.size());
            for (std::size_t f = 0; f < rq.size(); ++f) {
                if (ask.qwords[f].empty()) continue;
                const auto w = static_cast<std::ptrdiff_t>(items_.store(static_cast<int>(f)).words());
                for (const int64_t q : back)
                    rq[f].insert(rq[f].end(), ask.qwords[f].begin() + q * w, ask.qwords[f].begin() + (q + 1) * w);
            }
            std::vector<int64_t> rexclude;
            if (ask.exclude_groups)
                for (const int64_t q : back) rexclude.push_back(ask.exclude_groups[q]);
            std::vector<double> rd(static_cast<std::size_t>(nb * k));
            std::vector<int64_t> ri(static_cast<std::size_t>(nb * k));
            scan_search(Ask{rq, ask.queries, k, ask.exclude_groups ? rexclude.data() : nullptr, ask.one_per_group, ask.pass},
                        nb, threads, rd.data(), ri.data());
            for (int64_t i = 0; i < nb; ++i) {
                const int64_t q = back[static_cast<std::size_t>(i)];
                std::copy_n(&rd[static_cast<std::size_t>(i * k)], k, distances + q * k);
                std::copy_n(&ri[static_cast<std::size_t>(i * k)], k, ids + q * k);
            }
        });
}

}  // namespace hashindex
