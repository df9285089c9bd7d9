// Packed codes in the blocked, word-major layout the kernels scan (kernels.h).
#pragma once
#include <cstdint>
#include <cstdlib>
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
    const uint64_t* blocks() const { return data_.data(); }

    void append(const uint8_t* rows, int64_t n);
    void read_row(int64_t slot, uint8_t* out) const;
    void read_words(int64_t slot, uint64_t* out) const;
    // Copies slot `from` over slot `to` (removal by moving the last code in).
    void move(int64_t from, int64_t to);
    // Drops codes from slot n on; their lanes are zeroed.
    void truncate(int64_t n);
    void clear() { data_.clear(); n_ = 0; }
    std::size_t memory_bytes() const { return data_.capacity() * sizeof(uint64_t); }

private:
    uint64_t& word(int64_t slot, int w) {
        return data_[(slot / kBlock) * kBlock * words_ + w * kBlock + slot % kBlock];
    }
    uint64_t word(int64_t slot, int w) const {
        return data_[(slot / kBlock) * kBlock * words_ + w * kBlock + slot % kBlock];
    }

    int code_size_, words_;
    int64_t n_ = 0;
    std::vector<uint64_t, CacheAligned<uint64_t>> data_;
};

}  // namespace hashindex
