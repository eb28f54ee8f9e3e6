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

void ThreadPool::run_chunks(uint32_t gen) {
  uint64_t w = claim_.load(std::memory_order_acquire);
  for (;;) {
    if (static_cast<uint32_t>(w >> 32) != gen) return;
    const uint64_t next = w & 0xFFFF, count = (w >> 16) & 0xFFFF;
    if (next >= count) return;
    if (!claim_.compare_exchange_weak(w, w + 1, std::memory_order_acq_rel, std::memory_order_acquire))
      continue;  // w reloaded
    // Chunk `next` of job `gen` is ours: the owner cannot start another job before we finish it,
    // so the job fields are stable.
    const int64_t T = n_active_, i = static_cast<int64_t>(next);
    call_(ctx_, n_tasks_ * i / T, n_tasks_ * (i + 1) / T, static_cast<int>(i));
    // seq_cst pairs with the owner's store of owner_sleeping_ then load of done_: one of the two
    // sides sees the other, so the owner never sleeps through the last chunk.
    if (done_.fetch_add(1, std::memory_order_seq_cst) + 1 == T &&
        owner_sleeping_.load(std::memory_order_seq_cst)) {
      std::lock_guard<std::mutex> lk(done_mu_);
      done_cv_.notify_one();
    }
    w = claim_.load(std::memory_order_acquire);
  }
}

void ThreadPool::run(int64_t n_tasks, Call call, void* ctx, int max_threads, int64_t n_chunks) {
  if (n_tasks <= 0) return;
  const int64_t limit = (max_threads > 0 && max_threads < n_threads_) ? max_threads : n_threads_;
  int64_t active = n_tasks < limit ? n_tasks : limit;
  bool expected = false;
  if (active <= 1 || !busy_.compare_exchange_strong(expected, true, std::memory_order_acquire)) {
    call(ctx, 0, n_tasks, 0);  // single chunk, or nested call: inline
    return;
  }
  if (n_chunks > active) {
    constexpr int64_t kMaxChunks = 0xFFFF;  // the claim word's 16-bit fields
    active = n_chunks < n_tasks ? n_chunks : n_tasks;
    if (active > kMaxChunks) active = kMaxChunks;
  }
  call_ = call;
  ctx_ = ctx;
  n_tasks_ = n_tasks;
  n_active_ = static_cast<int>(active);
  done_.store(0, std::memory_order_relaxed);
  const uint64_t g = gen_.load(std::memory_order_relaxed) + 1;
  const uint32_t g32 = static_cast<uint32_t>(g);
  claim_.store((static_cast<uint64_t>(g32) << 32) | (static_cast<uint64_t>(active) << 16),
               std::memory_order_release);
  {
    std::lock_guard<std::mutex> lk(mu_);
    gen_.store(g, std::memory_order_release);
  }
  cv_.notify_all();

  run_chunks(g32);  // ours, and any a worker has not claimed yet

  for (int i = 0; i < kSpinIters; ++i) {
    if (done_.load(std::memory_order_acquire) == active) break;
    cpu_relax();
  }
  if (done_.load(std::memory_order_acquire) != active) {
    std::unique_lock<std::mutex> lk(done_mu_);
    owner_sleeping_.store(true, std::memory_order_seq_cst);
    done_cv_.wait(lk, [&] { return done_.load(std::memory_order_seq_cst) == active; });
    owner_sleeping_.store(false, std::memory_order_relaxed);
  }
  busy_.store(false, std::memory_order_release);
}

void ThreadPool::worker(int /*index*/) {
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
    run_chunks(static_cast<uint32_t>(g));
  }
}

}  // namespace dsv4
