// A persistent worker pool. Spawning threads per call costs tens of
// microseconds, which is the whole budget of a single-query search.
#pragma once
#include <cstdint>
#include <functional>

namespace hashindex {

// Threads the process may run on (CPU affinity when first asked), at least 1.
int available_threads();

// Runs fn(t) for every t in [0, ntasks) on up to `threads` threads, the caller
// included. Tasks are handed out dynamically. If any task throws, the
// remaining tasks are skipped and the first exception is rethrown here after
// all workers are done. If the pool is already busy (another caller thread),
// the tasks run on the calling thread alone. Workers run under the caller's
// Interrupt (interrupt.h), checked between tasks and, on the caller, while it
// waits for them: once it fires, Interrupted propagates like any exception.
void parallel_for(int threads, int64_t ntasks, const std::function<void(int64_t)>& fn);

}  // namespace hashindex
