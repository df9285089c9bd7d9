#include "code_store.h"

#include <cstring>

namespace hashindex {

std::vector<uint64_t> rows_to_words(const uint8_t* rows, int64_t n, int code_size) {
    const int words = words_for(code_size);
    std::vector<uint64_t> out(static_cast<std::size_t>(n) * words, 0);
    for (int64_t i = 0; i < n; ++i)
        std::memcpy(out.data() + i * words, rows + i * code_size, static_cast<std::size_t>(code_size));
    return out;
}

void CodeStore::adopt(const uint64_t* blocks, int64_t n, std::shared_ptr<const void> keep) {
    if (reinterpret_cast<uintptr_t>(blocks) % 64 != 0) {  // the kernels' aligned loads need 64
        assign_blocks(blocks, n);
        return;
    }
    data_.clear();
    data_.shrink_to_fit();
    view_ = blocks;
    keep_ = std::move(keep);
    n_ = n;
}

void CodeStore::assign_blocks(const void* blocks, int64_t n) {
    std::vector<uint64_t, CacheAligned<uint64_t>> copy(static_cast<std::size_t>(layout_bytes(n) / 8));
    if (!copy.empty()) std::memcpy(copy.data(), blocks, copy.size() * 8);
    data_.swap(copy);
    view_ = nullptr;
    keep_.reset();
    n_ = n;
}

void CodeStore::own() {
    if (!view_) return;
    const uint64_t* view = view_;
    std::vector<uint64_t, CacheAligned<uint64_t>> copy(static_cast<std::size_t>(layout_bytes(n_) / 8));
    if (!copy.empty()) std::memcpy(copy.data(), view, copy.size() * 8);
    data_.swap(copy);
    view_ = nullptr;
    keep_.reset();
}

void CodeStore::append(const uint8_t* rows, int64_t n) {
    own();
    const int64_t total = n_ + n;
    data_.resize(static_cast<std::size_t>((total + kBlock - 1) / kBlock) * kBlock * words_, 0);
    uint64_t tmp[64];
    for (int64_t i = 0; i < n; ++i) {
        const uint8_t* row = rows + i * code_size_;
        for (int w0 = 0; w0 < words_; w0 += 64) {
            const int nw = words_ - w0 < 64 ? words_ - w0 : 64;
            const int bytes_left = code_size_ - w0 * 8;
            const int nbytes = bytes_left < nw * 8 ? bytes_left : nw * 8;
            std::memset(tmp, 0, sizeof(tmp));
            std::memcpy(tmp, row + w0 * 8, static_cast<std::size_t>(nbytes));
            for (int w = 0; w < nw; ++w) word(n_ + i, w0 + w) = tmp[w];
        }
    }
    n_ = total;
}

void CodeStore::append_slots(const CodeStore& from, const int64_t* slots, int64_t n) {
    own();
    const int64_t total = n_ + n;
    data_.resize(static_cast<std::size_t>((total + kBlock - 1) / kBlock) * kBlock * words_, 0);
    const uint64_t* src = from.blocks();
    uint64_t* dst = data_.data();
    for (int64_t i = 0; i < n; ++i) {
        const int64_t s = slots[i], d = n_ + i;
        const uint64_t* a = src + (s / kBlock) * kBlock * words_ + s % kBlock;
        uint64_t* b = dst + (d / kBlock) * kBlock * words_ + d % kBlock;
        for (int w = 0; w < words_; ++w) b[w * kBlock] = a[w * kBlock];
    }
    n_ = total;
}

void CodeStore::read_words(int64_t slot, uint64_t* out) const {
    for (int w = 0; w < words_; ++w) out[w] = word(slot, w);
}

void CodeStore::read_row(int64_t slot, uint8_t* out) const {
    for (int w = 0; w < words_; ++w) {
        const uint64_t v = word(slot, w);
        const int nbytes = code_size_ - w * 8 < 8 ? code_size_ - w * 8 : 8;
        std::memcpy(out + w * 8, &v, static_cast<std::size_t>(nbytes));
    }
}

void CodeStore::move(int64_t from, int64_t to) {
    own();
    for (int w = 0; w < words_; ++w) word(to, w) = word(from, w);
}

void CodeStore::truncate(int64_t n) {
    if (n >= n_) return;
    own();
    for (int64_t s = n; s < nblocks() * kBlock && s < (n + kBlock - 1) / kBlock * kBlock; ++s)
        for (int w = 0; w < words_; ++w) word(s, w) = 0;
    n_ = n;
    data_.resize(static_cast<std::size_t>(nblocks()) * kBlock * words_);
}

}  // namespace hashindex
