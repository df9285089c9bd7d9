// IVFIndex's coarse quantizer: its centroids, trained by k-majority (binary k-means: each centroid bit
// the majority of its members' bits), and each query's nearest lists and distances to them.
#include <cstring>
#include <mutex>
#include <numeric>
#include <random>

#include "dispatch.h"
#include "ivf_index.h"
#include "ivf_sinks.h"
#include "parallel.h"
#include "scan.h"

namespace hashindex {

std::vector<uint8_t> k_majority(const uint8_t* codes, int64_t n, int code_size, int nlist_, int iterations,
                                uint64_t seed) {
    const auto cs = static_cast<std::size_t>(code_size);
    const int nbits = code_size * 8;
    std::mt19937_64 rng(seed);
    std::vector<int64_t> order(static_cast<std::size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    for (int l = 0; l < nlist_; ++l)  // the first nlist of a seeded shuffle
        std::swap(order[static_cast<std::size_t>(l)], order[static_cast<std::size_t>(l + static_cast<int64_t>(rng() % static_cast<uint64_t>(n - l)))]);
    std::vector<uint8_t> cent(static_cast<std::size_t>(nlist_) * cs);
    for (int l = 0; l < nlist_; ++l) std::memcpy(&cent[l * cs], codes + order[static_cast<std::size_t>(l)] * static_cast<int64_t>(cs), cs);
    std::vector<int32_t> d(static_cast<std::size_t>(n));
    std::vector<int64_t> a(static_cast<std::size_t>(n));
    for (int it = 0; it < iterations; ++it) {
        CodeStore store(code_size);
        store.append(cent.data(), nlist_);
        knn_scan(store, nullptr, nullptr, codes, n, 1, 0, d.data(), a.data());
        // Majority per bit of each list's members, counted byte by byte in parallel over lists.
        std::vector<std::vector<int64_t>> members(static_cast<std::size_t>(nlist_));
        for (int64_t i = 0; i < n; ++i) members[static_cast<std::size_t>(a[static_cast<std::size_t>(i)])].push_back(i);
        bool changed = false;
        std::vector<uint8_t> next(cent);
        parallel_for(resolve_threads(0), nlist_, [&](int64_t l) {
            const auto& m = members[static_cast<std::size_t>(l)];
            uint8_t* c = &next[static_cast<std::size_t>(l) * cs];
            if (m.empty()) return;  // an empty list keeps its centroid (reseeded below)
            std::vector<int64_t> ones(static_cast<std::size_t>(nbits), 0);
            for (const int64_t i : m)
                for (std::size_t b = 0; b < cs; ++b)
                    for (int bit = 0; bit < 8; ++bit) ones[b * 8 + static_cast<std::size_t>(bit)] += codes[i * static_cast<int64_t>(cs) + static_cast<int64_t>(b)] >> bit & 1;
            const auto half = static_cast<int64_t>(m.size());
            for (std::size_t b = 0; b < cs; ++b)
                for (int bit = 0; bit < 8; ++bit) {
                    const int64_t twice = 2 * ones[b * 8 + static_cast<std::size_t>(bit)];
                    if (twice > half) c[b] = static_cast<uint8_t>(c[b] | (1u << bit));
                    else if (twice < half) c[b] = static_cast<uint8_t>(c[b] & ~(1u << bit));  // a tie keeps the bit
                }
        });
        for (int l = 0; l < nlist_; ++l)  // empty lists take a random training code
            if (members[static_cast<std::size_t>(l)].empty())
                std::memcpy(&next[l * cs], codes + static_cast<int64_t>(rng() % static_cast<uint64_t>(n)) * static_cast<int64_t>(cs), cs);
        changed = next != cent;
        cent.swap(next);
        if (!changed) break;
    }
    return cent;
}

std::vector<uint32_t> IVFIndex::to_centroid(int64_t l, const uint64_t* rows, int64_t n) const {
    const int words = words_for(code_size_);
    std::vector<uint64_t> centroid(static_cast<std::size_t>(words));
    centroids_.read_words(l, centroid.data());
    std::vector<uint32_t> idx(static_cast<std::size_t>(n)), dist(static_cast<std::size_t>(n));
    active_kernels().filter(rows, n, words, centroid.data(), nbits(), idx.data(), dist.data());  // every row passes
    return dist;
}

std::vector<int32_t> IVFIndex::probe_distances(const uint64_t* qwords, int64_t nq, const std::vector<int64_t>& probes,
                                               int nprobe) const {
    // A query's probed centroids gathered as rows, then one kernel call per query.
    const int words = words_for(code_size_);
    const auto np = static_cast<std::size_t>(nprobe);
    std::vector<int32_t> out(probes.size(), 0);
    std::vector<uint64_t> rows(np * static_cast<std::size_t>(words));
    std::vector<uint32_t> idx(np), dist(np), at(np);
    for (int64_t q = 0; q < nq; ++q) {
        int64_t n = 0;
        for (std::size_t r = 0; r < np; ++r) {
            const int64_t l = probes[static_cast<std::size_t>(q) * np + r];
            if (l < 0) continue;
            centroids_.read_words(l, &rows[static_cast<std::size_t>(n) * static_cast<std::size_t>(words)]);
            at[static_cast<std::size_t>(n++)] = static_cast<uint32_t>(r);
        }
        active_kernels().filter(rows.data(), n, words, qwords + q * words, nbits(), idx.data(), dist.data());  // all pass
        for (int64_t i = 0; i < n; ++i)
            out[static_cast<std::size_t>(q) * np + at[static_cast<std::size_t>(i)]] = static_cast<int32_t>(dist[static_cast<std::size_t>(i)]);
    }
    return out;
}

void IVFIndex::train(const uint8_t* codes, int64_t n, int iterations, uint64_t seed) {
    HX_CHECK(n >= nlist_, "codes: training needs at least nlist = " + std::to_string(nlist_) + " codes, got " +
                              std::to_string(n));
    HX_CHECK(iterations >= 1, "iterations must be >= 1, got " + std::to_string(iterations));
    std::unique_lock<std::shared_mutex> lk(mu_);
    HX_CHECK(ids_.size() == 0, "the index holds codes: train it while empty (reset() first)");
    const std::vector<uint8_t> cent = k_majority(codes, n, code_size_, nlist_, iterations, seed);
    centroids_.clear();
    centroids_.append(cent.data(), nlist_);
    trained_ = true;
}

std::vector<uint8_t> IVFIndex::centroids() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    check_trained();
    std::vector<uint8_t> out(static_cast<std::size_t>(nlist_) * code_size_);
    for (int l = 0; l < nlist_; ++l) centroids_.read_row(l, &out[static_cast<std::size_t>(l) * code_size_]);
    return out;
}

void IVFIndex::set_centroids(const uint8_t* rows) {
    std::unique_lock<std::shared_mutex> lk(mu_);
    HX_CHECK(ids_.size() == 0, "the index holds codes: set its centroids while empty (reset() first)");
    centroids_.clear();
    centroids_.append(rows, nlist_);
    trained_ = true;
}

std::vector<int64_t> IVFIndex::assign(const uint8_t* codes, int64_t n) const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    check_trained();
    return nearest_lists(rows_to_words(codes, n, code_size_).data(), n, 1, 0);
}

