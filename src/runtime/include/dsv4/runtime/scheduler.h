// dsv4 runtime: the scheduler — slots, a bounded queue, continuous batching, prefix reuse and
// cancellation (issue 6, scope 4; docs/design.md §3 "one owner of mutable inference state").
//
// One scheduler thread owns the Engine. HTTP threads call submit()/cancel() only. Each loop
// iteration: admit queued requests into free slots (the slot whose cached token prefix is the
// longest for the prompt; rewind it to the common prefix, capped so at least one prompt token is
// run); run at most one prefill chunk (≤ n_batch tokens) per prefilling slot; then one batched
// decode of every generating slot. A long prompt therefore never stalls running streams for more
// than one chunk.
//
// Events are delivered on the scheduler thread through the request's callback, in order:
// zero or more kToken, then exactly one terminal event (kDone or kError). A callback must be
// quick (format and enqueue text; never block on a socket) and returns false to cancel.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "dsv4/core/status.h"
#include "dsv4/runtime/engine.h"
#include "dsv4/runtime/sampler.h"

namespace dsv4::runtime {

enum class FinishReason { kNone, kStop, kLength, kCancelled, kError };
const char* finish_reason_name(FinishReason r);  // "stop", "length", "cancelled", "error"

struct GenRequest {
  std::vector<int32_t> prompt;        // ≥ 1 token, every id < n_vocab (checked by submit)
  int64_t max_tokens = -1;            // < 0: until the context ends
  SamplingParams sampling;
  std::vector<int32_t> stop_tokens;   // generation ends (kStop) after emitting one of these
};

struct TokenEvent {
  enum Kind { kToken, kDone, kError } kind = kToken;
  Sampled token;                      // kToken
  FinishReason finish = FinishReason::kNone;  // kDone / kError
  Status error;                       // kError
  // Counters, valid on every event (timings as llama-server reports them):
  int64_t n_prompt = 0;               // prompt tokens
  int64_t n_cached = 0;               // prompt tokens reused from the slot's cache
  int64_t n_generated = 0;
  double prompt_ms = 0;               // wall time of this request's prefill work
  double gen_ms = 0;                  // wall time from the first generated token to now
};

using EventCallback = std::function<bool(const TokenEvent&)>;

struct SchedulerOptions {
  int64_t n_batch = 512;       // prefill chunk per slot per iteration
  int64_t max_queue = 64;      // waiting requests beyond the slots; more → kUnavailable
};

struct SchedulerStats {
  int64_t requests_total = 0, requests_active = 0, queue_depth = 0, busy_slots = 0;
  int64_t prompt_tokens_total = 0, gen_tokens_total = 0;
  double prompt_ms_total = 0, gen_ms_total = 0;
};

class Scheduler {
 public:
  Scheduler(Engine& engine, SchedulerOptions opts);
  ~Scheduler();  // stops: pending requests get kError "server shutting down"
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues a request. Errors: kInvalidArgument (empty prompt, bad token id, prompt ≥ n_ctx:
  // message carries both numbers, bad sampling params), kUnavailable when
  // the queue is full (server answers 503). Returns the request id.
  Result<uint64_t> submit(GenRequest req, EventCallback cb);
  // Cancels a queued or running request (its callback then gets kDone with kCancelled, within
  // one decode step or prefill chunk). Unknown ids are ignored.
  void cancel(uint64_t id);
  SchedulerStats stats() const;
  // Stops admitting; in-flight requests finish normally (SIGTERM drain); returns when idle.
  void drain();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsv4::runtime
