// libFuzzer target for the index file loaders (format.cpp and every kind's from_bytes).
//
// The input is one selector byte and a payload; the target wraps the payload in a valid header and
// CRC-32 (fuzzing through a checksum would test nothing but the checksum) and hands the image to
// every loader. Each must either build an index or throw a std::exception (FormatError for bad
// files); after a successful load, a search and a save round trip must work. ASan and UBSan turn
// any out-of-bounds read, overflow or leak into a crash that libFuzzer reports.
#include <cstdint>
#include <exception>
#include <vector>

#include "flat_index.h"
#include "format.h"
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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const IndexKind kind = static_cast<IndexKind>(1 + data[0] % 3);
    PayloadWriter w;
    w.put_bytes(data + 1, size - 1);
    const std::vector<uint8_t> image = w.finish(kind);
    load_and_probe<FlatIndex>(image, [](const FlatIndex& ix) {
        std::vector<uint8_t> q(static_cast<std::size_t>(ix.code_size()), 0x5a);
        int32_t d[3];
        int64_t i[3];
        ix.search(q.data(), 1, 3, 1, d, i);
        ix.range_search(q.data(), 1, 4, 1);
    });
    load_and_probe<MIHIndex>(image, [](const MIHIndex& ix) {
        std::vector<uint8_t> q(static_cast<std::size_t>(ix.code_size()), 0x5a);
        int32_t d[3];
        int64_t i[3];
        ix.search(q.data(), 1, 3, 1, d, i, nullptr);
        ix.range_search(q.data(), 1, 4, 1, nullptr);
    });
    load_and_probe<MultiFieldIndex>(image, [](const MultiFieldIndex& ix) {
        std::vector<std::vector<uint8_t>> rows;
        std::vector<FieldQuery> queries;
        for (int f = 0; f < ix.nfields(); ++f) rows.emplace_back(static_cast<std::size_t>(ix.code_size(f)), 0x5a);
        for (int f = 0; f < ix.nfields(); ++f) queries.push_back(FieldQuery{rows[static_cast<std::size_t>(f)].data(), 1.0});
        double d[3];
        int64_t i[3];
        const int64_t exclude = 0;
        ix.search(queries, 1, 3, &exclude, true, 1, d, i);
    });
    return 0;
}
