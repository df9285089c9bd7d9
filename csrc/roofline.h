// The ceilings a scan's speed is judged against, measured on this machine with the active kernels.
#pragma once
#include <cstdint>

namespace hashindex {

// The active level's XOR + popcount + add rate on register-resident data (GB/s of code bytes
// compared, all `threads` together), median of `repeats` runs of about `seconds` each: the ceiling
// an exhaustive scan's compared-bytes rate can approach and never pass.
double popcount_peak(int threads, double seconds, int repeats);

// Sequential read bandwidth of this machine (GB/s) over a buffer of `nbytes`, median of `repeats`.
double read_bandwidth(int64_t nbytes, int threads, int repeats);

}  // namespace hashindex
