// dsv4 runtime: the scheduler (scheduler.h).
//
// Threads: HTTP threads call submit()/cancel()/stats()/drain(); they touch only the state under
// `mu` (queue, cancel list, counters). The scheduler thread owns the Engine, the slots and every
// admitted request; it calls the callbacks, never while holding `mu` (a callback may call
// submit() or cancel()).
//
// Capacity: at most n_slots + max_queue requests are in the system (queued + in slots). Counting
// the free slots into the capacity keeps the answer independent of how quickly the scheduler
// thread picks requests up.
//
// Slot cache: each slot keeps the token ids its engine timeline holds (prompt tokens prefilled,
// generated tokens decoded). The last sampled token of a finished request was never run, so it
// is not in the cache. A request is admitted into the free slot with the longest common prefix
// (ties: the slot with the shortest cache, then the lowest index, so a long cache is not thrown
// away for nothing); the slot is rewound to that prefix, capped at prompt length − 1 so the last
// prompt token is always run and yields the logits of the first generated token. rewind() is
// called on every admission, even when it changes nothing.
//
// Length: a request ends with kLength when prompt + generated tokens reach n_ctx (there is never
// a context shift), or when max_tokens tokens were generated.
//
// Errors: an engine error fails only the request(s) it can be pinned on. A failed batched decode
// is retried slot by slot (after rewinding any slot the failed call advanced) so one bad sequence
// does not take down the others. The slot of a failed request is rewound to 0 and its cache
// cleared.
#include "dsv4/runtime/scheduler.h"

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>

namespace dsv4::runtime {

const char* finish_reason_name(FinishReason r) {
  switch (r) {
    case FinishReason::kNone: return "none";
    case FinishReason::kStop: return "stop";
    case FinishReason::kLength: return "length";
    case FinishReason::kCancelled: return "cancelled";
    case FinishReason::kError: return "error";
  }
  return "none";
}

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0, Clock::time_point t1) {
  return std::chrono::duration<double, std::milli>(t1 - t0).count();
}

struct Request {
  uint64_t id = 0;
  GenRequest req;
  EventCallback cb;
  // Scheduler-thread state once admitted.
  int slot = -1;
  bool generating = false;  // false: prefilling
  bool cancel = false;
  int64_t prefill_pos = 0;  // next prompt index to run
  int64_t n_cached = 0;
  int64_t n_generated = 0;
  int32_t pending = 0;      // sampled, not yet run
  double prompt_ms = 0;
  Clock::time_point first_token{};
  bool has_first_token = false;
  std::unique_ptr<Sampler> sampler;
};

struct SlotState {
  std::vector<int32_t> cached;  // == the engine timeline of this slot
  std::shared_ptr<Request> req; // null: free
};

}  // namespace

struct Scheduler::Impl {
  Engine& engine;
  SchedulerOptions opts;
  EngineInfo info;

  // --- shared, under mu ---
  mutable std::mutex mu;
  std::condition_variable cv;       // wakes the scheduler thread
  std::condition_variable idle_cv;  // wakes drain()
  std::deque<std::shared_ptr<Request>> queue;
  std::vector<uint64_t> cancel_ids;
  int64_t busy = 0;                 // requests taken from the queue and not finished
  bool stopping = false;
  bool draining = false;
  uint64_t next_id = 1;
  SchedulerStats totals;            // *_total fields; the gauges are computed in stats()
  std::atomic<bool> cancel_flag{false};

  // --- scheduler thread only ---
  std::vector<SlotState> slots;
  std::vector<float> logits;
  std::thread thread;

  Impl(Engine& e, SchedulerOptions o) : engine(e), opts(o), info(e.info()) {
    if (opts.n_batch < 1) opts.n_batch = 1;
    if (opts.max_queue < 0) opts.max_queue = 0;
    slots.resize(static_cast<size_t>(std::max(info.n_slots, 0)));
    thread = std::thread([this] { run(); });
  }

