// Every kernel of every SIMD level this build and CPU have, against the scalar level and against a
// plain oracle, with no Python: scan, filter and the weighted multi-field scan on random codes of
// every length the index accepts up to 2048 bits (8-bit steps), item counts that are not a multiple
// of the block, ties, thresholds below zero and above every distance, and weights 0, equal, and
// fractional. Built and run by scripts/cross-test.sh (natively, or under qemu for another
// architecture). Prints "N passed, M failed"; exits 1 on any failure.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "dispatch.h"
#include "kernels.h"

using namespace hashindex;

namespace {

int passed = 0, failed = 0;

void check(bool ok, const std::string& what) {
    if (ok) {
        ++passed;
        return;
    }
    if (++failed <= 20) std::printf("FAILED: %s\n", what.c_str());
}

int popcount(uint64_t x) {
    int c = 0;
    for (; x; x &= x - 1) ++c;
    return c;
}

// n codes of `words` words in the kernels' blocked layout (kernels.h), padding lanes zero.
struct Store {
    int words;
    int64_t n;
    std::vector<uint64_t> rows;  // row-major
    std::vector<uint64_t> raw;
    uint64_t* blocks;
    Store(std::mt19937_64& rng, int nbits, int64_t n_, int dup_every) : words((nbits + 63) / 64), n(n_) {
        rows.resize(static_cast<std::size_t>(n * words));
        const uint64_t last_mask = nbits % 64 ? (uint64_t{1} << (nbits % 64)) - 1 : ~uint64_t{0};
        for (int64_t i = 0; i < n; ++i)
            for (int w = 0; w < words; ++w) {
                // Every dup_every-th code repeats the one before it: ties.
                const uint64_t v = (dup_every && i % dup_every == 0 && i) ? rows[(i - 1) * words + w] : rng();
                rows[i * words + w] = w + 1 == words ? v & last_mask : v;
            }
        const int64_t nblocks = (n + kBlock - 1) / kBlock;
        raw.assign(static_cast<std::size_t>(nblocks * kBlock * words + 8), 0);
        blocks = raw.data() + (8 - reinterpret_cast<uintptr_t>(raw.data()) / 8 % 8) % 8;  // 64-byte aligned
        for (int64_t i = 0; i < n; ++i)
            for (int w = 0; w < words; ++w) blocks[(i / kBlock) * kBlock * words + w * kBlock + i % kBlock] = rows[i * words + w];
    }
    int distance(int64_t i, const uint64_t* q) const {
        int d = 0;
        for (int w = 0; w < words; ++w) d += popcount(rows[i * words + w] ^ q[w]);
        return d;
    }
};

// Records every report; with `keep` > 0 it lowers its threshold to the keep-th smallest distance
// reported so far, as a top-k sink does.
struct Recorder : HitSink {
    std::vector<std::pair<int64_t, uint32_t>> hits;
    std::vector<uint32_t> best;
    std::size_t keep = 0;
    static void cb(HitSink* self, int64_t first, uint32_t lanes, const uint32_t* dist) {
        auto* r = static_cast<Recorder*>(self);
        for (int l = 0; l < kBlock; ++l)
            if (lanes >> l & 1) {
                r->hits.emplace_back(first + l, dist[l]);
                r->best.push_back(dist[l]);
            }
        if (r->keep && r->best.size() >= r->keep) {
            std::vector<uint32_t> b = r->best;
            std::nth_element(b.begin(), b.begin() + static_cast<std::ptrdiff_t>(r->keep - 1), b.end());
            r->threshold = static_cast<int32_t>(b[r->keep - 1]);
        }
    }
};

std::vector<std::vector<std::pair<int64_t, uint32_t>>> run_scan(const Kernels& k, const Store& s,
                                                                 const std::vector<uint64_t>& q, int64_t nq,
                                                                 int32_t threshold, std::size_t keep) {
    std::vector<Recorder> rec(static_cast<std::size_t>(nq));
    std::vector<HitSink*> ptrs;
    for (Recorder& r : rec) {
        r.threshold = threshold;
        r.on_hits = &Recorder::cb;
        r.keep = keep;
        ptrs.push_back(&r);
    }
    k.scan(s.blocks, 0, (s.n + kBlock - 1) / kBlock, s.words, q.data(), nq, ptrs.data());
    std::vector<std::vector<std::pair<int64_t, uint32_t>>> out;
    for (Recorder& r : rec) out.push_back(r.hits);
    return out;
}

struct WeightedRecorder : WeightedSink {
    int nfields = 0;
    std::vector<std::vector<uint32_t>> hits;  // slot, then each field's distance
    static void cb(WeightedSink* self, int64_t first, uint32_t lanes, const uint32_t* dist) {
        auto* r = static_cast<WeightedRecorder*>(self);
        for (int l = 0; l < kBlock; ++l)
            if (lanes >> l & 1) {
                std::vector<uint32_t> h{static_cast<uint32_t>(first + l)};
                for (int f = 0; f < r->nfields; ++f) h.push_back(dist[f * kBlock + l]);
                r->hits.push_back(h);
            }
    }
};

void test_level(const Kernels& k, const Kernels& ref, std::mt19937_64& rng) {
    const std::string level = k.name;
    for (int nbits = 8; nbits <= 2048; nbits += 8) {
        const int64_t n = 1 + static_cast<int64_t>(rng() % 41);  // mostly not a multiple of 8
        const Store s(rng, nbits, n, 5);
        const int64_t nq = 1 + static_cast<int64_t>(rng() % 6);  // every group size and a remainder
        std::vector<uint64_t> q(static_cast<std::size_t>(nq * s.words));
        for (int64_t j = 0; j < nq; ++j)
            for (int w = 0; w < s.words; ++w)
                // Some at distance 0, some at the largest distance (every byte's count at its maximum).
                q[j * s.words + w] = j % 3 == 2 ? s.rows[(j % n) * s.words + w]
                                     : j % 3 == 1 ? ~s.rows[(j % n) * s.words + w] : rng();
        const std::string at = level + " nbits=" + std::to_string(nbits) + " n=" + std::to_string(n);
        for (const int32_t thr : {-1, 0, nbits / 3, nbits / 2, nbits + 1}) {
            const auto got = run_scan(k, s, q, nq, thr, 0);
            bool oracle = true;
            for (int64_t j = 0; j < nq; ++j)
                for (const auto& h : got[static_cast<std::size_t>(j)])
                    oracle = oracle && h.first < (n + kBlock - 1) / kBlock * kBlock &&
                             (h.first >= n || (static_cast<int>(h.second) == s.distance(h.first, &q[j * s.words]) &&
                                               static_cast<int32_t>(h.second) <= thr));
            check(got == run_scan(ref, s, q, nq, thr, 0) && oracle, "scan " + at + " thr=" + std::to_string(thr));
        }
        check(run_scan(k, s, q, nq, nbits, 3) == run_scan(ref, s, q, nq, nbits, 3), "scan top-3 " + at);

        std::vector<uint32_t> idx(static_cast<std::size_t>(n)), dist(static_cast<std::size_t>(n));
        std::vector<uint32_t> ridx(static_cast<std::size_t>(n)), rdist(static_cast<std::size_t>(n));
        for (const int32_t thr : {-1, 0, nbits / 2, nbits}) {
            const int64_t found = k.filter(s.rows.data(), n, s.words, q.data(), thr, idx.data(), dist.data());
            const int64_t rfound = ref.filter(s.rows.data(), n, s.words, q.data(), thr, ridx.data(), rdist.data());
            int64_t expect = 0;
            for (int64_t i = 0; i < n; ++i) expect += s.distance(i, q.data()) <= thr;
            idx.resize(static_cast<std::size_t>(found)), dist.resize(static_cast<std::size_t>(found));
            ridx.resize(static_cast<std::size_t>(rfound)), rdist.resize(static_cast<std::size_t>(rfound));
            check(found == expect && idx == ridx && dist == rdist, "filter " + at + " thr=" + std::to_string(thr));
            idx.resize(static_cast<std::size_t>(n)), dist.resize(static_cast<std::size_t>(n));
            ridx.resize(static_cast<std::size_t>(n)), rdist.resize(static_cast<std::size_t>(n));
        }
    }

    // Weighted: fields of different lengths, equal / dyadic fractional / zero weights (exact in
    // double, so every level and the oracle agree to the bit).
    const std::vector<std::vector<double>> weight_sets = {{1}, {1, 1}, {2, 2, 2}, {0.5, 1.25}, {0, 1}, {0.75, 0, 3}};
    for (const auto& weights : weight_sets)
        for (int trial = 0; trial < 12; ++trial) {
            const int nf = static_cast<int>(weights.size());
            const int64_t n = 1 + static_cast<int64_t>(rng() % 70);
            const int64_t nq = 1 + static_cast<int64_t>(rng() % 6);
            std::vector<Store> stores;
            stores.reserve(weights.size());
            std::vector<std::vector<uint64_t>> qs;
            std::vector<FieldBlocks> fields;
            const int shared_bits = 8 * (1 + static_cast<int>(rng() % 256));
            for (int f = 0; f < nf; ++f) {  // every third trial, fields of one length (unrolled together)
                const int nbits = trial % 3 == 0 ? shared_bits : 8 * (1 + static_cast<int>(rng() % 256));
                stores.emplace_back(rng, nbits, n, 7);
            }
            for (int f = 0; f < nf; ++f) {
                std::vector<uint64_t> q(static_cast<std::size_t>(nq * stores[f].words));
                for (auto& v : q) v = rng();
                if (trial % 2) std::copy_n(stores[f].rows.begin(), stores[f].words, q.begin());  // a query at distance 0
                qs.push_back(q);
                fields.push_back(FieldBlocks{stores[f].blocks, stores[f].words, qs[f].data(), weights[f]});
            }
            double top = 0;
            for (int f = 0; f < nf; ++f) top += weights[f] * 64 * stores[f].words;
            for (const double bound : {-1.0, 0.0, top * 0.45, top * 0.5, static_cast<double>(INFINITY)}) {
                std::vector<WeightedRecorder> got(static_cast<std::size_t>(nq)), want(static_cast<std::size_t>(nq));
                std::vector<WeightedSink*> gp, wp;
                for (int64_t j = 0; j < nq; ++j) {
                    for (auto* r : {&got[j], &want[j]}) {
                        r->bound = bound;
                        r->on_hits = &WeightedRecorder::cb;
                        r->nfields = nf;
                    }
                    gp.push_back(&got[j]);
                    wp.push_back(&want[j]);
                }
                std::vector<uint32_t> scratch(static_cast<std::size_t>(nf * kBlock));
                const int64_t nblocks = (n + kBlock - 1) / kBlock;
                k.weighted(fields.data(), nf, 0, nblocks, nq, gp.data(), scratch.data());
                ref.weighted(fields.data(), nf, 0, nblocks, nq, wp.data(), scratch.data());
                bool same = true, oracle = true;
                for (int64_t j = 0; j < nq; ++j) {
                    same = same && got[j].hits == want[j].hits;
                    std::size_t reported = 0;
                    for (int64_t i = 0; i < n; ++i) {
                        double sum = 0;
                        for (int f = 0; f < nf; ++f) sum += weights[f] * stores[f].distance(i, &qs[f][j * stores[f].words]);
                        if (sum <= bound) ++reported;  // each such item must be among the reports
                    }
                    std::size_t valid = 0;
                    for (const auto& h : got[j].hits) {
                        if (h[0] >= n) continue;
                        double sum = 0;
                        for (int f = 0; f < nf; ++f) {
                            oracle = oracle && static_cast<int>(h[1 + f]) == stores[f].distance(h[0], &qs[f][j * stores[f].words]);
                            sum += weights[f] * h[1 + f];
                        }
                        valid += sum <= bound;
                    }
                    oracle = oracle && valid == reported;
                }
                check(same && oracle, std::string("weighted ") + level + " fields=" + std::to_string(nf) +
                                          " n=" + std::to_string(n) + " bound=" + std::to_string(bound));
            }
        }

    uint64_t sink = 0;
    const int64_t bytes = k.peak(1000, 12345, &sink);
    check(bytes > 0 && sink > 0, "peak " + level);
}

}  // namespace

int main() {
    std::mt19937_64 rng(20261206);
    const std::vector<std::string> levels = supported_level_names();
    set_level("scalar");
    const Kernels ref = active_kernels();
    std::string names;
    for (const std::string& name : levels) {
        set_level(name);
        test_level(active_kernels(), ref, rng);
        names += (names.empty() ? "" : ", ") + name;
    }
    std::printf("levels: %s\n%d passed, %d failed\n", names.c_str(), passed, failed);
    return failed ? 1 : 0;
}
