// Exception types the bindings translate to specific Python exceptions.
#pragma once
#include <stdexcept>
#include <string>

namespace hashindex {

// -> KeyError: an id that is not in the index.
struct MissingIdError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// -> hashindex.FormatError (a ValueError): a file or buffer that is not a valid index.
struct FormatError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// One-line precondition checks that carry the failed condition into the message.
#define HX_CHECK(cond, msg)                                                                  \
    do {                                                                                     \
        if (!(cond)) throw std::invalid_argument(std::string(msg) + " (failed: " #cond ")"); \
    } while (0)

}  // namespace hashindex
