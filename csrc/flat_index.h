// Exact exhaustive Hamming search over packed codes.
#pragma once
#include <cstdint>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "code_store.h"
#include "id_filter.h"
#include "id_map.h"
#include "items.h"
#include "results.h"

namespace hashindex {

struct RangeResult {
    std::vector<int64_t> lims;
    std::vector<int32_t> distances;
    std::vector<int64_t> ids;
};

// Exhaustive k-NN and range search over a store whose slot s holds id slot_id(slot_ids, s), skipping
// slots whose `pass` flag is 0 (pass may be null): FlatIndex's searches, and any gathered subset's.
void knn_scan(const CodeStore& store, const int64_t* slot_ids, const uint8_t* pass, const uint8_t* queries,
              int64_t nq, int64_t k, int threads, int32_t* distances, int64_t* ids);
RangeResult range_scan(const CodeStore& store, const int64_t* slot_ids, const uint8_t* pass, const uint8_t* queries,
                       int64_t nq, int32_t radius, int threads);

// Per-query sorted hits as one RangeResult.
RangeResult ranges_of(const std::vector<std::vector<Hit>>& per_query);

class FlatIndex : public IndexCore {
public:
    explicit FlatIndex(int nbits) : IndexCore({nbits}) {}
    FlatIndex(FlatIndex&& other) noexcept = default;

    int nbits() const { return code_size() * 8; }
    int code_size() const { return items_.store(0).code_size(); }

    // ids may be null: then ids continue after the largest id ever added.
    void add(const uint8_t* codes, int64_t n, const int64_t* ids);
    // filter: only allowed (or all but denied) ids are returned; k results whenever k pass.
    void search(const uint8_t* queries, int64_t nq, int64_t k, int threads, int32_t* distances,
                int64_t* ids, const IdFilter& filter = {}) const;
    RangeResult range_search(const uint8_t* queries, int64_t nq, int32_t radius, int threads,
                             const IdFilter& filter = {}) const;
    // All or nothing: throws MissingIdError before changing anything if an id is absent.
    void remove(const int64_t* ids, int64_t n);
    void get(const int64_t* ids, int64_t n, uint8_t* out) const;
    void reset();

    std::vector<uint8_t> to_bytes() const;
    static FlatIndex from_bytes(const uint8_t* data, std::size_t size, const std::string& source);
    // From a file image that `keep` holds alive (a mapped file): the codes and ids are used in
    // place (format 2; a format-1 file is copied). Without verify the checksum is not computed
    // and the ids are not scanned: opening reads the header only.
    static FlatIndex from_image(const uint8_t* data, std::size_t size, const std::string& source,
                                std::shared_ptr<const void> keep, bool verify);
    // Bytes held in memory (codes and id map; a mapped file's pages are not counted).
    std::size_t memory_bytes() const;
};

// A short allow list's items copied out, when scanning the copy pays (gather_pays); the caller's
// lock is then released. Empty when the search should scan everything with a per-slot mask.
std::optional<Items> gather(const Items& items, const IdFilter& filter, int64_t nq,
                            std::shared_lock<std::shared_mutex>& lk);

}  // namespace hashindex
