// The index file format, shared by every index kind:
//
//   offset  size  field
//   0       8     magic "\x89HXI\r\n\x1a\n" (catches text-mode and truncated transfers, as PNG's does)
//   8       4     format version (little-endian u32)
//   12      4     index kind (u32, IndexKind)
//   16      8     payload length in bytes (u64)
//   24      n     payload (kind-specific, little-endian)
//   24+n    4     CRC-32 (zlib polynomial) of bytes [0, 24+n)
//
// Readers reject a newer version, a different kind, a wrong length and a bad
// checksum before they look at the payload.
#pragma once
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "errors.h"

namespace hashindex {

enum class IndexKind : uint32_t { Flat = 1, MIH = 2, MultiField = 3, IVF = 4 };
// 2: FlatIndex and MultiFieldIndex store codes in the kernels' blocked layout at 64-byte aligned
// offsets (so a mapped file is searched in place) and omit ids 0..n-1 and absent groups; MIH's
// payload is as in 1. Files of version 1 still load.
constexpr uint32_t kFormatVersion = 2;
// Payload offsets are aligned to this (from the start of the file) where arrays that kernels read
// in place begin.
constexpr std::size_t kArrayAlign = 64;

const char* kind_name(uint32_t kind);
uint32_t crc32(const uint8_t* data, std::size_t size, uint32_t crc = 0);

class PayloadWriter {
public:
    template <class T>
    void put(T value) {
        static_assert(std::is_trivially_copyable<T>::value, "POD only");
        put_bytes(&value, sizeof(T));
    }
    void put_bytes(const void* data, std::size_t size) {
        const auto* p = static_cast<const uint8_t*>(data);
        bytes_.insert(bytes_.end(), p, p + size);
    }
    void reserve(std::size_t size) { bytes_.reserve(size + 28 + kArrayAlign); }
    // Zero bytes up to the next file offset that is a multiple of `align`.
    void pad_to(std::size_t align);
    // Wraps the payload in header and checksum (a version other than the current one: tests, fuzzing).
    std::vector<uint8_t> finish(IndexKind kind, uint32_t version = kFormatVersion) const;

private:
    std::vector<uint8_t> bytes_;
};

class PayloadReader {
public:
    // Validates magic, version, kind, length and (if check_crc) checksum of a whole file image.
    PayloadReader(const uint8_t* data, std::size_t size, IndexKind kind, std::string source, bool check_crc = true);
    uint32_t version() const { return version_; }
    // Skips the padding PayloadWriter::pad_to wrote.
    void skip_padding(std::size_t align);

    template <class T>
    T get(const char* what) {
        T value;
        std::memcpy(&value, take(sizeof(T), what), sizeof(T));
        return value;
    }
    const uint8_t* take(std::size_t size, const char* what);
    // A code length: a positive multiple of 8, at most 2^24 (as check_nbits wants), or fail().
    uint32_t get_nbits();
    std::size_t remaining() const { return static_cast<std::size_t>(end_ - cur_); }
    void expect_end() const;
    [[noreturn]] void fail(const std::string& why) const;

private:
    const uint8_t* base_;
    const uint8_t* cur_;
    const uint8_t* end_;
    std::string source_;
    uint32_t version_ = 0;
};

// A file mapped read-only into memory (POSIX mmap); unmapped when the last owner lets go. An
// index opened from it keeps a reference while any of its arrays point into it.
struct MappedFile {
    const uint8_t* data = nullptr;
    std::size_t size = 0;
    ~MappedFile();
};
std::shared_ptr<const MappedFile> map_file(const std::string& path);

// The payload every index kind writes: nbits u32, a kind-specific parameter
// u32, ntotal u64, next_id i64, then ntotal code rows and ntotal int64 ids.
struct CodesPayload {
    uint32_t nbits = 0, param = 0;
    uint64_t n = 0;
    int64_t next_id = 0;
    const uint8_t* codes = nullptr;  // into the file image
    std::vector<int64_t> ids;
};
void write_codes_header(PayloadWriter& w, int nbits, uint32_t param, int64_t n, int64_t next_id);
CodesPayload read_codes_payload(PayloadReader& r);

// Rebuilds an index (constructed empty from the payload's parameters) from it;
// duplicate or negative ids and an id counter below the largest id are format errors.
template <class Index>
Index index_from_payload(const CodesPayload& p, PayloadReader& r, Index index) {
    try {
        index.add(p.codes, static_cast<int64_t>(p.n), p.ids.data());
    } catch (const std::invalid_argument& e) {
        r.fail(std::string("invalid ids: ") + e.what());
    }
    if (!index.restore_next_id(p.next_id)) r.fail("next_id " + std::to_string(p.next_id) + " is below the largest id");
    return index;
}

// Kind stored in a file image, after the same checks as PayloadReader.
uint32_t peek_kind(const uint8_t* data, std::size_t size, const std::string& source, bool check_crc = true);

std::vector<uint8_t> read_file(const std::string& path);
// Writes to a temporary file beside `path`, flushes it to disk and renames it
// over `path`, so a crash leaves either the old file or the new one.
void write_file_atomic(const std::string& path, const std::vector<uint8_t>& bytes);

}  // namespace hashindex
