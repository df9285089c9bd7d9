// IVFIndex's file payload (index kind 4 of format 2): written, and read from bytes or in place from
// a mapped file.
#include <mutex>

#include "format.h"
#include "ivf_index.h"

namespace hashindex {

// Payload of kind IVF: nbits u32, nlist u32, flags u32 (bit 0: trained; bit 1: bounds follow the
// lists), nprobe u32, next_id i64; if trained, nlist centroid rows; then per list its count u64, its
// Items flags u32 (ids dense or not; never groups), a zero u32, and its Items body (format 2's arrays:
// blocked codes, ids), so that a mapped file's lists are scanned in place; then, with bit 1, per list
// the bounds of each block's distances to the centroid (ivf_bounds.h), near i32 and far i32 (files of
// earlier builds have none: they are computed on load).
std::vector<uint8_t> IVFIndex::to_bytes() const {
    std::shared_lock<std::shared_mutex> lk(mu_);
    PayloadWriter w;
    w.reserve(static_cast<std::size_t>(ids_.size() * (code_size_ + 8) + nlist_ * (code_size_ + 96) + 32));
    w.put<uint32_t>(static_cast<uint32_t>(nbits()));
    w.put<uint32_t>(static_cast<uint32_t>(nlist_));
    w.put<uint32_t>(trained_ ? 3u : 0u);
    w.put<uint32_t>(static_cast<uint32_t>(nprobe_));
    w.put<int64_t>(ids_.next_id());
    std::vector<uint8_t> row(static_cast<std::size_t>(code_size_));
    if (trained_)
        for (int l = 0; l < nlist_; ++l) {
            centroids_.read_row(l, row.data());
            w.put_bytes(row.data(), row.size());
        }
    for (const Items& list : lists_) {
        const uint32_t flags = list.flags() | Items::kNoGroups;
        w.put<uint64_t>(static_cast<uint64_t>(list.size()));
        w.put<uint32_t>(flags);
        w.put<uint32_t>(0);
        list.write_body(w, flags);
    }
    if (trained_)
        for (const Items& list : lists_) {
            const ivf::Bounds& b = bounds_[static_cast<std::size_t>(&list - lists_.data())];
            for (std::size_t i = 0; i < static_cast<std::size_t>((list.size() + kBlock - 1) / kBlock); ++i) {
                w.put<int32_t>(b.block_near[i]);
                w.put<int32_t>(b.block_far[i]);
            }
        }
    return w.finish(IndexKind::IVF);
}

IVFIndex IVFIndex::from_bytes(const uint8_t* data, std::size_t size, const std::string& source) {
    return from_image(data, size, source, nullptr, true);
}

IVFIndex IVFIndex::from_image(const uint8_t* data, std::size_t size, const std::string& source,
                              std::shared_ptr<const void> keep, bool verify) {
    PayloadReader r(data, size, IndexKind::IVF, source, verify || !keep);
    const uint32_t nbits = r.get_nbits();
    const uint32_t nlist = r.get<uint32_t>("nlist");
    if (nlist == 0 || nlist > (1u << 24)) r.fail("invalid nlist " + std::to_string(nlist));
    const uint32_t flags = r.get<uint32_t>("flags");
    if ((flags & ~3u) || (flags & 2u && !(flags & 1u))) r.fail("unknown flags " + std::to_string(flags));
    const uint32_t nprobe = r.get<uint32_t>("nprobe");
    if (nprobe == 0 || nprobe > (1u << 24)) r.fail("invalid nprobe " + std::to_string(nprobe));
    const int64_t next_id = r.get<int64_t>("next_id");
    const std::size_t cs = nbits / 8;
    if (nlist > r.remaining() / (16 + ((flags & 1u) ? cs : 0))) r.fail("nlist " + std::to_string(nlist) + " does not fit in the file");
    IVFIndex index(static_cast<int>(nbits), static_cast<int>(nlist));
    index.nprobe_ = static_cast<int>(nprobe);
    if (flags & 1u) index.set_centroids(r.take(nlist * cs, "centroids"));
    std::vector<int64_t> ids;
    for (uint32_t l = 0; l < nlist; ++l) {
        const uint64_t n = r.get<uint64_t>("list size");
        const uint32_t list_flags = r.get<uint32_t>("list flags");
        if (list_flags != (list_flags & Items::kDenseIds) + Items::kNoGroups) r.fail("unknown list flags " + std::to_string(list_flags));
        if (r.get<uint32_t>("reserved") != 0) r.fail("reserved bytes are not zero");
        if (n && !(flags & 1u)) r.fail("list " + std::to_string(l) + " holds codes but the index is not trained");
        Items& list = index.lists_[l];
        list.read_body(r, n, next_id, list_flags, keep, verify);
        for (int64_t s = 0; s < list.size(); ++s) ids.push_back(list.ids().id_of(s));
        index.list_by_slot_.insert(index.list_by_slot_.end(), n, static_cast<int32_t>(l));
    }
    // A bound that does not hold its block's codes would skip results: whenever the codes are read (a
    // copy, or verify) the bounds are computed from them and a file's must hold them; a mapped file
    // opened without verify is trusted, as its codes are.
    const bool computed = !(flags & 2u) || verify || !keep;
    if (computed) index.compute_bounds();
    for (uint32_t l = 0; l < nlist && (flags & 2u); ++l) {
        ivf::Bounds& have = index.bounds_[l];
        ivf::Bounds file;
        for (int64_t b = 0; b < (index.lists_[l].size() + kBlock - 1) / kBlock; ++b) {
            const int32_t near = r.get<int32_t>("bound"), far = r.get<int32_t>("bound");
            if (near < 0 || near > far || far > static_cast<int32_t>(nbits))
                r.fail("invalid bounds of list " + std::to_string(l));
            if (computed && (near > have.block_near[static_cast<std::size_t>(b)] || far < have.block_far[static_cast<std::size_t>(b)]))
                r.fail("the bounds of list " + std::to_string(l) + " do not hold its codes");
            file.widen(b * kBlock, near);
            file.widen(b * kBlock, far);
        }
        if (!computed) have = std::move(file);
    }
    r.expect_end();
    try {  // the same checks as add, over every list (an id in two lists is refused)
        index.ids_.check_new(ids.data(), static_cast<int64_t>(ids.size()));
        index.ids_.append(ids.data(), static_cast<int64_t>(ids.size()));
    } catch (const std::invalid_argument& e) {
        r.fail(std::string("invalid ids: ") + e.what());
    }
    if (!index.ids_.size() && next_id < 0) r.fail("invalid next_id " + std::to_string(next_id));
    if (!index.restore_next_id(next_id)) r.fail("next_id " + std::to_string(next_id) + " is below the largest id");
    return index;
}

}  // namespace hashindex