  // ---------------------------------------------------------------------------------------
  // Events.

  TokenEvent base_event(const Request& r) const {
    TokenEvent ev;
    ev.n_prompt = static_cast<int64_t>(r.req.prompt.size());
    ev.n_cached = r.n_cached;
    ev.n_generated = r.n_generated;
    ev.prompt_ms = r.prompt_ms;
    ev.gen_ms = r.has_first_token ? ms_since(r.first_token, Clock::now()) : 0.0;
    return ev;
  }

  static bool deliver(Request& r, const TokenEvent& ev) {
    try {
      return r.cb(ev);
    } catch (...) {
      return false;  // a throwing callback cancels its request instead of killing the thread
    }
  }

  // Terminal event for a request that never reached a slot (or is being torn down).
  void finish_unslotted(Request& r, FinishReason why, Status err) {
    TokenEvent ev = base_event(r);
    ev.kind = why == FinishReason::kError ? TokenEvent::kError : TokenEvent::kDone;
    ev.finish = why;
    ev.error = std::move(err);
    deliver(r, ev);
  }

  // Ends the request in slot `s`: terminal event, slot freed (its cache kept), counters.
  void finish(int s, FinishReason why, Status err = Status::ok()) {
    SlotState& st = slots[static_cast<size_t>(s)];
    std::shared_ptr<Request> r = std::move(st.req);
    st.req.reset();
    if (why == FinishReason::kError) reset_slot(s);
    TokenEvent ev = base_event(*r);
    ev.kind = why == FinishReason::kError ? TokenEvent::kError : TokenEvent::kDone;
    ev.finish = why;
    ev.error = std::move(err);
    deliver(*r, ev);
    std::lock_guard lk(mu);
    --busy;
    totals.prompt_ms_total += ev.prompt_ms;
    totals.gen_ms_total += ev.gen_ms;
    if (busy == 0 && queue.empty()) idle_cv.notify_all();
  }

  void reset_slot(int s) {
    SlotState& st = slots[static_cast<size_t>(s)];
    st.cached.clear();
    if (!engine.rewind(s, 0).is_ok()) {
      // The engine could not even rewind; its n_past still says where the timeline is, and the
      // next admission rewinds again. Nothing cached is trusted.
    }
  }

  // Emits a sampled token and applies the finish rules. Returns true when the request ended.
  bool emit_token(int s, const Sampled& tok) {
    Request& r = *slots[static_cast<size_t>(s)].req;
    if (!r.has_first_token) {
      r.has_first_token = true;
      r.first_token = Clock::now();
    }
    ++r.n_generated;
    r.pending = tok.id;
    {
      std::lock_guard lk(mu);
      ++totals.gen_tokens_total;
    }
    TokenEvent ev = base_event(r);
    ev.kind = TokenEvent::kToken;
    ev.token = tok;
    const bool keep_going = deliver(r, ev);
    const int64_t n_prompt = static_cast<int64_t>(r.req.prompt.size());
    if (std::find(r.req.stop_tokens.begin(), r.req.stop_tokens.end(), tok.id) !=
        r.req.stop_tokens.end()) {
      finish(s, FinishReason::kStop);
    } else if ((r.req.max_tokens >= 0 && r.n_generated >= r.req.max_tokens) ||
               n_prompt + r.n_generated >= info.n_ctx) {
      finish(s, FinishReason::kLength);
    } else if (!keep_going || r.cancel) {
      finish(s, FinishReason::kCancelled);
    } else {
      return false;
    }
    return true;
  }

  // Samples from `lg` and emits; an error (NaN logits) fails the request.
  void sample_and_emit(int s, std::span<const float> lg) {
    Request& r = *slots[static_cast<size_t>(s)].req;
    Result<Sampled> tok = r.sampler->sample(lg);
    if (!tok.is_ok()) {
      finish(s, FinishReason::kError, tok.status());
      return;
    }
    emit_token(s, *tok);
  }

