// Every kernel's algorithm, written once over a level's operations (kernels.h states what each must
// report). A level's translation unit defines, in an anonymous namespace, a struct Ops with the
// operations below and then includes this file there: every instantiation is compiled with that
// unit's ISA flags and none is shared between units (kernels.h says why). As faiss's hamming_impl.h
// sits over its per-ISA hamming_computer headers, but over a block of 8 codes at a time.
//
// struct Ops {
//     static constexpr int kGroup;   // queries sharing each load of a block (as the registers allow)
//     static constexpr int kHoist;   // query words kept in registers across blocks (0: none)
//     static constexpr int kFlush;   // words an accumulator takes before flush() (0: unlimited)
//     static constexpr int kChains;  // independent accumulators of the peak loop
//     using Word;   // one code word of the block's 8 lanes
//     using Query;  // one query word, in every lane
//     using Acc;    // 8 lanes' partial distances to one query
//     using Thr;    // a threshold, as within() takes it
//     using Total;  // 8 lanes' weighted sums (double)
//     static Word load(const uint64_t* p);           // word w of a block: 8 words, 64-byte aligned
//     static Query broadcast(uint64_t q);
//     static Acc zero();
//     static void add(Acc& acc, const Word& x, const Query& q);  // acc += popcount(x ^ q), lane by lane
//     static void flush(Acc& acc);                   // folds narrow counters; before any read of acc
//     static Thr threshold(int64_t t);
//     template <int G> static bool any_within(const Acc (&acc)[G], const Thr (&thr)[G]);
//     static uint32_t within(const Acc& acc, const Thr& thr);  // lanes with distance <= t
//     static void store(const Acc& acc, uint32_t* dist);       // the 8 lanes' distances
//     static Total total_zero();
//     static void weigh(Total& total, const Acc& acc, double weight);  // total += weight * acc
//     static uint32_t total_within(const Total& total, double bound);
//     static uint32_t row_distance(const uint64_t* a, const uint64_t* b, int words);
//     static int64_t filter_head(...);  // a level's own loop over a leading part of filter()'s rows
//     static Word peak_word(uint64_t seed);          // the peak loop's data
//     static Query peak_next(Query q);
//     static uint64_t peak_sum(const Acc& acc);
// };

// A compile-time count (standard headers stay out of these units: kernels.h).
template <int N>
struct Int {
    static constexpr int value = N;
};

// Distances of one block's 8 codes to G queries (q: G rows of `words` words), into acc.
template <int G, int WC>
HX_KERNEL_INLINE void block_acc(const uint64_t* blk, const uint64_t* q, int runtime_words, typename Ops::Acc (&acc)[G]) {
    const int words = WC ? WC : runtime_words;
    for (int w = 0; w < words; ++w) {
        const typename Ops::Word x = Ops::load(blk + w * kBlock);
#pragma GCC unroll 4
        for (int j = 0; j < G; ++j) Ops::add(acc[j], x, Ops::broadcast(q[j * words + w]));
        if (Ops::kFlush && (w + 1) % (Ops::kFlush ? Ops::kFlush : 1) == 0)
            for (int j = 0; j < G; ++j) Ops::flush(acc[j]);
    }
#pragma GCC unroll 4
    for (int j = 0; j < G; ++j) Ops::flush(acc[j]);
}

template <int G>
HX_KERNEL_INLINE void zero_all(typename Ops::Acc (&acc)[G]) {
#pragma GCC unroll 4
    for (int j = 0; j < G; ++j) acc[j] = Ops::zero();
}

