// libFuzzer target for the index file loaders (format.cpp and every kind's from_bytes).
//
// The input is one selector byte and a payload; the target wraps the payload in a valid header and
// CRC-32 (fuzzing through a checksum would test nothing but the checksum) of the kind (1 + byte % 4)
// and format version ((byte / 4) % 2: 1 or 2) it selects and hands the image to every loader, then
// opens it again in place (from_image over a 64-byte aligned copy, as a mapped file is, unverified).
// Each must either build an index or throw a std::exception (FormatError for bad files); after a
// successful load, a search and a save round trip must work. ASan and UBSan turn
// any out-of-bounds read, overflow or leak into a crash that libFuzzer reports.
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <vector>

#include "flat_index.h"
#include "format.h"
#include "ivf_index.h"
#include "mih_index.h"
#include "multi_field_index.h"

using namespace hashindex;

namespace {

template <class Index, class Probe>
void load_and_probe(const std::vector<uint8_t>& image, Probe probe) {
    try {
        Index index = Index::from_bytes(image.data(), image.size(), "fuzz");
        probe(index);
        const std::vector<uint8_t> again = index.to_bytes();
        Index::from_bytes(again.data(), again.size(), "fuzz-again");
    } catch (const std::exception&) {
        // rejected with an error: what a damaged file must do
    }
}

// The in-place path trusts what it does not verify (ids, groups) but must still never read out of
// bounds or crash: search it, then change it (copy on write) and save it.
template <class Index, class Probe>
void map_and_probe(const std::vector<uint8_t>& image, Probe probe) {
    auto* raw = static_cast<uint8_t*>(::operator new(image.size() + 1, std::align_val_t(64)));
    std::shared_ptr<const void> keep(raw, [](const void* p) { ::operator delete(const_cast<void*>(p), std::align_val_t(64)); });
    if (!image.empty()) std::memcpy(raw, image.data(), image.size());
    try {
        Index index = Index::from_image(raw, image.size(), "fuzz-mapped", keep, false);
        probe(index);
        index.reset();
        index.to_bytes();
    } catch (const std::exception&) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const IndexKind kind = static_cast<IndexKind>(1 + data[0] % 4);
    const uint32_t version = (data[0] / 4) % 2 == 0 ? 1 : 2;
    PayloadWriter w;
    w.put_bytes(data + 1, size - 1);
    const std::vector<uint8_t> image = w.finish(kind, version);
    auto flat_probe = [](const FlatIndex& ix) {
        std::vector<uint8_t> q(static_cast<std::size_t>(ix.code_size()), 0x5a);
        int32_t d[3];
        int64_t i[3];
        ix.search(q.data(), 1, 3, 1, d, i);
        ix.range_search(q.data(), 1, 4, 1);
        const int64_t some[2] = {0, 7};
        ix.search(q.data(), 1, 3, 1, d, i, IdFilter{some, 2, true});
    };
    load_and_probe<FlatIndex>(image, flat_probe);
    map_and_probe<FlatIndex>(image, flat_probe);
    load_and_probe<MIHIndex>(image, [](const MIHIndex& ix) {
        std::vector<uint8_t> q(static_cast<std::size_t>(ix.code_size()), 0x5a);
        int32_t d[3];
        int64_t i[3];
        ix.search(q.data(), 1, 3, 1, d, i, nullptr);
        ix.range_search(q.data(), 1, 4, 1, nullptr);
    });
    auto multi_probe = [](const MultiFieldIndex& ix) {
        std::vector<std::vector<uint8_t>> rows;
        std::vector<FieldQuery> queries;
        for (int f = 0; f < ix.nfields(); ++f) rows.emplace_back(static_cast<std::size_t>(ix.code_size(f)), 0x5a);
        for (int f = 0; f < ix.nfields(); ++f) queries.push_back(FieldQuery{rows[static_cast<std::size_t>(f)].data(), 1.0});
        double d[3];
        int64_t i[3];
        const int64_t exclude = 0;
        ix.search(queries, 1, 3, &exclude, true, 1, d, i);
    };
    load_and_probe<MultiFieldIndex>(image, multi_probe);
    map_and_probe<MultiFieldIndex>(image, multi_probe);
    auto ivf_probe = [](const IVFIndex& ix) {
        if (!ix.trained()) return;
        std::vector<uint8_t> q(static_cast<std::size_t>(ix.code_size()), 0x5a);
        int32_t d[3];
        int64_t i[3];
        ix.search(q.data(), 1, 3, 2, 1, d, i, nullptr);
        ix.range_search(q.data(), 1, 4, 2, 1, nullptr);
        const int64_t some[2] = {0, 7};
        ix.search(q.data(), 1, 3, ix.nlist(), 1, d, i, nullptr, IdFilter{some, 2, true}, IvfProbe{nullptr, 5});
    };
    load_and_probe<IVFIndex>(image, ivf_probe);
    map_and_probe<IVFIndex>(image, ivf_probe);
    return 0;
}
