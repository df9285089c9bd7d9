// Cooperative cancellation of long searches, so that Ctrl-C stops a scan of
// millions of codes instead of waiting for it (a 1M x 1M batch runs for minutes).
//
// The thread that starts a search installs an Interrupt with a poll function;
// scan loops call interruption_point() between chunks of work. Only the
// installing thread ever polls (the bindings' poll takes the GIL and runs
// Python's signal handlers, which only the main thread may do); pool workers
// see the installing thread's Interrupt and read the flag its poll sets.
#pragma once
#include <atomic>
#include <chrono>
#include <exception>
#include <functional>

namespace hashindex {

// Thrown from interruption_point() once the active Interrupt has fired.
struct Interrupted : std::exception {
    const char* what() const noexcept override { return "search interrupted"; }
};

class Interrupt {
public:
    // poll() returns true to stop; it is first called `interval` after construction, then at most
    // once per interval, so short searches never pay for it. Installs itself on this thread.
    Interrupt(std::function<bool()> poll, std::chrono::milliseconds interval);
    ~Interrupt();
    Interrupt(const Interrupt&) = delete;
    Interrupt& operator=(const Interrupt&) = delete;

    bool fired() const { return fired_.load(std::memory_order_relaxed); }
    // Polls now if this is the installing thread and the interval has passed; true if fired.
    bool check();

private:
    std::function<bool()> poll_;
    std::chrono::steady_clock::duration interval_;
    std::chrono::steady_clock::time_point next_poll_;
    std::atomic<bool> fired_{false};
    Interrupt* previous_;
    const void* owner_;
};

// The Interrupt this thread runs under (its own, or the one a pool job was posted with); may be null.
Interrupt* current_interrupt();

// Runs a pool worker's share of a job under the poster's Interrupt.
class InterruptScope {
public:
    explicit InterruptScope(Interrupt* active);
    ~InterruptScope();
    InterruptScope(const InterruptScope&) = delete;
    InterruptScope& operator=(const InterruptScope&) = delete;

private:
    Interrupt* previous_;
};

// Throws Interrupted if the current Interrupt has fired (polling it on the installing thread).
// Costs a thread-local read when nothing is installed, and a clock read otherwise.
inline void interruption_point() {
    Interrupt* i = current_interrupt();
    if (i && i->check()) throw Interrupted();
}

}  // namespace hashindex
