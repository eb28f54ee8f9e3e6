// TEST-ONLY CODE. Not part of any shipped binary.
//
// dsv4::testing::ScriptedEngine: a stand-in for runtime::Engine that runs no model. Its logits
// put `peak` (default 30) on the scripted next token and 0 on every other id, so greedy sampling
// (and, with peak 30, practically any sampling) emits exactly the script. Lets the scheduler and
// the HTTP server be tested fast and deterministically without model files.
//
// What the next token is, for a slot whose timeline (token history) is H, first rule that applies:
//   1. a per-request script (queue_script) bound to the slot: element k of the list, where k is the
//      number of tokens generated since the prompt (see "prompt boundary" below);
//   2. the all-slots fixed list (set_script), the same way;
//   3. the script function (set_script_fn), if it returns an id ≥ 0;
//   4. the default: default_next(H.back()) = a hash of the last token mod n_vocab, so different
//      prompts give different (but reproducible) outputs.
// When a list runs out (k ≥ size), rules 3–4 continue.
//
// Prompt boundary: each prefill() call marks "generation starts here" (k = 0 right after it, so
// its logits give list[0]); each decode() advances k by one. Chunked prefill is therefore fine:
// only the last chunk's logits are used by the scheduler and they give list[0].
// Per-request scripts (queue_script) are popped FIFO when a slot starts a new request, i.e. on the
// first prefill() after construction, after a rewind() (even a no-op one) or after a decode();
// the Scheduler calls rewind() when it admits every request, so each request takes the next one.
//
// Limits and validation follow engine.h: bad slot, token id or length → kInvalidArgument; the
// timeline never exceeds n_ctx. rewind()/n_past() are exact (history is truncated).
//
// Fault injection: a "poison" token makes any prefill/decode call that would run it fail with
// kInvalidArgument "poison token <id>" (set_poison_token), and fail_next_calls(n) fails the next
// n prefill/decode calls with kInvalidArgument "injected failure". A failed call leaves every slot's
// timeline unchanged (the engine.h contract: the last good length).
//
// Threading: the Engine methods are called by one thread (the scheduler). The configuration
// setters and counters() may be called from any thread at any time (internally locked).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "dsv4/runtime/engine.h"

namespace dsv4::testing {

struct ScriptedEngineOptions {
  int n_slots = 4;
  int64_t n_vocab = 256;
  int64_t n_ctx = 1024;
  float peak = 30.0f;                                  // logit of the scripted token
  std::chrono::microseconds decode_delay{0};           // sleep per decode() call
  std::chrono::microseconds prefill_token_delay{0};    // sleep per prefilled token
};

// Counters since construction (or reset_counters()).
struct ScriptedEngineCounters {
  int64_t decode_calls = 0;
  int64_t decode_tokens = 0;                 // sum of batch sizes
  int64_t max_decode_batch = 0;
  std::vector<int> decode_batch_sizes;       // one entry per decode() call, in order
  int64_t prefill_calls = 0;
  int64_t prefill_tokens = 0;
  int64_t max_prefill_chunk = 0;
  int64_t rewind_calls = 0;
  int64_t failed_calls = 0;                  // calls answered with an injected error
};

class ScriptedEngine : public runtime::Engine {
 public:
  // history = the slot's full timeline (prompt + generated tokens run so far), never empty.
  // Return the next token id, or < 0 to defer to the default.
  using ScriptFn = std::function<int32_t(std::span<const int32_t> history)>;

  explicit ScriptedEngine(ScriptedEngineOptions opts = {});

  // The deterministic default next token after `last`.
  static int32_t default_next(int32_t last, int64_t n_vocab);
  int32_t default_next(int32_t last) const { return default_next(last, info_.n_vocab); }

  // --- scripts (any thread) ---
  void set_script(std::vector<int32_t> tokens);   // all slots, every request; empty: off
  void queue_script(std::vector<int32_t> tokens); // the next request to start takes it
  void set_script_fn(ScriptFn fn);                // empty function: off
  void clear_scripts();                           // global list, queue and fn all off

  // --- timing and faults (any thread) ---
  void set_decode_delay(std::chrono::microseconds d);
  void set_prefill_token_delay(std::chrono::microseconds d);
  // Any prefill/decode that would run token `id` fails with kInvalidArgument "poison token";
  // nullopt: off. In a batched decode the whole call fails (like a real backend would).
  void set_poison_token(std::optional<int32_t> id);
  void fail_next_calls(int n);  // the next n prefill/decode calls fail

  ScriptedEngineCounters counters() const;
  void reset_counters();
  // A copy of the slot's timeline (any thread; for assertions after the scheduler is idle).
  std::vector<int32_t> history(int slot) const;

  // --- runtime::Engine ---
  const runtime::EngineInfo& info() const override { return info_; }
  int64_t n_past(int slot) const override;
  Status prefill(int slot, std::span<const int32_t> tokens, std::span<float> logits) override;
  Status decode(std::span<const int> slots, std::span<const int32_t> tokens,
                std::span<float> logits) override;
  Status rewind(int slot, int64_t n) override;

 private:
  struct Slot {
    std::vector<int32_t> hist;
    int64_t gen_start = 0;        // n_past at the end of the last prefill
    bool new_request = true;      // next prefill starts a request (pops queue_script)
    std::optional<std::vector<int32_t>> own_script;
  };

  Status check_slot(int slot) const;
  Status check_token(int32_t id) const;
  Status maybe_fail(std::span<const int32_t> tokens);  // locked
  int32_t next_token(const Slot& s) const;             // locked
  void write_logits(int32_t next, std::span<float> out) const;

  runtime::EngineInfo info_;
  ScriptedEngineOptions opts_;
  mutable std::mutex mu_;  // guards everything below and slots_
  std::vector<Slot> slots_;
  std::vector<int32_t> script_;
  std::deque<std::vector<int32_t>> queue_;
  ScriptFn fn_;
  std::optional<int32_t> poison_;
  int fail_next_ = 0;
  ScriptedEngineCounters counters_;
};

}  // namespace dsv4::testing