  // ---------------------------------------------------------------------------------------
  // Cancellation.

  void process_cancels() {
    if (!cancel_flag.exchange(false)) return;
    std::vector<uint64_t> ids;
    std::vector<std::shared_ptr<Request>> dropped;
    {
      std::lock_guard lk(mu);
      ids.swap(cancel_ids);
      for (uint64_t id : ids) {
        auto it = std::find_if(queue.begin(), queue.end(),
                               [id](const auto& q) { return q->id == id; });
        if (it != queue.end()) {
          dropped.push_back(std::move(*it));
          queue.erase(it);
        }
      }
      if (busy == 0 && queue.empty()) idle_cv.notify_all();
    }
    for (auto& r : dropped) finish_unslotted(*r, FinishReason::kCancelled, Status::ok());
    for (uint64_t id : ids)
      for (auto& st : slots)
        if (st.req && st.req->id == id) st.req->cancel = true;
  }

  // Finishes every slotted request marked cancelled.
  void reap_cancelled() {
    for (int s = 0; s < static_cast<int>(slots.size()); ++s)
      if (slots[static_cast<size_t>(s)].req && slots[static_cast<size_t>(s)].req->cancel)
        finish(s, FinishReason::kCancelled);
  }

  // ---------------------------------------------------------------------------------------
  // Admission.

  static int64_t common_prefix(const std::vector<int32_t>& a, const std::vector<int32_t>& b) {
    const size_t n = std::min(a.size(), b.size());
    size_t i = 0;
    while (i < n && a[i] == b[i]) ++i;
    return static_cast<int64_t>(i);
  }

  void place(std::shared_ptr<Request> r) {
    int best = -1;
    int64_t best_lcp = -1;
    for (int s = 0; s < static_cast<int>(slots.size()); ++s) {
      const SlotState& st = slots[static_cast<size_t>(s)];
      if (st.req) continue;
      const int64_t lcp = common_prefix(st.cached, r->req.prompt);
      if (lcp > best_lcp ||
          (lcp == best_lcp &&
           st.cached.size() < slots[static_cast<size_t>(best)].cached.size())) {
        best = s;
        best_lcp = lcp;
      }
    }
    DSV4_CHECK(best >= 0);  // busy < n_slots was checked under mu
    SlotState& st = slots[static_cast<size_t>(best)];
    const int64_t n_prompt = static_cast<int64_t>(r->req.prompt.size());
    const int64_t keep = std::min(best_lcp, n_prompt - 1);
    r->slot = best;
    r->sampler = std::make_unique<Sampler>(r->req.sampling);
    st.req = std::move(r);
    Request& q = *st.req;
    Status rs = engine.rewind(best, keep);
    if (!rs.is_ok()) {
      finish(best, FinishReason::kError, rs);
      return;
    }
    st.cached.resize(static_cast<size_t>(keep));
    q.n_cached = keep;
    q.prefill_pos = keep;
  }

  // ---------------------------------------------------------------------------------------
  // Work.

  void prefill_step(int s) {
    SlotState& st = slots[static_cast<size_t>(s)];
    Request& r = *st.req;
    const int64_t n_prompt = static_cast<int64_t>(r.req.prompt.size());
    const int64_t n = std::min(opts.n_batch, n_prompt - r.prefill_pos);
    std::span<const int32_t> chunk(r.req.prompt.data() + r.prefill_pos, static_cast<size_t>(n));
    const size_t nv = static_cast<size_t>(info.n_vocab);
    if (logits.size() < nv) logits.resize(nv);
    const auto t0 = Clock::now();
    Status ps = engine.prefill(s, chunk, std::span<float>(logits.data(), nv));
    r.prompt_ms += ms_since(t0, Clock::now());
    if (!ps.is_ok()) {
      finish(s, FinishReason::kError, ps);
      return;
    }
    st.cached.insert(st.cached.end(), chunk.begin(), chunk.end());
    r.prefill_pos += n;
    {
      std::lock_guard lk(mu);
      totals.prompt_tokens_total += n;
    }
    if (r.prefill_pos < n_prompt) return;
    r.generating = true;
    if (r.req.max_tokens == 0) {
      finish(s, FinishReason::kLength);
      return;
    }
    // Sampling the first token counts as prompt time (it is part of time to first token).
    const auto t1 = Clock::now();
    Result<Sampled> tok = r.sampler->sample(std::span<const float>(logits.data(), nv));
    r.prompt_ms += ms_since(t1, Clock::now());
    if (!tok.is_ok()) {
      finish(s, FinishReason::kError, tok.status());
      return;
    }
    emit_token(s, *tok);
  }

