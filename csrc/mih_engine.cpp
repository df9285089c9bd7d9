#include "mih_engine.h"

#include <numeric>

namespace hashindex {
namespace {

// Unindexed items past this share of the index (or this many) trigger a rebuild.
constexpr int64_t kTailShare = 64;
constexpr int64_t kMinTail = 1024;
// Items per task when the tables' row copies are filled.
constexpr int64_t kRowsPerTask = 1 << 16;

// Counting sort (short keys) or a sort (long ones) of slots by key, each bucket in `order`'s order.
void fill_table(SubTable& sub, const std::vector<uint64_t>& keys, const std::vector<uint32_t>& order) {
    const std::size_t n = order.size();
    sub.slots.resize(n);
    if (sub.bits <= SubTable::kMaxDirectBits) {
        sub.offsets.assign((std::size_t{1} << sub.bits) + 1, 0);
        for (const uint64_t key : keys) ++sub.offsets[key + 1];
        for (std::size_t k = 0; k + 1 < sub.offsets.size(); ++k)
            if (sub.offsets[k + 1]) sub.keys.push_back(k);
        for (std::size_t k = 1; k < sub.offsets.size(); ++k) sub.offsets[k] += sub.offsets[k - 1];
        std::vector<uint32_t> fill(sub.offsets.begin(), sub.offsets.end() - 1);
        for (const uint32_t s : order) sub.slots[fill[keys[s]]++] = s;
        return;
    }
    sub.slots = order;
    std::stable_sort(sub.slots.begin(), sub.slots.end(), [&](uint32_t a, uint32_t b) { return keys[a] < keys[b]; });
    for (std::size_t i = 0; i < n; ++i) {
        if (i == 0 || keys[sub.slots[i]] != keys[sub.slots[i - 1]]) {
            sub.keys.push_back(keys[sub.slots[i]]);
            sub.offsets.push_back(static_cast<uint32_t>(i));
        }
    }
    sub.offsets.push_back(static_cast<uint32_t>(n));
}

}  // namespace

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

Stamps& thread_stamps() {
    thread_local Stamps stamps;
    return stamps;
}

int auto_m(int nbits, int64_t n) {
    const int bits = std::clamp(static_cast<int>(std::lround(std::log2(std::max<int64_t>(n, 2)))), 4, 16);
    return std::min(nbits, (nbits + bits - 1) / bits);
}

bool tables_stale(const Tables* tables, int64_t n) {
    if (!tables) return n > 0;
    return tables->unindexed(n) > std::max(kMinTail, n / kTailShare);
}

std::unique_ptr<Tables> build_tables(const Items& items, const TableSpec& spec) {
    const int64_t n = items.size();
    const int nf = items.nfields();
    const int threads = resolve_threads(0);
    auto t = std::make_unique<Tables>();
    t->built = n;
    for (int f = 0; f < nf; ++f) {
        const int nb = items.store(f).code_size() * 8;
        const int m = spec.m[static_cast<std::size_t>(f)] > 0 ? spec.m[static_cast<std::size_t>(f)] : auto_m(nb, n);
        for (int i = 0, lo = 0; i < m; ++i) {
            SubTable sub;
            sub.field = f;
            sub.bit_lo = lo;
            sub.bits = nb / m + (i < nb % m ? 1 : 0);
            lo += sub.bits;
            t->subs.push_back(std::move(sub));
        }
    }
    // The codes row by row, filled in parallel (1M items, two 1024-bit fields: 3.4 s on one thread).
    std::vector<std::vector<uint64_t>> rows(static_cast<std::size_t>(nf));
    for (int f = 0; f < nf; ++f) rows[static_cast<std::size_t>(f)].resize(static_cast<std::size_t>(n * items.store(f).words()));
    const int64_t row_tasks = (n + kRowsPerTask - 1) / kRowsPerTask;
    parallel_for(threads, row_tasks * nf, [&](int64_t task) {
        const auto f = static_cast<int>(task / row_tasks);
        const int words = items.store(f).words();
        const int64_t s0 = task % row_tasks * kRowsPerTask, s1 = std::min(n, s0 + kRowsPerTask);
        for (int64_t s = s0; s < s1; ++s) items.store(f).read_words(s, &rows[static_cast<std::size_t>(f)][static_cast<std::size_t>(s * words)]);
    });
    // Buckets list their items in id order, so that a bucket of exact ties can stop once k are held
    // (the weighted probe); with ids 0..n-1 that is slot order.
    std::vector<uint32_t> order(static_cast<std::size_t>(n));
    std::iota(order.begin(), order.end(), 0u);
    if (!items.ids().dense()) {
        const int64_t* sid = items.ids().slot_ids();
        std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) { return sid[a] < sid[b]; });
    }
    // Tables are independent: one task each.
    parallel_for(threads, static_cast<int64_t>(t->subs.size()), [&](int64_t i) {
        SubTable& sub = t->subs[static_cast<std::size_t>(i)];
        const std::vector<uint64_t>& r = rows[static_cast<std::size_t>(sub.field)];
        const auto words = static_cast<std::size_t>(items.store(sub.field).words());
        std::vector<uint64_t> keys(static_cast<std::size_t>(n));
        for (std::size_t s = 0; s < keys.size(); ++s) keys[s] = mih::extract_bits(&r[s * words], sub.bit_lo, sub.bits);
        fill_table(sub, keys, order);
        if (!spec.bucket_codes) return;
        sub.codes.resize(sub.slots.size() * words);
        for (std::size_t j = 0; j < sub.slots.size(); ++j)
            std::copy_n(&r[sub.slots[j] * words], words, &sub.codes[j * words]);
    });
    if (spec.rows_and_hashes) {
        t->hashes.resize(static_cast<std::size_t>(nf));
        parallel_for(threads, nf, [&](int64_t f) {
            const int words = items.store(static_cast<int>(f)).words();
            std::vector<uint64_t>& h = t->hashes[static_cast<std::size_t>(f)];
            h.resize(static_cast<std::size_t>(n));
            for (int64_t s = 0; s < n; ++s) h[static_cast<std::size_t>(s)] = code_hash(&rows[static_cast<std::size_t>(f)][static_cast<std::size_t>(s * words)], words);
            std::sort(h.begin(), h.end());
        });
        t->rows = std::move(rows);
    }
    t->dirty.assign(static_cast<std::size_t>(n), 0);
    return t;
}

