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
#include <string>
#include <type_traits>
#include <vector>

#include "errors.h"

namespace hashindex {

enum class IndexKind : uint32_t { Flat = 1, MIH = 2 };
constexpr uint32_t kFormatVersion = 1;

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
    void reserve(std::size_t size) { bytes_.reserve(size + 28); }
    // Wraps the payload in header and checksum.
    std::vector<uint8_t> finish(IndexKind kind) const;

private:
    std::vector<uint8_t> bytes_;
};

class PayloadReader {
public:
    // Validates magic, version, kind, length and checksum of a whole file image.
    PayloadReader(const uint8_t* data, std::size_t size, IndexKind kind, std::string source);

    template <class T>
    T get(const char* what) {
        T value;
        std::memcpy(&value, take(sizeof(T), what), sizeof(T));
        return value;
    }
    const uint8_t* take(std::size_t size, const char* what);
    void expect_end() const;
    [[noreturn]] void fail(const std::string& why) const;

private:
    const uint8_t* cur_;
    const uint8_t* end_;
    std::string source_;
};

// Kind stored in a file image, after the same checks as PayloadReader.
uint32_t peek_kind(const uint8_t* data, std::size_t size, const std::string& source);

std::vector<uint8_t> read_file(const std::string& path);
// Writes to a temporary file beside `path`, flushes it to disk and renames it
// over `path`, so a crash leaves either the old file or the new one.
void write_file_atomic(const std::string& path, const std::vector<uint8_t>& bytes);

}  // namespace hashindex
