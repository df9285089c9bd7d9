#include "parallel.h"

#include "interrupt.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif
#if !defined(_WIN32)
#include <unistd.h>
#endif

namespace hashindex {
namespace {

long current_pid() {
#if defined(_WIN32)
    return 0;
#else
    return static_cast<long>(getpid());
#endif
}

void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#else
    std::this_thread::yield();
#endif
}

// Spins until pred() or `budget` elapses; true if pred() held. A futex wake-up
// on a VM costs more than a whole single-query scan of a database in cache
// (benchmarks/RESULTS.md, "Measurements behind the code"), so both sides spin briefly before they
// sleep (as OpenMP runtimes do).
template <class Pred>
bool spin_until(Pred pred, std::chrono::microseconds budget) {
    const auto deadline = std::chrono::steady_clock::now() + budget;
    for (int i = 0;; ++i) {
        if (pred()) return true;
        cpu_relax();
        if ((i & 15) == 15 && std::chrono::steady_clock::now() > deadline) return pred();
    }
}

constexpr std::chrono::microseconds kWorkerSpin{300};
constexpr std::chrono::microseconds kCallerSpin{2000};
// How often a caller that waits for workers gives its Interrupt a chance to poll.
constexpr std::chrono::milliseconds kCallerPollWait{20};

class Pool {
public:
    explicit Pool(long pid) : pid_(pid) {}
    long pid() const { return pid_; }

    bool try_run(int threads, int64_t ntasks, const std::function<void(int64_t)>& fn) {
        std::unique_lock<std::mutex> submit(submit_mu_, std::try_to_lock);
        if (!submit.owns_lock()) return false;
        grow(threads - 1);
        {
            std::lock_guard<std::mutex> lk(mu_);
            job_ = &fn;
            interrupt_ = current_interrupt();
            ntasks_ = ntasks;
            next_.store(0);
            failed_.store(false);
            error_ = nullptr;
            participants_ = threads - 1;
            finished_.store(0);
            generation_.fetch_add(1, std::memory_order_release);
        }
        start_cv_.notify_all();
        work();
        const int expected = threads - 1;
        auto all_done = [&] { return finished_.load(std::memory_order_acquire) == expected; };
        if (!spin_until(all_done, kCallerSpin)) {
            Interrupt* interrupt = current_interrupt();
            std::unique_lock<std::mutex> lk(mu_);
            while (!done_cv_.wait_for(lk, kCallerPollWait, all_done)) {
                if (!interrupt) continue;
                lk.unlock();  // the poll may take the GIL: never while holding the pool's lock
                interrupt->check();
                lk.lock();
            }
        }
        std::exception_ptr error;
        {
            std::lock_guard<std::mutex> lk(mu_);
            job_ = nullptr;
            error = error_;
        }
        if (error) std::rethrow_exception(error);
        return true;
    }

private:
    void grow(int n) {
        while (static_cast<int>(workers_.size()) < n) {
            // The generation is read here, not in the new thread: a thread that
            // starts late must still see the job about to be posted as new.
            const int index = static_cast<int>(workers_.size());
            const uint64_t seen = generation_.load(std::memory_order_acquire);
            workers_.emplace_back([this, index, seen] { loop(index, seen); });
            workers_.back().detach();
        }
    }

    void loop(int index, uint64_t seen) {
        for (;;) {
            auto fresh = [&] { return generation_.load(std::memory_order_acquire) != seen; };
            if (!spin_until(fresh, kWorkerSpin)) {
                std::unique_lock<std::mutex> lk(mu_);
                start_cv_.wait(lk, fresh);
            }
            int participants;
            Interrupt* interrupt;
            {
                std::lock_guard<std::mutex> lk(mu_);
                seen = generation_.load(std::memory_order_acquire);
                participants = participants_;
                interrupt = interrupt_;
            }
            if (index >= participants) continue;
            {
                InterruptScope scope(interrupt);
                work();
            }
            {
                std::lock_guard<std::mutex> lk(mu_);
                finished_.fetch_add(1, std::memory_order_release);
            }
            done_cv_.notify_all();
        }
    }

    void work() {
        for (;;) {
            const int64_t t = next_.fetch_add(1);
            if (t >= ntasks_ || failed_.load(std::memory_order_relaxed)) return;
            try {
                interruption_point();
                (*job_)(t);
            } catch (...) {
                std::lock_guard<std::mutex> lk(error_mu_);
                if (!error_) error_ = std::current_exception();
                failed_.store(true);
            }
        }
    }

    const long pid_;
    std::mutex submit_mu_, mu_, error_mu_;
    std::condition_variable start_cv_, done_cv_;
    std::vector<std::thread> workers_;
    std::atomic<uint64_t> generation_{0};
    const std::function<void(int64_t)>* job_ = nullptr;
    Interrupt* interrupt_ = nullptr;  // the poster's, for workers to check
    int64_t ntasks_ = 0;
    std::atomic<int64_t> next_{0};
    std::atomic<bool> failed_{false};
    std::exception_ptr error_;
    int participants_ = 0;
    std::atomic<int> finished_{0};
};

// Never destroyed: detached workers may still be parked in it at exit. After a
// fork the child has none of the parent's threads, so it builds a pool of its own.
Pool* pool() {
    static std::mutex mu;
    static Pool* instance = nullptr;
    std::lock_guard<std::mutex> lk(mu);
    if (!instance || instance->pid() != current_pid()) instance = new Pool(current_pid());
    return instance;
}

}  // namespace

namespace {
int query_available_threads() {
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) {
        const int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
#endif
    const unsigned n = std::thread::hardware_concurrency();
    return n > 0 ? static_cast<int>(n) : 1;
}
}  // namespace

// Read once: every search asks (an MIH search several times), and the affinity
// syscall is a noticeable share of a single query (benchmarks/RESULTS.md, "Measurements behind the code").
int available_threads() {
    static const int n = query_available_threads();
    return n;
}

void parallel_for(int threads, int64_t ntasks, const std::function<void(int64_t)>& fn) {
    if (ntasks <= 0) return;
    if (threads > ntasks) threads = static_cast<int>(ntasks);
    if (threads > 1 && pool()->try_run(threads, ntasks, fn)) return;
    for (int64_t t = 0; t < ntasks; ++t) {
        interruption_point();
        fn(t);
    }
}

}  // namespace hashindex
