#include "ivf_index.h"

#include <algorithm>
#include <mutex>
#include <limits>
#include <unordered_map>

#include "errors.h"
#include "dispatch.h"
#include "interrupt.h"
#include "ivf_sinks.h"
#include "parallel.h"
#include "scan.h"

namespace hashindex {

namespace {
// A search's other probes are cut between the threads by their lists' codes. Where they are this
// few (a single query at nprobe up to 17), the cut counts what the bounds leave of each list
// instead: a part handed to another thread costs more than the few blocks the bounds leave of a
// clustered query's lists (CHANGELOG.md, "Binary IVF").
constexpr std::size_t kFewProbes = 16;
constexpr int64_t kCodesPerPart = 1536;  // codes a part must compare to be worth a thread
constexpr int64_t kCodesPerProbe = 64;   // a (query, list)'s own cost, in codes
}  // namespace

IVFIndex::IVFIndex(int nbits, int nlist) : code_size_(nbits / 8), nlist_(nlist), centroids_(nbits > 0 ? nbits / 8 : 1) {
    check_nbits(nbits);
    HX_CHECK(nlist >= 1 && nlist <= (1 << 24), "nlist must be between 1 and 2^24, got " + std::to_string(nlist));
    lists_.reserve(static_cast<std::size_t>(nlist));
    for (int l = 0; l < nlist; ++l) lists_.emplace_back(std::vector<int>{nbits});
    bounds_.resize(static_cast<std::size_t>(nlist));
}

IVFIndex::IVFIndex(IVFIndex&& o) noexcept
    : LockedIds(std::move(o)), code_size_(o.code_size_), nlist_(o.nlist_), nprobe_(o.nprobe_), centroids_(std::move(o.centroids_)),
      trained_(o.trained_),
      lists_(std::move(o.lists_)), bounds_(std::move(o.bounds_)), ids_(std::move(o.ids_)),
      list_by_slot_(std::move(o.list_by_slot_)) {}

bool IVFIndex::trained() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    return trained_;
}

int IVFIndex::nprobe() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    return nprobe_;
}

void IVFIndex::set_nprobe(int nprobe) {
    HX_CHECK(nprobe >= 1 && nprobe <= (1 << 24), "nprobe must be between 1 and 2^24, got " + std::to_string(nprobe));
    std::unique_lock<std::shared_mutex> lk(mu_);
    nprobe_ = nprobe;
}

void IVFIndex::check_lists(const int64_t* lists, int64_t count, bool none) const {
    for (int64_t i = 0; i < count; ++i)
        if (lists[i] >= nlist_ || lists[i] < (none ? -1 : 0))
            throw std::invalid_argument("lists: expected list numbers in [" + std::string(none ? "-1" : "0") + ", nlist = " +
                                        std::to_string(nlist_) + "), got " + std::to_string(lists[i]));
}

void IVFIndex::check_trained() const {
    if (!trained_) throw std::invalid_argument("the index is not trained: call train(codes) or set its centroids first");
}

