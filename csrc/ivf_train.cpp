// k-majority: binary k-means, each centroid bit the majority of its members' bits (IVFIndex::train).
#include <cstring>
#include <numeric>
#include <random>

#include "ivf_index.h"
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

}  // namespace hashindex
