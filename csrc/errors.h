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

// -> OSError(errno, ...), which Python turns into FileNotFoundError, IsADirectoryError, ...
struct IoError : std::runtime_error {
    IoError(int err, std::string file, const std::string& what)
        : std::runtime_error(what), error(err), path(std::move(file)) {}
    int error;         // errno
    std::string path;  // the file the caller named
};

// One-line precondition checks. The message is what a Python caller reads (ValueError), so it says
// what was expected and what came, without the C++ condition ("(failed: n >= nlist_)" named members
// a user never sees).
#define HX_CHECK(cond, msg)                                          \
    do {                                                             \
        if (!(cond)) throw std::invalid_argument(std::string(msg)); \
    } while (0)

}  // namespace hashindex
