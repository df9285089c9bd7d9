// Packed codes in the blocked, word-major layout the kernels scan (kernels.h).
#pragma once
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

#include "kernels.h"

namespace hashindex {

// Cache-line alignment keeps every 512-bit block load within one line.
template <class T>
struct CacheAligned {
    using value_type = T;
    CacheAligned() = default;
    template <class U>
    CacheAligned(const CacheAligned<U>&) {}
    T* allocate(std::size_t n) {
        return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64)));
    }
    void deallocate(T* p, std::size_t) { ::operator delete(p, std::align_val_t(64)); }
    template <class U>
    bool operator==(const CacheAligned<U>&) const { return true; }
    template <class U>
    bool operator!=(const CacheAligned<U>&) const { return false; }
};

inline int words_for(int code_size) { return (code_size + 7) / 8; }

// Packed byte rows -> zero-padded 64-bit words, the form kernels take queries in.
std::vector<uint64_t> rows_to_words(const uint8_t* rows, int64_t n, int code_size);

class CodeStore {
public:
    explicit CodeStore(int code_size) : code_size_(code_size), words_(words_for(code_size)) {}

    int code_size() const { return code_size_; }
    int words() const { return words_; }
    int64_t size() const { return n_; }
    int64_t nblocks() const { return (n_ + kBlock - 1) / kBlock; }
    const uint64_t* blocks() const { return view_ ? view_ : data_.data(); }
    // Asks for blocks [b0, b1) ahead of a scan that reads them. An IVF list's blocks within a bound
    // are a few runs in a list no other query read lately: asked for at once they come in parallel,
    // where the scan alone waited on each run's first lines (CHANGELOG.md, "Binary IVF").
    void prefetch(int64_t b0, int64_t b1) const {
        prefetch_bytes(blocks() + b0 * kBlock * words_, static_cast<std::size_t>((b1 - b0) * kBlock * words_) * 8);
    }
    // Bytes of the blocked layout for n codes (what files of format 2 store).
    int64_t layout_bytes(int64_t n) const { return (n + kBlock - 1) / kBlock * kBlock * words_ * 8; }

    // Uses n codes already in the blocked layout, in memory that `keep` holds alive (a mapped
    // file): no copy, and pages are read as searches touch them. The first change copies them
    // into memory of the store's own (copy on write). `blocks` must be 64-byte aligned.
    void adopt(const uint64_t* blocks, int64_t n, std::shared_ptr<const void> keep);
    // Replaces the content with a copy of n codes in the blocked layout.
    void assign_blocks(const void* blocks, int64_t n);
    bool mapped() const { return view_ != nullptr; }

    void append(const uint8_t* rows, int64_t n);
    // Appends copies of another store's codes (same code size), slot by slot.
    void append_slots(const CodeStore& from, const int64_t* slots, int64_t n);
    void read_row(int64_t slot, uint8_t* out) const;
    void read_words(int64_t slot, uint64_t* out) const;
    // Copies slot `from` over slot `to` (removal by moving the last code in).
    void move(int64_t from, int64_t to);
    // Drops codes from slot n on; their lanes are zeroed.
    void truncate(int64_t n);
    void clear() {
        view_ = nullptr;
        keep_.reset();
        data_.clear();
        n_ = 0;
    }
    std::size_t memory_bytes() const { return data_.capacity() * sizeof(uint64_t); }

private:
    void own();  // copy on write: a mapped store becomes an owned one before its first change
    uint64_t& word(int64_t slot, int w) {
        return data_[(slot / kBlock) * kBlock * words_ + w * kBlock + slot % kBlock];
    }
    uint64_t word(int64_t slot, int w) const {
        return blocks()[(slot / kBlock) * kBlock * words_ + w * kBlock + slot % kBlock];
    }

    int code_size_, words_;
    int64_t n_ = 0;
    std::vector<uint64_t, CacheAligned<uint64_t>> data_;
    const uint64_t* view_ = nullptr;
    std::shared_ptr<const void> keep_;
};

}  // namespace hashindex
