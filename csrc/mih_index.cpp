#include "mih_index.h"

#include <cstring>

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

}  // namespace

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
            for (int64_t s = 0; s < n; ++s) keys[static_cast<std::size_t>(s)] = mih::extract_bits(&words[static_cast<std::size_t>(s) * words_], T.bit_lo, T.bits);
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
    calibrate();
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
        ids.push_back(main_ids_.id_of(s));
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

int64_t MIHIndex::next_id() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    return next_default_id();
}

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

// Payload of kind MIH, format 2: nbits u32, the requested m u32 (0 = automatic), flags u32 (bit 0:
// the ids are 0..n-1 and not stored), 4 zero bytes, ntotal u64, next_id i64, ntotal code rows, then
// ntotal int64 ids unless bit 0. Format 1: CodesPayload (format.h) with m as its parameter. Tables
// are rebuilt on load.
std::vector<uint8_t> MIHIndex::to_bytes() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    std::vector<uint8_t> rows;
    std::vector<int64_t> ids;
    gather_live(&rows, ids);
    const int64_t n = static_cast<int64_t>(ids.size());
    bool dense = true;
    for (int64_t i = 0; i < n && dense; ++i) dense = ids[static_cast<std::size_t>(i)] == i;
    PayloadWriter w;
    w.reserve(rows.size() + (dense ? 0 : ids.size() * 8) + 32);
    w.put<uint32_t>(static_cast<uint32_t>(nbits_));
    w.put<uint32_t>(static_cast<uint32_t>(m_requested_));
    w.put<uint32_t>(dense ? 1u : 0u);
    w.put<uint32_t>(0);
    w.put<uint64_t>(static_cast<uint64_t>(n));
    w.put<int64_t>(next_default_id());
    if (!rows.empty()) w.put_bytes(rows.data(), rows.size());
    if (!dense && n) w.put_bytes(ids.data(), static_cast<std::size_t>(n) * sizeof(int64_t));
    return w.finish(IndexKind::MIH);
}

MIHIndex MIHIndex::from_bytes(const uint8_t* data, std::size_t size, const std::string& source) {
    PayloadReader r(data, size, IndexKind::MIH, source);
    CodesPayload p;
    if (r.version() == 1) {
        p = read_codes_payload(r);
    } else {
        p.nbits = r.get<uint32_t>("nbits");
        if (p.nbits == 0 || p.nbits % 8 != 0 || p.nbits > (1u << 24)) r.fail("invalid nbits " + std::to_string(p.nbits));
        p.param = r.get<uint32_t>("m");
        const uint32_t flags = r.get<uint32_t>("flags");
        if (flags & ~1u) r.fail("unknown flags " + std::to_string(flags));
        if (r.get<uint32_t>("reserved") != 0) r.fail("reserved bytes are not zero");
        p.n = r.get<uint64_t>("ntotal");
        p.next_id = r.get<int64_t>("next_id");
        const bool dense = flags & 1u;
        const std::size_t row = p.nbits / 8;
        if (p.n > r.remaining() / (row + (dense ? 0 : 8))) r.fail("ntotal " + std::to_string(p.n) + " does not fit in the file");
        p.codes = r.take(static_cast<std::size_t>(p.n) * row, "codes");
        const uint8_t* id_bytes = dense ? nullptr : r.take(static_cast<std::size_t>(p.n) * 8, "ids");
        r.expect_end();
        p.ids.resize(static_cast<std::size_t>(p.n));
        if (dense)
            for (uint64_t i = 0; i < p.n; ++i) p.ids[static_cast<std::size_t>(i)] = static_cast<int64_t>(i);
        else if (p.n)
            std::memcpy(p.ids.data(), id_bytes, static_cast<std::size_t>(p.n) * 8);
    }
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
