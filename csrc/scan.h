// Drives the active kernel over a CodeStore for a batch of queries, on the
// worker pool. Shared by every exhaustive search (k-NN, range).
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

#include "code_store.h"
#include "dispatch.h"
#include "interrupt.h"
#include "parallel.h"

namespace hashindex {

// Database bytes scanned per pass over a query batch. A chunk stays in L2
// (1 MiB per core on Zen 4, 2 MiB on Sapphire Rapids) while every query of
// the batch streams over it, so memory is read once per batch, not per query.
constexpr int64_t kChunkBytes = 256 * 1024;
// Queries that share one pass over the database within a task.
constexpr int64_t kMaxQueryBatch = 256;
// A search that compares fewer code bytes than this (all queries together) runs on one thread:
// below it a second thread's hand-off costs what it saves (same table).
constexpr int64_t kMinBytesForThreads = 24 * 1024;
// A query is split across threads only when each part scans at least this
// many bytes: below it, handing work to another thread costs more than it saves
// (benchmarks/RESULTS.md, "Measurements behind the code").
constexpr int64_t kMinBytesPerTask = 1 << 20;

// 0 means every available thread; more than 4 per available thread is capped
// (oversubscribing never speeds a scan, and each worker is a real OS thread).
inline int resolve_threads(int threads) {
    const int available = available_threads();
    return threads <= 0 ? available : std::min(threads, 4 * available);
}

// The one scan driver: how nq queries over nblocks blocks of block_bytes each are cut into tasks
// on the worker pool. make_sink(q) builds query q's sink; run(b0, b1, q0, nqs, sinks) scans blocks
// [b0, b1) for queries q0 .. q0 + nqs - 1 into sinks[0 .. nqs); finish(q, sink) takes a query's
// sink once every block has been scanned. Sink must have absorb(Sink&) to merge the partial results
// of database ranges scanned on different threads. FlatIndex, MIH's scans and MultiFieldIndex's
// weighted scan all run through it.
template <class Sink, class MakeSink, class Run, class Finish>
void drive_scan(int64_t nblocks, int64_t block_bytes, int64_t nq, int threads, MakeSink make_sink, Run run,
                Finish finish) {
    if (nq <= 0) return;
    threads = resolve_threads(threads);
    const int64_t compared = nblocks * block_bytes * nq;
    if (compared < kMinBytesForThreads) threads = 1;
    const int64_t max_parts = nblocks * block_bytes / kMinBytesPerTask;
    if (threads == 1 || nq >= 2 * threads || max_parts < 2) {
        // Split the queries: each task takes a batch and walks the database in L2-sized chunks. One
        // task per thread: each task reads the whole database, and two per thread read it twice as
        // often for no better balance (CHANGELOG.md, "One index skeleton, one multi-index hashing
        // engine").
        const int64_t chunk = std::max<int64_t>(1, kChunkBytes / block_bytes);
        const int64_t batch = std::min(kMaxQueryBatch, (nq + threads - 1) / threads);
        const int64_t ntasks = (nq + batch - 1) / batch;
        parallel_for(threads, ntasks, [&](int64_t t) {
            const int64_t q0 = t * batch, q1 = std::min(nq, q0 + batch);
            std::vector<Sink> sinks;
            sinks.reserve(static_cast<std::size_t>(q1 - q0));
            for (int64_t q = q0; q < q1; ++q) sinks.push_back(make_sink(q));
            for (int64_t c = 0; c < nblocks; c += chunk) {
                interruption_point();
                run(c, std::min(nblocks, c + chunk), q0, q1 - q0, sinks.data());
            }
            for (int64_t q = q0; q < q1; ++q) finish(q, sinks[static_cast<std::size_t>(q - q0)]);
        });
        return;
    }

    // Few queries: split the database so that even one query uses every thread, one contiguous part
    // per thread (four parts per thread, each with its own sinks to merge, were slower: same
    // section).
    const int64_t ntasks = std::min<int64_t>(threads, max_parts);
    const int64_t per_task = (nblocks + ntasks - 1) / ntasks;
    std::vector<std::vector<Sink>> sinks(static_cast<std::size_t>(ntasks));
    for (auto& row : sinks) {
        row.reserve(static_cast<std::size_t>(nq));
        for (int64_t q = 0; q < nq; ++q) row.push_back(make_sink(q));
    }
    parallel_for(threads, ntasks, [&](int64_t t) {
        const int64_t b0 = t * per_task, b1 = std::min(nblocks, b0 + per_task);
        // In chunks only so that an interrupt is seen within one chunk's scan.
        const int64_t step = std::max<int64_t>(1, 16 * kChunkBytes / block_bytes);
        for (int64_t c = b0; c < b1; c += step) {
            interruption_point();
            run(c, std::min(b1, c + step), 0, nq, sinks[static_cast<std::size_t>(t)].data());
        }
    });
    for (int64_t q = 0; q < nq; ++q) {
        Sink& into = sinks[0][static_cast<std::size_t>(q)];
        for (int64_t t = 1; t < ntasks; ++t) into.absorb(sinks[static_cast<std::size_t>(t)][static_cast<std::size_t>(q)]);
        finish(q, into);
    }
}

// A store's scan through the active kernel (queries: nq rows of the store's words). kGrouped: the
// kernel takes the queries of a task together, sharing each block's loads; otherwise one at a time,
// for sinks whose thresholds stay far from most codes long into the scan (IVF's coarse search), where
// a group's blocks with a hit for some query were most blocks (CHANGELOG.md, "Binary IVF").
template <class Sink, bool kGrouped = true, class MakeSink, class Finish>
void scan_store(const CodeStore& store, const uint64_t* query_words, int64_t nq, int threads, MakeSink make_sink,
                Finish finish) {
    const Kernels& kern = active_kernels();
    const int words = store.words();
    drive_scan<Sink>(
        store.nblocks(), int64_t{kBlock} * 8 * words, nq, threads, make_sink,
        [&](int64_t b0, int64_t b1, int64_t q0, int64_t nqs, Sink* sinks) {
            if constexpr (kGrouped) {
                std::vector<HitSink*> ptrs(static_cast<std::size_t>(nqs));
                for (int64_t i = 0; i < nqs; ++i) ptrs[static_cast<std::size_t>(i)] = &sinks[i];
                kern.scan(store.blocks(), b0, b1, words, query_words + q0 * words, nqs, ptrs.data());
            } else {
                for (int64_t i = 0; i < nqs; ++i) {
                    HitSink* one = &sinks[i];
                    kern.scan(store.blocks(), b0, b1, words, query_words + (q0 + i) * words, 1, &one);
                }
            }
        },
        finish);
}

}  // namespace hashindex