std::vector<int64_t> IVFIndex::nearest_lists(const uint64_t* qwords, int64_t nq, int nprobe, int threads,
                                             std::vector<int32_t>* distances) const {
    std::vector<int64_t> lists(static_cast<std::size_t>(nq * nprobe));
    if (distances) distances->assign(lists.size(), 0);
    auto keep = [&](int64_t q, auto best) {  // best(r): the r-th nearest list
        for (int r = 0; r < nprobe; ++r) {
            const auto at = static_cast<std::size_t>(q * nprobe + r);
            const Hit h = best(r);
            lists[at] = h.id;
            if (distances) (*distances)[at] = h.distance;
        }
    };
    // A query's nearest centroids lie far from it (a quarter of the bits and more): one query at a
    // time through the kernel (scan.h, scan_store).
    constexpr bool kGrouped = false;
    if (nprobe >= ivf::kCountedProbes)
        scan_store<CountingSink, kGrouped>(centroids_, qwords, nq, threads, [&](int64_t) {
            CountingSink sink(nbits(), nprobe);
            sink.n = nlist_;
            return sink;
        }, [&](int64_t q, CountingSink& sink) {
            const std::vector<Hit> best = sink.result();
            keep(q, [&](int r) { return best[static_cast<std::size_t>(r)]; });
        });
    else
        scan_store<ivf::NearestLists, kGrouped>(centroids_, qwords, nq, threads, [&](int64_t) { return ivf::NearestLists(nprobe, nlist_); },
                                      [&](int64_t q, ivf::NearestLists& sink) { keep(q, [&](int r) { return sink.hit(r); }); });
    return lists;
}

}  // namespace hashindex
