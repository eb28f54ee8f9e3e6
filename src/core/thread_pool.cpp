// dsv4 core: ThreadPool (see thread_pool.h).
#include "dsv4/core/thread_pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace dsv4 {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

constexpr int kSpinIters = 4000;  // ~tens of microseconds before sleeping

}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
  workers_.reserve(static_cast<size_t>(n_threads_ - 1));
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { worker(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_.store(true, std::memory_order_relaxed);
    gen_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::chunk(int index, int64_t* begin, int64_t* end) const {
  const int64_t T = n_active_;
  *begin = n_tasks_ * index / T;
  *end = n_tasks_ * (index + 1) / T;
}

void ThreadPool::run(int64_t n_tasks, Call call, void* ctx, int max_threads) {
  if (n_tasks <= 0) return;
  const int64_t limit = (max_threads > 0 && max_threads < n_threads_) ? max_threads : n_threads_;
  const int64_t active = n_tasks < limit ? n_tasks : limit;
  bool expected = false;
  if (active <= 1 || !busy_.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
    call(ctx, 0, n_tasks, 0);  // single chunk, or nested call: inline
    return;
  }
  call_ = call;
  ctx_ = ctx;
  n_tasks_ = n_tasks;
  n_active_ = static_cast<int>(active);
  // Every worker acknowledges every job (idle ones too), so no worker can still be reading this
  // job's fields when the next job writes them.
  pending_.store(n_threads_ - 1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lk(mu_);
    gen_.fetch_add(1, std::memory_order_release);
  }
  cv_.notify_all();

  int64_t b = 0, e = 0;
  chunk(0, &b, &e);
  call(ctx, b, e, 0);

  for (int i = 0; i < kSpinIters; ++i) {
    if (pending_.load(std::memory_order_acquire) == 0) break;
    cpu_relax();
  }
  if (pending_.load(std::memory_order_acquire) != 0) {
    std::unique_lock<std::mutex> lk(done_mu_);
    done_cv_.wait(lk, [&] { return pending_.load(std::memory_order_acquire) == 0; });
  }
  busy_.store(false, std::memory_order_release);
}

void ThreadPool::worker(int index) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t g = gen_.load(std::memory_order_acquire);
    for (int i = 0; i < kSpinIters && g == seen; ++i) {
      cpu_relax();
      g = gen_.load(std::memory_order_acquire);
    }
    if (g == seen) {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return gen_.load(std::memory_order_acquire) != seen; });
      g = gen_.load(std::memory_order_acquire);
    }
    seen = g;
    if (stop_.load(std::memory_order_relaxed)) return;  // ordered by the acquire of gen_
    if (index < n_active_) {
      int64_t b = 0, e = 0;
      chunk(index, &b, &e);
      call_(ctx_, b, e, index);
    }
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lk(done_mu_);
      done_cv_.notify_one();
    }
  }
}

}  // namespace dsv4