  // Decodes the listed slots (all generating) as one batch; on failure, one by one.
  void decode_batch(const std::vector<int>& ss) {
    const size_t nv = static_cast<size_t>(info.n_vocab);
    std::vector<int32_t> toks;
    toks.reserve(ss.size());
    for (int s : ss) toks.push_back(slots[static_cast<size_t>(s)].req->pending);
    if (logits.size() < nv * ss.size()) logits.resize(nv * ss.size());
    Status ds = engine.decode(std::span<const int>(ss), std::span<const int32_t>(toks),
                              std::span<float>(logits.data(), nv * ss.size()));
    if (ds.is_ok()) {
      for (size_t i = 0; i < ss.size(); ++i) {
        slots[static_cast<size_t>(ss[i])].cached.push_back(toks[i]);
      }
      for (size_t i = 0; i < ss.size(); ++i)
        sample_and_emit(ss[i], std::span<const float>(logits.data() + i * nv, nv));
      return;
    }
    if (ss.size() == 1) {
      finish(ss[0], FinishReason::kError, ds);
      return;
    }
    // Pin the failure on the slot(s) that fail alone.
    for (int s : ss) {
      SlotState& st = slots[static_cast<size_t>(s)];
      const int64_t np = engine.n_past(s);
      const int64_t want = static_cast<int64_t>(st.cached.size());
      if (np > want) {
        if (!engine.rewind(s, want).is_ok()) {
          finish(s, FinishReason::kError, ds);
          continue;
        }
      } else if (np < want) {
        finish(s, FinishReason::kError, ds);
        continue;
      }
      decode_batch(std::vector<int>{s});
    }
  }

  void step() {
    // Prefill: one chunk per prefilling slot.
    for (int s = 0; s < static_cast<int>(slots.size()); ++s) {
      process_cancels();
      SlotState& st = slots[static_cast<size_t>(s)];
      if (!st.req) continue;
      if (st.req->cancel) {
        finish(s, FinishReason::kCancelled);
        continue;
      }
      if (!st.req->generating) prefill_step(s);
    }
    // Decode: every generating slot in one batch. A slot that just finished its prompt joins
    // immediately with its first sampled token.
    process_cancels();
    reap_cancelled();
    std::vector<int> ss;
    for (int s = 0; s < static_cast<int>(slots.size()); ++s) {
      const SlotState& st = slots[static_cast<size_t>(s)];
      if (st.req && st.req->generating) ss.push_back(s);
    }
    if (!ss.empty()) decode_batch(ss);
  }

  void run() {
    for (;;) {
      std::vector<std::shared_ptr<Request>> admitted;
      {
        std::unique_lock lk(mu);
        cv.wait(lk, [&] {
          return stopping || cancel_flag.load() || busy > 0 ||
                 (!queue.empty() && busy < static_cast<int64_t>(slots.size()));
        });
        if (stopping) break;
      }
      process_cancels();
      {
        std::lock_guard lk(mu);
        while (!queue.empty() && busy < static_cast<int64_t>(slots.size())) {
          admitted.push_back(std::move(queue.front()));
          queue.pop_front();
          ++busy;
        }
      }
      for (auto& r : admitted) place(std::move(r));
      step();
    }
    shutdown();
  }