// Cold path, out of line: it recomputes the block for each query of the group instead of keeping
// accumulators alive across the branch, because any call in the hot loop makes the compiler spill
// every vector register around it (all are caller-saved).
template <int G, int WC>
__attribute__((noinline)) void report_block(const uint64_t* blk, const uint64_t* q, int words, int64_t first_slot,
                                            HitSink* const* sinks, uint32_t which) {
    for (; which; which &= which - 1) {
        const int j = __builtin_ctz(which);
        typename Ops::Acc acc[1] = {Ops::zero()};
        block_acc<1, WC>(blk, q + j * words, words, acc);
        const uint32_t lanes = Ops::within(acc[0], Ops::threshold(sinks[j]->threshold));
        if (!lanes) continue;
        uint32_t dist[kBlock];
        Ops::store(acc[0], dist);
        sinks[j]->on_hits(sinks[j], first_slot, lanes, dist);
    }
}

template <int G, int WC>
void scan_group(const uint64_t* blocks, int64_t b0, int64_t b1, int runtime_words, const uint64_t* q,
                HitSink* const* sinks) {
    const int words = WC ? WC : runtime_words;
    typename Ops::Thr thr[G];
#pragma GCC unroll 4
    for (int j = 0; j < G; ++j) thr[j] = Ops::threshold(sinks[j]->threshold);
    // Query words stay in registers when they fit.
    constexpr bool kHoist = WC > 0 && G * WC <= Ops::kHoist && Ops::kFlush == 0;
    typename Ops::Query qreg[kHoist ? G * WC : 1];
    if (kHoist)
        for (int i = 0; i < G * WC; ++i) qreg[i] = Ops::broadcast(q[i]);
    for (int64_t b = b0; b < b1; ++b) {
        const uint64_t* blk = blocks + b * kBlock * words;
        typename Ops::Acc acc[G];
        zero_all<G>(acc);
        if constexpr (kHoist) {
            for (int w = 0; w < WC; ++w) {
                const typename Ops::Word x = Ops::load(blk + w * kBlock);
#pragma GCC unroll 4
                for (int j = 0; j < G; ++j) Ops::add(acc[j], x, qreg[j * WC + w]);
            }
        } else {
            block_acc<G, WC>(blk, q, words, acc);
        }
        if (__builtin_expect(Ops::template any_within<G>(acc, thr), 0)) {
            if constexpr (G == 1) {  // one query: its distances are at hand, nothing to recompute
                uint32_t dist[kBlock];
                Ops::store(acc[0], dist);
                sinks[0]->on_hits(sinks[0], b * kBlock, Ops::within(acc[0], thr[0]), dist);
                thr[0] = Ops::threshold(sinks[0]->threshold);
                continue;
            }
            // Only the queries of the group with a lane within: the others' blocks are not recomputed.
            uint32_t which = 0;
#pragma GCC unroll 4
            for (int j = 0; j < G; ++j) which |= static_cast<uint32_t>(Ops::within(acc[j], thr[j]) != 0) << j;
            report_block<G, WC>(blk, q, words, b * kBlock, sinks, which);
#pragma GCC unroll 4
            for (int j = 0; j < G; ++j) thr[j] = Ops::threshold(sinks[j]->threshold);
        }
    }
}

// Queries in groups of Ops::kGroup, then the rest one by one.
template <class Group>
inline void by_groups(int64_t nq, Group group) {
    int64_t q = 0;
    for (; q + Ops::kGroup <= nq; q += Ops::kGroup) group(q, Int<Ops::kGroup>{});
    for (; q < nq; ++q) group(q, Int<1>{});
}

template <int WC>
void scan_words(const uint64_t* blocks, int64_t b0, int64_t b1, int words, const uint64_t* queries, int64_t nq,
                HitSink* const* sinks) {
    by_groups(nq, [&](int64_t q, auto g) {
        scan_group<decltype(g)::value, WC>(blocks, b0, b1, words, queries + q * words, sinks + q);
    });
}

// The usual code lengths unrolled (64 to 1024 bits).
template <class F>
inline void by_words(int words, F f) {
    switch (words) {
        case 1: f(Int<1>{}); break;
        case 2: f(Int<2>{}); break;
        case 4: f(Int<4>{}); break;
        case 8: f(Int<8>{}); break;
        case 16: f(Int<16>{}); break;
        default: f(Int<0>{}); break;
    }
}