std::vector<std::vector<Hit>> IVFIndex::scan_lists(const uint8_t* queries, int64_t nq, int nprobe, int threads,
                                                   const IdFilter& filter, int64_t keep, int32_t threshold,
                                                   IvfStats& stats, const IvfProbe& how) const {
    HX_CHECK(nprobe >= 1, "nprobe must be >= 1, got " + std::to_string(nprobe));
    const std::vector<uint64_t> qwords = rows_to_words(queries, nq, code_size_);
    std::vector<int64_t> probes;
    std::vector<int32_t> pdist;  // each probe's centroid's distance to its query; none: no list is skipped
    HX_CHECK(how.max_codes >= 0, "max_codes must be >= 0, got " + std::to_string(how.max_codes));
    const int64_t* chosen = how.lists;
    const int words = words_for(code_size_);
    if (chosen) {
        check_lists(chosen, nq * nprobe, true);
        probes.assign(chosen, chosen + nq * nprobe);
        // A list named twice for a query (faiss's multi-index quantizer does it) is probed once, at
        // its first place: twice would report its codes twice.
        std::vector<std::pair<int64_t, int>> row;
        for (int64_t q = 0; q < nq; ++q) {
            row.clear();
            for (int r = 0; r < nprobe; ++r) row.emplace_back(probes[static_cast<std::size_t>(q * nprobe + r)], r);
            std::sort(row.begin(), row.end());
            for (std::size_t i = 1; i < row.size(); ++i)
                if (row[i].first >= 0 && row[i].first == row[i - 1].first)
                    probes[static_cast<std::size_t>(q * nprobe + row[i].second)] = -1;
        }
        if (trained_) pdist = probe_distances(qwords.data(), nq, probes, nprobe);
    } else {
        check_trained();
        nprobe = std::min(nprobe, nlist_);
        probes = nearest_lists(qwords.data(), nq, nprobe, threads, &pdist);
    }
    // A few lists (a single query's): their blocks' bounds and the lines that lead to their codes
    // and ids asked for at once, so that the lists' misses overlap instead of each list waiting on
    // its own in turn (CHANGELOG.md, "Binary IVF").
    if (!pdist.empty() && probes.size() <= kFewProbes)
        for (const int64_t l : probes)
            if (l >= 0) {
                const Items& list = lists_[static_cast<std::size_t>(l)];
                bounds_[static_cast<std::size_t>(l)].prefetch();
                __builtin_prefetch(list.store(0).blocks());
                __builtin_prefetch(list.ids().slot_ids());
            }
    // With max_codes, each query's lists in probe order take what is left of its budget: (query <<
    // 32 | list) -> codes to scan, and the lists past the budget are not probed.
    std::unordered_map<uint64_t, int64_t> budget;
    if (how.max_codes > 0)
        for (int64_t q = 0; q < nq; ++q) {
            int64_t left = how.max_codes;
            for (int r = 0; r < nprobe; ++r) {
                int64_t& l = probes[static_cast<std::size_t>(q * nprobe + r)];
                if (l < 0) continue;
                if (left <= 0) {
                    l = -1;
                    continue;
                }
                const int64_t take = std::min(left, lists_[static_cast<std::size_t>(l)].size());
                budget[static_cast<uint64_t>(q) << 32 | static_cast<uint64_t>(l)] = take;
                left -= take;
            }
        }
    auto codes_of = [&](int64_t q, int64_t l) {
        return budget.empty() ? lists_[static_cast<std::size_t>(l)].size()
                              : budget.at(static_cast<uint64_t>(q) << 32 | static_cast<uint64_t>(l));
    };
    std::vector<std::vector<uint8_t>> masks(static_cast<std::size_t>(filter.active() ? nlist_ : 0));
    if (filter.active())
        for (const int64_t l : probes)
            if (l >= 0 && masks[static_cast<std::size_t>(l)].empty() && lists_[static_cast<std::size_t>(l)].size() > 0)
                masks[static_cast<std::size_t>(l)] = slot_mask(filter, lists_[static_cast<std::size_t>(l)].ids(), lists_[static_cast<std::size_t>(l)].size(), nullptr);
    const Kernels& kern = active_kernels();
    const int nthreads = resolve_threads(threads);
    // Scans the (list << 32 | probe in round) keys [i0, i1), sorted by list, so that a list read once
    // serves every query there that probes it; a query's sink is made on its first list. A probe in
    // the round is query * nprobe + rank.
    std::mutex tally_mu;
    auto scan_keys = [&](const uint64_t* key, std::size_t i0, std::size_t i1, int64_t q0, std::vector<int32_t>& sink_of,
                         std::vector<CountingSink>& sinks, const std::vector<int32_t>& start) {
        std::vector<uint64_t> rq;
        std::vector<HitSink*> ptrs;
        std::vector<std::pair<int64_t, int64_t>> runs;
        ivf::BlockScan blocks;
        IvfStats tally;
        for (std::size_t i = i0; i < i1;) {
            const auto l = static_cast<std::size_t>(key[i] >> 32);
            const Items& list = lists_[l];
            rq.clear();
            ptrs.clear();
            int64_t scanned = 0;  // the codes of the list that some query of this pass scans
            for (; i < i1 && static_cast<std::size_t>(key[i] >> 32) == l; ++i) {
                const auto p = static_cast<std::size_t>(key[i] & 0xffffffffu);
                const std::size_t local = p / static_cast<std::size_t>(nprobe);
                const std::size_t q = static_cast<std::size_t>(q0) + local;
                const int64_t n = codes_of(static_cast<int64_t>(q), static_cast<int64_t>(l));
                // The bounds (ivf_bounds.h): the list skipped (before a sink is made for the query), or
                // all but a few of its blocks.
                const int64_t d = pdist.empty() ? 0 : pdist[static_cast<std::size_t>(q0) * static_cast<std::size_t>(nprobe) + p];
                const int32_t t = sink_of[local] >= 0 ? sinks[static_cast<std::size_t>(sink_of[local])].threshold
                                                      : start.empty() ? threshold : start[local];
                if (!pdist.empty() && bounds_[l].skips(d, t)) {
                    ++tally.lists_skipped;
                    tally.codes_skipped += n;
                    continue;
                }
                if (sink_of[local] < 0) {
                    sink_of[local] = static_cast<int32_t>(sinks.size());
                    sinks.emplace_back(t, keep);
                }
                CountingSink& s = sinks[static_cast<std::size_t>(sink_of[local])];
                s.reads(list.ids().slot_ids(), n, masks.empty() ? nullptr : masks[l].data());
                // A k-NN query's first list (its sink starts at nbits, where no block can be ruled out):
                // the blocks nearest the query by their bound first, the bound widening in doubling
                // steps, so that its k-th distance falls before the far blocks come up. Other lists:
                // the blocks within the query's k-th distance, alone if they are few.
                const int64_t nb = (n + kBlock - 1) / kBlock;
                const bool bounded = !pdist.empty() && (keep || s.threshold < nbits());  // (a radius of nbits rules nothing out)
                const bool widening = bounded && s.threshold >= nbits();
                constexpr int32_t kNoneScanned = ivf::BlockScan::kNoneScanned;
                if (bounded) blocks.start(bounds_[l], d, nb);
                if (widening || (bounded && blocks.runs(kNoneScanned, s.threshold, runs) * 2 < nb)) {
                    HitSink* one = &s;
                    int64_t compared = 0;
                    int32_t upto = 0;  // first the nearest blocks that hold k codes
                    while (widening && upto < nbits() && blocks.count_within(upto) * kBlock < keep + kBlock)
                        upto = 2 * upto + 1;
                    for (int32_t scanned = kNoneScanned; scanned < s.threshold; upto = s.threshold) {
                        const int32_t t = std::min(upto, s.threshold);
                        if (widening) blocks.runs(scanned, t, runs);
                        for (const auto& [b0, b1] : runs) list.store(0).prefetch(b0, b1);
                        for (const auto& [b0, b1] : runs) {
                            kern.scan(list.store(0).blocks(), b0, b1, words, &qwords[q * static_cast<std::size_t>(words)], 1, &one);
                            compared += std::min(n, b1 * kBlock) - b0 * kBlock;
                        }
                        if (!widening) break;
                        scanned = t;
                    }
                    tally.codes_compared += compared;
                    tally.codes_skipped += n - compared;
                    continue;
                }
                tally.codes_compared += n;
                scanned = std::max(scanned, s.n);
                rq.insert(rq.end(), &qwords[q * static_cast<std::size_t>(words)], &qwords[(q + 1) * static_cast<std::size_t>(words)]);
                ptrs.push_back(&s);
            }
            if (scanned == 0) continue;
            interruption_point();
            kern.scan(list.store(0).blocks(), 0, (scanned + kBlock - 1) / kBlock, words, rq.data(),
                      static_cast<int64_t>(ptrs.size()), ptrs.data());
        }
        std::lock_guard<std::mutex> g(tally_mu);
        stats.codes_compared += tally.codes_compared;
        stats.lists_skipped += tally.lists_skipped;
        stats.codes_skipped += tally.codes_skipped;
    };
    // Queries go in rounds, each in two stages. First every query's nearest list: it sets a query's
    // k-th distance close to its final one. Then the other lists, each query's sinks starting from
    // that distance, so that the lists' bounds skip most of them. In each stage a list is read once
    // for every query of the round that probes it, one part of the lists per thread: parts of
    // queries read each list once per thread, twice the memory traffic on 2 threads, and from
    // nprobe 16 on the scan waited on memory (CHANGELOG.md, "Binary IVF").
    // A round's sinks (at most one per query and thread, each counting distances 0 .. nbits) stay
    // within about 64 MiB whatever the code length.
    const int64_t round = std::min<int64_t>(
        {nq, std::clamp<int64_t>((int64_t{64} << 20) / (4 * (int64_t{nbits()} + 1) * (nthreads + 1)), 1, 1024),
         std::numeric_limits<uint32_t>::max() / nprobe});  // a key's probe takes 32 bits
    auto probe = [&](int64_t q, int r) { return probes[static_cast<std::size_t>(q * nprobe + r)]; };
    std::vector<std::vector<Hit>> out(static_cast<std::size_t>(nq));
    for (int64_t q0 = 0; q0 < nq; q0 += round) {
        const int64_t m = std::min(round, nq - q0);
        std::vector<int32_t> start(static_cast<std::size_t>(m), threshold);  // a query without a first list
        // The nearest lists: the round's queries split between the threads (cutting by lists, as
        // below, was slower at nprobe 1: CHANGELOG.md, "Binary IVF").
        const int64_t per = (m + nthreads - 1) / nthreads;
        parallel_for(nthreads, (m + per - 1) / per, [&](int64_t c) {
            const int64_t a = c * per, b = std::min(m, a + per);
            std::vector<uint64_t> key;
            for (int64_t q = a; q < b; ++q)
                if (probe(q0 + q, 0) >= 0) key.push_back(static_cast<uint64_t>(probe(q0 + q, 0)) << 32 | static_cast<uint64_t>(q * nprobe));
            std::sort(key.begin(), key.end());
            std::vector<int32_t> sink_of(static_cast<std::size_t>(m), -1);
            std::vector<CountingSink> sinks;
            sinks.reserve(static_cast<std::size_t>(b - a));  // the scan holds pointers into it
            scan_keys(key.data(), 0, key.size(), q0, sink_of, sinks, {});
            for (int64_t q = a; q < b; ++q)
                if (const int32_t at = sink_of[static_cast<std::size_t>(q)]; at >= 0) {
                    start[static_cast<std::size_t>(q)] = sinks[static_cast<std::size_t>(at)].threshold;
                    out[static_cast<std::size_t>(q0 + q)] = sinks[static_cast<std::size_t>(at)].result();
                }
        });
        if (nprobe == 1) continue;
        // The other lists, sorted by list (counting them out when the lists are few), then cut at
        // list boundaries into parts of about equal codes to scan, one per thread.
        std::vector<uint64_t> key;
        for (int64_t q = 0; q < m; ++q)
            for (int r = 1; r < nprobe; ++r)
                if (probe(q0 + q, r) >= 0) key.push_back(static_cast<uint64_t>(probe(q0 + q, r)) << 32 | static_cast<uint64_t>(q * nprobe + r));
        if (nlist_ <= 16 * static_cast<int64_t>(key.size())) {  // stable, so by list then query
            std::vector<std::size_t> at(static_cast<std::size_t>(nlist_) + 1, 0);
            for (const uint64_t k : key) ++at[(k >> 32) + 1];
            for (int l = 0; l < nlist_; ++l) at[static_cast<std::size_t>(l) + 1] += at[static_cast<std::size_t>(l)];
            std::vector<uint64_t> sorted(key.size());
            for (const uint64_t k : key) sorted[at[k >> 32]++] = k;
            key.swap(sorted);
        } else {
            std::sort(key.begin(), key.end());
        }
        const bool few = key.size() <= kFewProbes;
        std::vector<int64_t> work(key.size());
        int64_t total = 0;
        for (std::size_t i = 0; i < key.size(); ++i) {
            const auto l = static_cast<std::size_t>(key[i] >> 32);
            work[i] = lists_[l].size() + kCodesPerProbe;
            const auto p = static_cast<std::size_t>(key[i] & 0xffffffffu);
            if (const int32_t t = start[p / static_cast<std::size_t>(nprobe)]; few && !pdist.empty() && (keep || t < nbits())) {
                // The list's members taken as spread evenly between its nearest and farthest (its
                // blocks' bounds, read here at first, cost uniform codes what they saved).
                const int64_t d = pdist[static_cast<std::size_t>(q0) * static_cast<std::size_t>(nprobe) + p];
                const ivf::Bounds& b = bounds_[l];
                const int64_t spread = int64_t{b.far} - b.near + 1;
                work[i] = kCodesPerProbe + (b.skips(d, t) ? 0 : lists_[l].size() * std::min<int64_t>(2 * int64_t{t} + 1, spread) / spread);
            }
            total += work[i];
        }
        const int parts = few ? static_cast<int>(std::clamp<int64_t>(total / kCodesPerPart, 1, nthreads)) : nthreads;
        std::vector<std::size_t> cut{0};
        int64_t done = 0;
        for (std::size_t i = 0; i < key.size(); ++i) {
            if (i > 0 && key[i] >> 32 != key[i - 1] >> 32 && static_cast<int64_t>(cut.size()) < parts &&
                done * parts >= total * static_cast<int64_t>(cut.size()))
                cut.push_back(i);
            done += work[i];
        }
        cut.push_back(key.size());
        std::vector<std::vector<std::pair<int64_t, std::vector<Hit>>>> found(cut.size() - 1);
        parallel_for(parts, static_cast<int64_t>(found.size()), [&](int64_t part) {
            std::vector<int32_t> sink_of(static_cast<std::size_t>(m), -1);
            std::vector<CountingSink> sinks;
            sinks.reserve(static_cast<std::size_t>(m));  // the scan holds pointers into it
            scan_keys(key.data(), cut[static_cast<std::size_t>(part)], cut[static_cast<std::size_t>(part) + 1], q0, sink_of, sinks, start);
            for (int64_t q = 0; q < m; ++q)
                if (const int32_t at = sink_of[static_cast<std::size_t>(q)]; at >= 0)
                    found[static_cast<std::size_t>(part)].emplace_back(q0 + q, sinks[static_cast<std::size_t>(at)].result());
        });
        for (auto& part : found)
            for (auto& [q, hits] : part)
                merge_best_k(out[static_cast<std::size_t>(q)], hits, keep ? keep : std::numeric_limits<int64_t>::max());
    }
    stats.queries = nq;
    stats.lists_probed = std::count_if(probes.begin(), probes.end(), [](int64_t l) { return l >= 0; });
    return out;
}

