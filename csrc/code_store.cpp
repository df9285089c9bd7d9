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

void CodeStore::append(const uint8_t* rows, int64_t n) {
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
    for (int w = 0; w < words_; ++w) word(to, w) = word(from, w);
}

void CodeStore::truncate(int64_t n) {
    if (n >= n_) return;
    for (int64_t s = n; s < nblocks() * kBlock && s < (n + kBlock - 1) / kBlock * kBlock; ++s)
        for (int w = 0; w < words_; ++w) word(s, w) = 0;
    n_ = n;
    data_.resize(static_cast<std::size_t>(nblocks()) * kBlock * words_);
}

}  // namespace hashindex