void scan_impl(const uint64_t* blocks, int64_t b0, int64_t b1, int words, const uint64_t* queries, int64_t nq,
               HitSink* const* sinks) {
    by_words(words, [&](auto wc) { scan_words<decltype(wc)::value>(blocks, b0, b1, words, queries, nq, sinks); });
}

int64_t filter_impl(const uint64_t* rows, int64_t n, int words, const uint64_t* query, int32_t threshold,
                    uint32_t* idx, uint32_t* dist) {
    int64_t found = 0;
    for (int64_t i = Ops::filter_head(rows, n, words, query, threshold, idx, dist, found); i < n; ++i) {
        const uint32_t d = Ops::row_distance(rows + i * words, query, words);
        if (static_cast<int64_t>(d) <= threshold) {
            idx[found] = static_cast<uint32_t>(i);
            dist[found++] = d;
        }
    }
    return found;
}

// One block's distances in every field to query j of a group, for a sink (cold).
inline void field_distances(const FieldBlocks* fields, int nfields, int64_t b, int64_t q, uint32_t* scratch) {
    for (int f = 0; f < nfields; ++f) {
        const FieldBlocks& fb = fields[f];
        typename Ops::Acc acc[1] = {Ops::zero()};
        block_acc<1, 0>(fb.blocks + b * kBlock * fb.words, fb.queries + q * fb.words, fb.words, acc);
        Ops::store(acc[0], scratch + f * kBlock);
    }
}

// G queries share each load of a field's block. With equal weights w (the common case: every field
// asked at weight 1) the fields' counts add up in the integer accumulators and meet floor(bound / w)
// (nudged up: reporting a slot too many is allowed, the sink re-checks exactly), as fast as one
// scan of the concatenated codes; other weights sum in double precision per lane.
// WC: every field's words per code when they are all the same (0: not unrolled), or -1 (the fields
// differ: each is unrolled on its own, choosing per block).
template <int G, bool kEqual, int WC>
void weighted_group(const FieldBlocks* fields, int nfields, int64_t b0, int64_t b1, int64_t q0,
                    WeightedSink* const* sinks, uint32_t* scratch) {
    typename Ops::Thr thr[G];
    const double w0 = fields[0].weight;
    auto refresh = [&] {
        for (int j = 0; j < G; ++j) {
            const double t = sinks[q0 + j]->bound / w0 * (1 + 1e-12) + 1e-9;
            thr[j] = Ops::threshold(t >= 9e18 ? int64_t{1} << 62 : (t < 0 ? -1 : static_cast<int64_t>(t)));
        }
    };
    if (kEqual) refresh();
    for (int64_t b = b0; b < b1; ++b) {
        typename Ops::Acc acc[G];
        typename Ops::Total total[kEqual ? 1 : G];
        if (kEqual) zero_all<G>(acc);
        else
            for (int j = 0; j < G; ++j) total[j] = Ops::total_zero();
        for (int f = 0; f < nfields; ++f) {
            const FieldBlocks& fb = fields[f];
            const uint64_t* blk = fb.blocks + b * kBlock * fb.words;
            const uint64_t* q = fb.queries + q0 * fb.words;
            if (!kEqual) zero_all<G>(acc);
            if constexpr (WC >= 0) block_acc<G, WC>(blk, q, fb.words, acc);
            else by_words(fb.words, [&](auto wc) { block_acc<G, decltype(wc)::value>(blk, q, fb.words, acc); });
            if (!kEqual)
                for (int j = 0; j < G; ++j) Ops::weigh(total[j], acc[j], fb.weight);
        }
        if (kEqual && __builtin_expect(!Ops::template any_within<G>(acc, thr), 1)) continue;
        for (int j = 0; j < G; ++j) {
            const uint32_t lanes = kEqual ? Ops::within(acc[j], thr[j]) : Ops::total_within(total[j], sinks[q0 + j]->bound);
            if (__builtin_expect(lanes == 0, 1)) continue;
            field_distances(fields, nfields, b, q0 + j, scratch);
            sinks[q0 + j]->on_hits(sinks[q0 + j], b * kBlock, lanes, scratch);
        }
        if (kEqual) refresh();
    }
}

