#include "interrupt.h"

namespace hashindex {
namespace {
thread_local Interrupt* t_current = nullptr;
// A per-thread address identifies the installing thread without std::thread::id comparisons.
thread_local char t_marker;
}  // namespace

Interrupt::Interrupt(std::function<bool()> poll, std::chrono::milliseconds interval)
    : poll_(std::move(poll)),
      interval_(interval),
      next_poll_(std::chrono::steady_clock::now() + interval),
      previous_(t_current),
      owner_(&t_marker) {
    t_current = this;
}

Interrupt::~Interrupt() { t_current = previous_; }

bool Interrupt::check() {
    if (fired()) return true;
    if (owner_ != &t_marker) return false;
    const auto now = std::chrono::steady_clock::now();
    if (now < next_poll_) return false;
    next_poll_ = now + interval_;
    if (poll_()) fired_.store(true, std::memory_order_relaxed);
    return fired();
}

Interrupt* current_interrupt() { return t_current; }

InterruptScope::InterruptScope(Interrupt* active) : previous_(t_current) { t_current = active; }
InterruptScope::~InterruptScope() { t_current = previous_; }

}  // namespace hashindex