std::vector<int64_t> Tables::unindexed_slots(int64_t n) const {
    std::vector<int64_t> slots;
    for (const int64_t s : dirty_slots)
        if (s < n) slots.push_back(s);
    for (int64_t s = built; s < n; ++s) slots.push_back(s);
    std::sort(slots.begin(), slots.end());
    return slots;
}

void Tables::moved(int64_t from, int64_t to) {
    // Slot `to` now holds another item; slot `from` is empty, and will hold the next item added.
    for (const int64_t s : {from, to}) {
        if (s >= built || dirty[static_cast<std::size_t>(s)]) continue;
        dirty[static_cast<std::size_t>(s)] = 1;
        dirty_slots.push_back(s);
    }
}

std::size_t Tables::memory_bytes() const {
    std::size_t total = dirty.capacity() + dirty_slots.capacity() * sizeof(int64_t);
    for (const SubTable& sub : subs)
        total += (sub.offsets.capacity() + sub.slots.capacity()) * sizeof(uint32_t) +
                 (sub.keys.capacity() + sub.codes.capacity()) * sizeof(uint64_t);
    for (const auto& r : rows) total += r.capacity() * sizeof(uint64_t);
    for (const auto& h : hashes) total += h.capacity() * sizeof(uint64_t);
    return total;
}

}  // namespace hashindex