void weighted_impl(const FieldBlocks* fields, int nfields, int64_t b0, int64_t b1, int64_t nq,
                   WeightedSink* const* sinks, uint32_t* scratch) {
    bool equal = true, same_words = true;
    for (int f = 1; f < nfields; ++f) {
        equal = equal && fields[f].weight == fields[0].weight;
        same_words = same_words && fields[f].words == fields[0].words;
    }
    auto run = [&](auto wc) {
        constexpr int kWords = decltype(wc)::value;
        by_groups(nq, [&](int64_t q, auto g) {
            if (equal) weighted_group<decltype(g)::value, true, kWords>(fields, nfields, b0, b1, q, sinks, scratch);
            else weighted_group<decltype(g)::value, false, kWords>(fields, nfields, b0, b1, q, sinks, scratch);
        });
    };
    if (same_words) by_words(fields[0].words, run);
    else run(Int<-1>{});
}

// The roofline: Ops::kChains independent XOR + popcount + add chains on register-resident data.
int64_t peak_impl(int64_t iters, uint64_t seed, uint64_t* sink) {
    typename Ops::Word x[Ops::kChains];
    typename Ops::Acc acc[Ops::kChains];
    for (int i = 0; i < Ops::kChains; ++i) {
        x[i] = Ops::peak_word(seed * static_cast<uint64_t>(2 * i + 1));
        acc[i] = Ops::zero();
    }
    typename Ops::Query q = Ops::broadcast(seed ^ 0x5555555555555555ULL);
    // In runs of kFlush rounds, as the scan folds its counters (a flush tested inside the round
    // made GCC keep the accumulators in memory: half the AVX2 rate).
    const int64_t run = Ops::kFlush ? Ops::kFlush : iters;
    for (int64_t it0 = 0; it0 < iters; it0 += run) {
        const int64_t end = iters - it0 < run ? iters : it0 + run;
        for (int64_t it = it0; it < end; ++it) {
            q = Ops::peak_next(q);  // a new query word each round: nothing to hoist out of the loop
#pragma GCC unroll 8
            for (int i = 0; i < Ops::kChains; ++i) Ops::add(acc[i], x[i], q);
        }
        for (int i = 0; i < Ops::kChains; ++i) Ops::flush(acc[i]);
    }
    uint64_t total = 0;
    for (int i = 0; i < Ops::kChains; ++i) total += Ops::peak_sum(acc[i]);
    *sink = total;
    return iters * Ops::kChains * kBlock * 8;  // bytes compared: 8 lanes of 8 bytes per chain per round
}

// A level's entry points (kernels.h), defined by its unit after its anonymous namespace closes.
#define HASHINDEX_DEFINE_KERNELS(level)                                                                        \
    void scan_##level(const uint64_t* blocks, int64_t b0, int64_t b1, int words, const uint64_t* queries,      \
                      int64_t nq, HitSink* const* sinks) {                                                     \
        scan_impl(blocks, b0, b1, words, queries, nq, sinks);                                                  \
    }                                                                                                          \
    int64_t filter_##level(const uint64_t* rows, int64_t n, int words, const uint64_t* query, int32_t thr,     \
                           uint32_t* idx, uint32_t* dist) {                                                    \
        return filter_impl(rows, n, words, query, thr, idx, dist);                                             \
    }                                                                                                          \
    void weighted_##level(const FieldBlocks* fields, int nfields, int64_t b0, int64_t b1, int64_t nq,          \
                          WeightedSink* const* sinks, uint32_t* scratch) {                                     \
        weighted_impl(fields, nfields, b0, b1, nq, sinks, scratch);                                            \
    }                                                                                                          \
    int64_t peak_##level(int64_t iters, uint64_t seed, uint64_t* sink) { return peak_impl(iters, seed, sink); }