void IVFIndex::search(const uint8_t* queries, int64_t nq, int64_t k, int nprobe, int threads, int32_t* distances,
                      int64_t* ids, IvfStats* stats, const IdFilter& filter, const IvfProbe& probe) const {
    HX_CHECK(k > 0, "k must be > 0, got " + std::to_string(k));
    std::shared_lock<std::shared_mutex> lk(mu_);
    IvfStats st;
    const auto found = scan_lists(queries, nq, nprobe, threads, filter, k, nbits(), st, probe);  // no distance exceeds nbits
    for (int64_t q = 0; q < nq; ++q) write_padded(found[static_cast<std::size_t>(q)], k, distances + q * k, ids + q * k);
    if (stats) *stats = st;
}

RangeResult IVFIndex::range_search(const uint8_t* queries, int64_t nq, int32_t radius, int nprobe, int threads,
                                   IvfStats* stats, const IdFilter& filter, const IvfProbe& probe) const {
    HX_CHECK(radius >= 0, "radius must be >= 0, got " + std::to_string(radius));
    std::shared_lock<std::shared_mutex> lk(mu_);
    IvfStats st;
    RangeResult r = ranges_of(scan_lists(queries, nq, nprobe, threads, filter, 0, radius, st, probe));
    if (stats) *stats = st;
    return r;
}

}  // namespace hashindex
