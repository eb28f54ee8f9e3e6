// dsv4 core: a small persistent thread pool with a static-partition parallel_for.
//
// ThreadPool(n) owns n − 1 worker threads; the calling thread is thread 0 and takes part in every
// parallel_for. parallel_for(n_tasks, fn) splits [0, n_tasks) into T = min(threads(), n_tasks)
// contiguous chunks (chunk i = [i·n_tasks/T, (i+1)·n_tasks/T)) and calls fn(begin, end) or
// fn(begin, end, i) once per chunk, with the chunk index i as the "thread index": the same n_tasks
// and thread count always give the same ranges and indices (callers may key per-thread scratch
// on i: no two calls with the same i run at the same time). Which OS thread runs chunk i is not
// fixed: the threads claim chunks in turn, so when a worker is descheduled (a shared machine) the
// caller runs its chunk instead of waiting for it.
//
// parallel_for(n_tasks, fn, max_threads) uses at most max_threads chunks (0 = threads()).
//
// parallel_for_chunks(n_tasks, n_chunks, fn, max_threads) splits [0, n_tasks) into
// min(n_tasks, max(n_chunks, T)) contiguous chunks, same formula, that the threads claim one at a
// time until none is left, so a thread that runs slower (a vCPU sharing its core on the host, a
// preempted worker) takes fewer of them instead of holding the whole op up: the op ends when the
// threads' summed work is done, not when the slowest thread's fixed share is. fn(begin, end) only
// (a chunk index would not name a thread); max_threads ≤ 1 or n_tasks ≤ 1 runs it inline, any
// other value lets every thread take part.
//
// Cost: no allocation per call; workers spin briefly on a generation counter, then sleep on a
// condition variable; the caller spins briefly for chunks still running on workers, then sleeps.
// Threading: parallel_for may be called from one thread at a time (the pool's owner) and must not
// be nested (a call from inside fn runs the whole range inline on that thread). fn must not
// throw. Destruction joins the workers.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace dsv4 {

class ThreadPool {
 public:
  // n_threads ≥ 1 (values < 1 are treated as 1): the caller plus n_threads − 1 workers.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return n_threads_; }

  template <class F>
  void parallel_for_chunks(int64_t n_tasks, int64_t n_chunks, F&& fn, int max_threads = 0) {
    using Fn = std::remove_reference_t<F>;
    static_assert(std::is_invocable_v<Fn&, int64_t, int64_t>, "fn(begin, end)");
    run(n_tasks, [](void* ctx, int64_t b, int64_t e, int) { (*static_cast<Fn*>(ctx))(b, e); },
        const_cast<void*>(static_cast<const void*>(&fn)), max_threads, n_chunks);
  }

  template <class F>
  void parallel_for(int64_t n_tasks, F&& fn, int max_threads = 0) {
    using Fn = std::remove_reference_t<F>;
    run(n_tasks, [](void* ctx, int64_t b, int64_t e, int t) {
      Fn& f = *static_cast<Fn*>(ctx);
      if constexpr (std::is_invocable_v<Fn&, int64_t, int64_t, int>) {
        f(b, e, t);
      } else {
        (void)t;
        f(b, e);
      }
    }, const_cast<void*>(static_cast<const void*>(&fn)), max_threads);
  }

 private:
  using Call = void (*)(void* ctx, int64_t begin, int64_t end, int thread);

  // n_chunks > the thread count: that many chunks (≤ n_tasks, ≤ 65535), claimed dynamically.
  void run(int64_t n_tasks, Call call, void* ctx, int max_threads, int64_t n_chunks = 0);
  void worker(int index);
  // Claims and runs chunks of job `gen` until none is left; false when the job is not (or no
  // longer) `gen`.
  void run_chunks(uint32_t gen);

  int n_threads_ = 1;
  std::vector<std::thread> workers_;

  // The current job (written by the owner before claim_ is published, read by a thread only after
  // it claimed a chunk of that job, which the owner waits for before the next job).
  Call call_ = nullptr;
  void* ctx_ = nullptr;
  int64_t n_tasks_ = 0;
  int n_active_ = 0;  // chunks of this job

  // Claim word: generation (high 32 bits) | chunk count (bits 16..31) | next chunk (low 16 bits).
  std::atomic<uint64_t> claim_{0};
  std::atomic<int> done_{0};     // chunks of the current job finished
  std::atomic<uint64_t> gen_{0};  // wakes workers
  std::atomic<bool> busy_{false};
  std::atomic<bool> stop_{false};
  std::atomic<bool> owner_sleeping_{false};
  std::mutex mu_;
  std::condition_variable cv_;        // workers wait here for a new generation
  std::mutex done_mu_;
  std::condition_variable done_cv_;   // the owner waits here for done_ == n_active_
};

}  // namespace dsv4