  void shutdown() {
    const Status err(ErrorCode::kUnavailable, "server shutting down");
    std::deque<std::shared_ptr<Request>> pending;
    {
      std::lock_guard lk(mu);
      pending.swap(queue);
    }
    for (auto& r : pending) finish_unslotted(*r, FinishReason::kError, err);
    for (int s = 0; s < static_cast<int>(slots.size()); ++s)
      if (slots[static_cast<size_t>(s)].req) finish(s, FinishReason::kError, err);
    std::lock_guard lk(mu);
    busy = 0;
    idle_cv.notify_all();
  }
};

// -------------------------------------------------------------------------------------------

Scheduler::Scheduler(Engine& engine, SchedulerOptions opts)
    : impl_(std::make_unique<Impl>(engine, opts)) {}

Scheduler::~Scheduler() {
  {
    std::lock_guard lk(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
}

Result<uint64_t> Scheduler::submit(GenRequest req, EventCallback cb) {
  Impl& m = *impl_;
  if (!cb) return Status(ErrorCode::kInvalidArgument, "request has no event callback");
  if (req.prompt.empty()) return Status(ErrorCode::kInvalidArgument, "prompt is empty");
  const int64_t n_prompt = static_cast<int64_t>(req.prompt.size());
  if (n_prompt >= m.info.n_ctx)
    return Status(ErrorCode::kInvalidArgument,
                  "prompt has " + std::to_string(n_prompt) +
                      " tokens; the context holds " + std::to_string(m.info.n_ctx) +
                      " (n_ctx), so the prompt must be shorter than that");
  for (size_t i = 0; i < req.prompt.size(); ++i) {
    const int32_t t = req.prompt[i];
    if (t < 0 || t >= m.info.n_vocab)
      return Status(ErrorCode::kInvalidArgument,
                    "prompt token " + std::to_string(i) + " has id " + std::to_string(t) +
                        ", outside the vocabulary [0, " + std::to_string(m.info.n_vocab) + ")");
  }
  DSV4_RETURN_IF_ERROR(validate(req.sampling));

  auto r = std::make_shared<Request>();
  r->req = std::move(req);
  r->cb = std::move(cb);
  {
    std::lock_guard lk(m.mu);
    if (m.stopping) return Status(ErrorCode::kUnavailable, "server shutting down");
    if (m.draining) return Status(ErrorCode::kUnavailable, "server is draining");
    const int64_t capacity =
        m.opts.max_queue + (static_cast<int64_t>(m.info.n_slots) - m.busy);
    if (static_cast<int64_t>(m.queue.size()) >= capacity)
      return Status(ErrorCode::kUnavailable,
                    "request queue is full (" + std::to_string(m.opts.max_queue) +
                        " waiting, all " + std::to_string(m.info.n_slots) + " slots busy)");
    r->id = m.next_id++;
    ++m.totals.requests_total;
    m.queue.push_back(r);
  }
  m.cv.notify_all();
  return r->id;
}

void Scheduler::cancel(uint64_t id) {
  Impl& m = *impl_;
  {
    std::lock_guard lk(m.mu);
    if (id == 0 || id >= m.next_id) return;
    m.cancel_ids.push_back(id);
    m.cancel_flag.store(true);
  }
  m.cv.notify_all();
}

SchedulerStats Scheduler::stats() const {
  const Impl& m = *impl_;
  std::lock_guard lk(m.mu);
  SchedulerStats s = m.totals;
  s.queue_depth = static_cast<int64_t>(m.queue.size());
  s.busy_slots = m.busy;
  s.requests_active = s.queue_depth + s.busy_slots;
  return s;
}

void Scheduler::drain() {
  Impl& m = *impl_;
  std::unique_lock lk(m.mu);
  m.draining = true;
  m.idle_cv.wait(lk, [&] { return m.stopping || (m.queue.empty() && m.busy == 0); });
}

}  // namespace dsv4::runtime
