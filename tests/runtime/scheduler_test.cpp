// Scheduler (src/runtime/scheduler.cpp) against the scripted test engine: outputs, batching,
// prefix reuse, limits, queue, cancellation, engine errors, drain and shutdown.
//
// Most tests use a script that hashes the slot's WHOLE token history, so a scheduler whose idea
// of a slot's cached tokens drifted from the engine's timeline produces different tokens. The
// expected output of a prompt is then computable without the scheduler (expected()).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "dsv4/runtime/scheduler.h"
#include "scripted_engine.h"

namespace dsv4::runtime {
namespace {

using dsv4::testing::ScriptedEngine;
using dsv4::testing::ScriptedEngineOptions;
using namespace std::chrono_literals;

constexpr auto kWait = 60s;  // generous: TSan builds are slow

// FNV-1a over the history, mapped to [1, n_vocab − 8): ids ≥ n_vocab − 8 and 0 are left free
// for markers, stop and poison tokens.
int32_t hist_hash(std::span<const int32_t> h, int64_t n_vocab) {
  uint64_t x = 1469598103934665603ull;
  for (int32_t t : h) x = (x ^ static_cast<uint64_t>(static_cast<uint32_t>(t))) * 1099511628211ull;
  x ^= x >> 29;
  return 1 + static_cast<int32_t>(x % static_cast<uint64_t>(n_vocab - 9));
}

ScriptedEngine::ScriptFn hash_script(int64_t n_vocab) {
  return [n_vocab](std::span<const int32_t> h) { return hist_hash(h, n_vocab); };
}

// The tokens the hash script produces after `prompt`.
std::vector<int32_t> expected(std::vector<int32_t> hist, int64_t n, int64_t n_vocab) {
  std::vector<int32_t> out;
  for (int64_t i = 0; i < n; ++i) {
    out.push_back(hist_hash(hist, n_vocab));
    hist.push_back(out.back());
  }
  return out;
}

GenRequest greq(std::vector<int32_t> prompt, int64_t max_tokens) {
  GenRequest r;
  r.prompt = std::move(prompt);
  r.max_tokens = max_tokens;
  r.sampling.temperature = 0.0f;
  return r;
}

// Collects one request's events (thread-safe).
struct Sink {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int32_t> tokens;
  std::vector<TokenEvent> events;
  int terminals = 0;
  bool event_after_terminal = false;
  TokenEvent last;
  int64_t stop_after = -1;  // callback returns false once this many tokens arrived

  EventCallback cb() {
    return [this](const TokenEvent& ev) {
      std::lock_guard lk(mu);
      if (terminals > 0) event_after_terminal = true;
      events.push_back(ev);
      if (ev.kind == TokenEvent::kToken) {
        tokens.push_back(ev.token.id);
      } else {
        ++terminals;
        last = ev;
        cv.notify_all();
      }
      return !(stop_after >= 0 && static_cast<int64_t>(tokens.size()) >= stop_after);
    };
  }
  bool wait() {
    std::unique_lock lk(mu);
    return cv.wait_for(lk, kWait, [&] { return terminals > 0; });
  }
  size_t n_tokens() {
    std::lock_guard lk(mu);
    return tokens.size();
  }
};

uint64_t submit_ok(Scheduler& s, GenRequest r, Sink& sink) {
  auto id = s.submit(std::move(r), sink.cb());
  EXPECT_TRUE(id.is_ok()) << id.status().to_string();
  return id.is_ok() ? *id : 0;
}

// Runs one request on a fresh engine and scheduler.
std::vector<int32_t> run_alone(ScriptedEngineOptions eo, GenRequest r) {
  ScriptedEngine e(eo);
  e.set_script_fn(hash_script(eo.n_vocab));
  Scheduler s(e, {});
  Sink sink;
  submit_ok(s, std::move(r), sink);
  EXPECT_TRUE(sink.wait());
  return sink.tokens;
}

void wait_idle(Scheduler& s) {
  const auto t0 = std::chrono::steady_clock::now();
  while (s.stats().requests_active != 0 && std::chrono::steady_clock::now() - t0 < kWait)
    std::this_thread::sleep_for(1ms);
}

// ---------------------------------------------------------------------------------------------

TEST(Scheduler, OneRequestEmitsTheScript) {
  ScriptedEngine e({.n_slots = 2, .n_vocab = 64, .n_ctx = 64});
  e.set_script({10, 11, 12, 13});
  Scheduler s(e, {});
  Sink sink;
  submit_ok(s, greq({1, 2, 3}, 4), sink);
  ASSERT_TRUE(sink.wait());
  EXPECT_EQ(sink.tokens, (std::vector<int32_t>{10, 11, 12, 13}));
  EXPECT_EQ(sink.terminals, 1);
  EXPECT_FALSE(sink.event_after_terminal);
  EXPECT_EQ(sink.last.kind, TokenEvent::kDone);
  EXPECT_EQ(sink.last.finish, FinishReason::kLength);
  EXPECT_EQ(sink.last.n_prompt, 3);
  EXPECT_EQ(sink.last.n_generated, 4);
  EXPECT_EQ(sink.last.n_cached, 0);
  EXPECT_STREQ(finish_reason_name(sink.last.finish), "length");
  // The events count up and carry the sampled log-probability (peak 30 vs 63 zeros).
  for (size_t i = 0; i + 1 < sink.events.size(); ++i) {
    EXPECT_EQ(sink.events[i].n_generated, static_cast<int64_t>(i + 1));
    EXPECT_NEAR(sink.events[i].token.logprob, 0.0f, 1e-9f);
  }
  // The slot's timeline holds the prompt and the generated tokens that were run.
  std::vector<int32_t> h0 = e.history(0), h1 = e.history(1);
  const auto& h = h0.empty() ? h1 : h0;
  EXPECT_EQ(h, (std::vector<int32_t>{1, 2, 3, 10, 11, 12}));
}

TEST(Scheduler, DefaultScriptGivesDifferentOutputsForDifferentPrompts) {
  ScriptedEngine e({.n_slots = 1, .n_vocab = 1000, .n_ctx = 64});
  Scheduler s(e, {});
  Sink a, b;
  submit_ok(s, greq({1, 2, 3}, 3), a);
  submit_ok(s, greq({1, 2, 4}, 3), b);
  ASSERT_TRUE(a.wait() && b.wait());
  const int32_t a1 = ScriptedEngine::default_next(3, 1000);
  EXPECT_EQ(a.tokens, (std::vector<int32_t>{a1, ScriptedEngine::default_next(a1, 1000),
                                            ScriptedEngine::default_next(
                                                ScriptedEngine::default_next(a1, 1000), 1000)}));
  EXPECT_NE(a.tokens, b.tokens);
}

TEST(Scheduler, EightConcurrentRequestsOnFourSlotsEqualRunningAlone) {
  const ScriptedEngineOptions eo{.n_slots = 4, .n_vocab = 512, .n_ctx = 256};
  std::vector<GenRequest> reqs;
  for (int i = 0; i < 8; ++i) {
    std::vector<int32_t> p;
    for (int j = 0; j < 3 + 5 * i; ++j) p.push_back((i * 31 + j * 7) % 500 + 1);
    reqs.push_back(greq(p, 20 + i));
  }
  std::vector<std::vector<int32_t>> alone;
  for (const auto& r : reqs) alone.push_back(run_alone(eo, r));

  ScriptedEngineOptions slow = eo;
  slow.decode_delay = 1ms;  // ≥ 20 ms per request: the four in the slots surely overlap
  ScriptedEngine e(slow);
  e.set_script_fn(hash_script(eo.n_vocab));
  Scheduler s(e, {.n_batch = 8, .max_queue = 64});
  std::vector<Sink> sinks(8);
  for (int i = 0; i < 8; ++i) submit_ok(s, reqs[static_cast<size_t>(i)], sinks[static_cast<size_t>(i)]);
  for (int i = 0; i < 8; ++i) {
    auto& k = sinks[static_cast<size_t>(i)];
    ASSERT_TRUE(k.wait());
    EXPECT_EQ(k.tokens, alone[static_cast<size_t>(i)]) << "request " << i;
    EXPECT_EQ(k.tokens, expected(reqs[static_cast<size_t>(i)].prompt, 20 + i, eo.n_vocab));
    EXPECT_EQ(k.last.finish, FinishReason::kLength);
  }
  const auto c = e.counters();
  EXPECT_EQ(c.max_decode_batch, 4) << "generating slots were not batched together";
  EXPECT_LE(c.max_prefill_chunk, 8);
  // Total decode work equals the sum over requests (n − 1 decodes each); batching means far
  // fewer calls than that.
  int64_t want_tokens = 0;
  for (int i = 0; i < 8; ++i) want_tokens += 20 + i - 1;
  EXPECT_EQ(c.decode_tokens, want_tokens);
  EXPECT_LT(c.decode_calls, want_tokens / 2);
  wait_idle(s);
  EXPECT_EQ(s.stats().busy_slots, 0);
}

TEST(Scheduler, PrefixReuseCountsCachedTokensAndMatchesColdRun) {
  const ScriptedEngineOptions eo{.n_slots = 1, .n_vocab = 300, .n_ctx = 128};
  ScriptedEngine e(eo);
  e.set_script_fn(hash_script(eo.n_vocab));
  Scheduler s(e, {.n_batch = 4, .max_queue = 8});
  std::vector<int32_t> p;
  for (int i = 0; i < 20; ++i) p.push_back(i + 1);

  Sink a;
  submit_ok(s, greq(p, 5), a);
  ASSERT_TRUE(a.wait());
  EXPECT_EQ(a.last.n_cached, 0);
  EXPECT_EQ(a.tokens, expected(p, 5, eo.n_vocab));

  // Follow-up turn: prompt + 4 of the generated tokens (the 5th was never run) + new tokens.
  std::vector<int32_t> p2 = p;
  p2.insert(p2.end(), a.tokens.begin(), a.tokens.begin() + 4);
  p2.push_back(250);
  p2.push_back(251);
  e.reset_counters();
  Sink b;
  submit_ok(s, greq(p2, 6), b);
  ASSERT_TRUE(b.wait());
  EXPECT_EQ(b.last.n_cached, 24);
  EXPECT_EQ(b.tokens, expected(p2, 6, eo.n_vocab));
  EXPECT_EQ(b.tokens, run_alone(eo, greq(p2, 6)));
  EXPECT_EQ(e.counters().prefill_tokens, 2);

  // The same prompt again: fully cached, so the last prompt token runs again (len − 1 reused).
  e.reset_counters();
  Sink c;
  submit_ok(s, greq(p2, 6), c);
  ASSERT_TRUE(c.wait());
  EXPECT_EQ(c.last.n_cached, static_cast<int64_t>(p2.size()) - 1);
  EXPECT_EQ(c.tokens, b.tokens);
  EXPECT_EQ(e.counters().prefill_tokens, 1);

  // A shorter prompt sharing 10 tokens: rewind to 10.
  std::vector<int32_t> p3(p.begin(), p.begin() + 10);
  p3.push_back(299);
  Sink d;
  submit_ok(s, greq(p3, 3), d);
  ASSERT_TRUE(d.wait());
  EXPECT_EQ(d.last.n_cached, 10);
  EXPECT_EQ(d.tokens, expected(p3, 3, eo.n_vocab));
}

TEST(Scheduler, SlotWithLongestCommonPrefixIsChosen) {
  const ScriptedEngineOptions eo{.n_slots = 3, .n_vocab = 300, .n_ctx = 128};
  ScriptedEngine e(eo);
  e.set_script_fn(hash_script(eo.n_vocab));
  Scheduler s(e, {});
  std::vector<std::vector<int32_t>> prompts = {{1, 2, 3, 4, 5, 6}, {7, 8, 9, 10, 11, 12},
                                               {13, 14, 15, 16, 17, 18}};
  // Fill the three slots one after the other (each alone).
  for (const auto& p : prompts) {
    Sink k;
    submit_ok(s, greq(p, 1), k);
    ASSERT_TRUE(k.wait());
  }
  for (int round = 0; round < 2; ++round) {
    for (size_t i = 0; i < prompts.size(); ++i) {
      std::vector<int32_t> q = prompts[i];
      q.push_back(100 + static_cast<int32_t>(i));
      Sink k;
      submit_ok(s, greq(q, 1), k);
      ASSERT_TRUE(k.wait());
      EXPECT_EQ(k.last.n_cached, 6) << "prompt " << i << " did not go to its slot";
      EXPECT_EQ(k.tokens, expected(q, 1, eo.n_vocab));
    }
  }
}

TEST(Scheduler, QueueFullIsUnavailable) {
  ScriptedEngine e({.n_slots = 1, .n_vocab = 64, .n_ctx = 100000, .decode_delay = 500us});
  Scheduler s(e, {.n_batch = 512, .max_queue = 2});
  Sink a, b, c, d;
  const uint64_t ia = submit_ok(s, greq({1}, -1), a);
  const uint64_t ib = submit_ok(s, greq({2}, -1), b);
  const uint64_t ic = submit_ok(s, greq({3}, -1), c);
  auto r = s.submit(greq({4}, -1), d.cb());
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kUnavailable);
  auto st = s.stats();
  EXPECT_EQ(st.requests_active, 3);
  EXPECT_EQ(st.requests_total, 3);
  for (uint64_t id : {ia, ib, ic}) s.cancel(id);
  ASSERT_TRUE(a.wait() && b.wait() && c.wait());
  for (Sink* k : {&a, &b, &c}) EXPECT_EQ(k->last.finish, FinishReason::kCancelled);
  EXPECT_EQ(d.terminals, 0);
  wait_idle(s);
  EXPECT_TRUE(s.submit(greq({4}, 1), d.cb()).is_ok());  // room again
  ASSERT_TRUE(d.wait());
}

TEST(Scheduler, SubmitRejectsBadRequests) {
  ScriptedEngine e({.n_slots = 1, .n_vocab = 64, .n_ctx = 64});
  Scheduler s(e, {});
  Sink k;
  auto r = s.submit(greq(std::vector<int32_t>(70, 1), 1), k.cb());
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("70"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("64"), std::string::npos) << r.status().message();
  EXPECT_FALSE(s.submit(greq(std::vector<int32_t>(64, 1), 1), k.cb()).is_ok());  // = n_ctx
  EXPECT_FALSE(s.submit(greq({}, 1), k.cb()).is_ok());
  auto bad_id = s.submit(greq({1, 64}, 1), k.cb());
  ASSERT_FALSE(bad_id.is_ok());
  EXPECT_NE(bad_id.status().message().find("64"), std::string::npos);
  EXPECT_FALSE(s.submit(greq({1, -1}, 1), k.cb()).is_ok());
  GenRequest bad_sampling = greq({1}, 1);
  bad_sampling.sampling.top_p = 0.0f;
  auto bs = s.submit(bad_sampling, k.cb());
  ASSERT_FALSE(bs.is_ok());
  EXPECT_NE(bs.status().message().find("top_p"), std::string::npos);
  EXPECT_FALSE(s.submit(greq({1}, 1), nullptr).is_ok());
  EXPECT_EQ(s.stats().requests_total, 0);
  // n_ctx − 1 prompt tokens: accepted, exactly one token fits.
  submit_ok(s, greq(std::vector<int32_t>(63, 1), -1), k);
  ASSERT_TRUE(k.wait());
  EXPECT_EQ(k.tokens.size(), 1u);
  EXPECT_EQ(k.last.finish, FinishReason::kLength);
}

TEST(Scheduler, MaxTokensStopTokensAndContextEnd) {
  ScriptedEngine e({.n_slots = 2, .n_vocab = 64, .n_ctx = 32});
  e.set_script({10, 11, 12, 13, 14});
  Scheduler s(e, {});
  {
    Sink k;  // stop token: emitted, then kStop
    GenRequest r = greq({1, 2}, 10);
    r.stop_tokens = {50, 12};
    submit_ok(s, r, k);
    ASSERT_TRUE(k.wait());
    EXPECT_EQ(k.tokens, (std::vector<int32_t>{10, 11, 12}));
    EXPECT_EQ(k.last.finish, FinishReason::kStop);
  }
  {
    Sink k;  // max_tokens
    submit_ok(s, greq({3}, 2), k);
    ASSERT_TRUE(k.wait());
    EXPECT_EQ(k.tokens, (std::vector<int32_t>{10, 11}));
    EXPECT_EQ(k.last.finish, FinishReason::kLength);
  }
  {
    Sink k;  // max_tokens 0: prompt only
    submit_ok(s, greq({4}, 0), k);
    ASSERT_TRUE(k.wait());
    EXPECT_TRUE(k.tokens.empty());
    EXPECT_EQ(k.last.finish, FinishReason::kLength);
  }
  {
    Sink k;  // no max_tokens: prompt + generated reaches n_ctx, never a context shift
    submit_ok(s, greq(std::vector<int32_t>(10, 5), -1), k);
    ASSERT_TRUE(k.wait());
    EXPECT_EQ(k.tokens.size(), 22u);
    EXPECT_EQ(k.last.finish, FinishReason::kLength);
    EXPECT_EQ(k.last.n_generated, 22);
    EXPECT_LE(std::max(e.n_past(0), e.n_past(1)), 32);
  }
}

TEST(Scheduler, CancelTakesEffectWithinAStep) {
  // 20 ms per decode step: the test thread may be descheduled a while without a false failure.
  ScriptedEngine e({.n_slots = 2, .n_vocab = 64, .n_ctx = 100000, .decode_delay = 20ms,
                    .prefill_token_delay = 1ms});
  Scheduler s(e, {.n_batch = 4, .max_queue = 8});
  // While generating.
  Sink g;
  const uint64_t ig = submit_ok(s, greq({1, 2}, -1), g);
  while (g.n_tokens() < 2) std::this_thread::sleep_for(1ms);
  const size_t at_cancel = g.n_tokens();
  s.cancel(ig);
  ASSERT_TRUE(g.wait());
  EXPECT_EQ(g.last.finish, FinishReason::kCancelled);
  EXPECT_LE(g.tokens.size(), at_cancel + 2);
  // While prefilling a long prompt (400 tokens at 1 ms each).
  e.reset_counters();
  Sink p;
  const uint64_t ip = submit_ok(s, greq(std::vector<int32_t>(400, 7), -1), p);
  std::this_thread::sleep_for(20ms);
  s.cancel(ip);
  ASSERT_TRUE(p.wait());
  EXPECT_EQ(p.last.finish, FinishReason::kCancelled);
  EXPECT_TRUE(p.tokens.empty());
  EXPECT_LT(e.counters().prefill_tokens, 200);
  // Unknown ids are ignored.
  s.cancel(0);
  s.cancel(123456);
  wait_idle(s);
  EXPECT_EQ(s.stats().busy_slots, 0);
}

TEST(Scheduler, CallbackReturningFalseCancels) {
  ScriptedEngine e({.n_slots = 1, .n_vocab = 64, .n_ctx = 1000});
  Scheduler s(e, {});
  Sink k;
  k.stop_after = 3;
  submit_ok(s, greq({1}, -1), k);
  ASSERT_TRUE(k.wait());
  EXPECT_EQ(k.tokens.size(), 3u);
  EXPECT_EQ(k.last.finish, FinishReason::kCancelled);
  EXPECT_STREQ(finish_reason_name(FinishReason::kCancelled), "cancelled");
}

TEST(Scheduler, CallbacksMaySubmitAndCancel) {
  ScriptedEngine e({.n_slots = 2, .n_vocab = 64, .n_ctx = 1000});
  Scheduler s(e, {});
  Sink inner;
  std::atomic<uint64_t> self{0};
  std::atomic<int> seen{0};
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  auto r = s.submit(greq({1}, -1), [&](const TokenEvent& ev) {
    if (ev.kind != TokenEvent::kToken) {
      std::lock_guard lk(mu);
      done = true;
      cv.notify_all();
      return true;
    }
    if (seen.fetch_add(1) == 1) {
      EXPECT_TRUE(s.submit(greq({2}, 2), inner.cb()).is_ok());
      s.cancel(self.load());
    }
    return true;
  });
  ASSERT_TRUE(r.is_ok());
  self = *r;
  std::unique_lock lk(mu);
  ASSERT_TRUE(cv.wait_for(lk, kWait, [&] { return done; }));
  lk.unlock();
  ASSERT_TRUE(inner.wait());
  EXPECT_EQ(inner.tokens.size(), 2u);
}

// 200 rounds of concurrent requests (shared prefixes, chunked prefill) cancelled from another
// thread at random times or by their callbacks. Every request gets exactly one terminal event;
// every token emitted, cancelled or not, is the one the script gives for the request's own
// history (so slot caches stayed in sync with the engine); no slot leaks.
TEST(Scheduler, RandomCancellationLeaksNothing) {
  const ScriptedEngineOptions eo{.n_slots = 4, .n_vocab = 256, .n_ctx = 256,
                                 .decode_delay = 40us, .prefill_token_delay = 2us};
  ScriptedEngine e(eo);
  e.set_script_fn(hash_script(eo.n_vocab));
  Scheduler s(e, {.n_batch = 8, .max_queue = 64});
  std::mt19937 rng(7);
  const std::vector<int32_t> base = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4};
  int n_cancelled = 0, n_finished = 0;
  for (int round = 0; round < 200; ++round) {
    const int k = 1 + static_cast<int>(rng() % 6);
    std::vector<std::unique_ptr<Sink>> sinks;
    std::vector<GenRequest> reqs;
    std::vector<uint64_t> ids;
    for (int i = 0; i < k; ++i) {
      std::vector<int32_t> p(base.begin(), base.begin() + 1 + rng() % base.size());
      const int extra = static_cast<int>(rng() % 30);
      for (int j = 0; j < extra; ++j) p.push_back(1 + static_cast<int32_t>(rng() % 200));
      reqs.push_back(greq(p, 1 + static_cast<int64_t>(rng() % 24)));
      sinks.push_back(std::make_unique<Sink>());
      if (rng() % 5 == 0) sinks.back()->stop_after = 1 + static_cast<int64_t>(rng() % 5);
      ids.push_back(submit_ok(s, reqs.back(), *sinks.back()));
    }
    std::vector<std::pair<int, uint64_t>> plan;  // delay µs, id
    for (uint64_t id : ids)
      if (rng() % 10 < 6) plan.push_back({static_cast<int>(rng() % 1500), id});
    std::sort(plan.begin(), plan.end());
    std::thread canceller([&s, plan] {
      int now = 0;
      for (auto [at, id] : plan) {
        std::this_thread::sleep_for(std::chrono::microseconds(at - now));
        now = at;
        s.cancel(id);
      }
    });
    for (int i = 0; i < k; ++i) {
      Sink& sk = *sinks[static_cast<size_t>(i)];
      ASSERT_TRUE(sk.wait()) << "round " << round << " request " << i << " never finished";
      std::lock_guard lk(sk.mu);
      EXPECT_EQ(sk.terminals, 1);
      EXPECT_FALSE(sk.event_after_terminal);
      EXPECT_EQ(sk.last.kind, TokenEvent::kDone) << sk.last.error.to_string();
      const auto& r = reqs[static_cast<size_t>(i)];
      const auto want = expected(r.prompt, r.max_tokens, eo.n_vocab);
      ASSERT_LE(sk.tokens.size(), want.size());
      EXPECT_TRUE(std::equal(sk.tokens.begin(), sk.tokens.end(), want.begin()))
          << "round " << round << " request " << i << ": wrong tokens";
      if (sk.last.finish == FinishReason::kCancelled) {
        ++n_cancelled;
      } else {
        EXPECT_EQ(sk.last.finish, FinishReason::kLength);
        EXPECT_EQ(sk.tokens, want);
        ++n_finished;
      }
    }
    canceller.join();
  }
  EXPECT_GT(n_cancelled, 50);
  EXPECT_GT(n_finished, 50);
  wait_idle(s);
  auto st = s.stats();
  EXPECT_EQ(st.busy_slots, 0);
  EXPECT_EQ(st.queue_depth, 0);
  EXPECT_EQ(st.requests_active, 0);

  // Every slot still usable: four overlapping requests take all four slots.
  e.reset_counters();
  e.set_decode_delay(1ms);
  std::vector<Sink> last(4);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < 4; ++i) {
    prompts.push_back({200, static_cast<int32_t>(i + 1), 9});
    submit_ok(s, greq(prompts.back(), 30), last[static_cast<size_t>(i)]);
  }
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(last[static_cast<size_t>(i)].wait());
    EXPECT_EQ(last[static_cast<size_t>(i)].tokens,
              expected(prompts[static_cast<size_t>(i)], 30, eo.n_vocab));
  }
  EXPECT_EQ(e.counters().max_decode_batch, 4);
}

TEST(Scheduler, EngineErrorFailsOnlyThatRequest) {
  const ScriptedEngineOptions eo{.n_slots = 4, .n_vocab = 128, .n_ctx = 256,
                                 .decode_delay = 200us};
  constexpr int32_t kPoison = 127, kMarker = 126;
  ScriptedEngine e(eo);
  // The hash script, except that a request whose prompt starts with kMarker emits the poison
  // token as its third token; feeding it back fails the (batched) decode.
  e.set_script_fn([](std::span<const int32_t> h) {
    if (h[0] == kMarker && h.size() == 7) return kPoison;
    return hist_hash(h, 128);
  });
  e.set_poison_token(kPoison);
  Scheduler s(e, {});
  Sink bad_prompt, bad_decode;
  std::vector<Sink> good(3);
  std::vector<std::vector<int32_t>> gp = {{1, 2, 3}, {4, 5, 6, 7}, {8, 9}};
  submit_ok(s, greq({kMarker, 1, 2, 3, 4}, 20), bad_decode);
  for (int i = 0; i < 3; ++i) submit_ok(s, greq(gp[static_cast<size_t>(i)], 20), good[static_cast<size_t>(i)]);
  submit_ok(s, greq({1, kPoison, 2}, 20), bad_prompt);

  ASSERT_TRUE(bad_prompt.wait());
  EXPECT_EQ(bad_prompt.last.kind, TokenEvent::kError);
  EXPECT_EQ(bad_prompt.last.finish, FinishReason::kError);
  EXPECT_NE(bad_prompt.last.error.message().find("poison"), std::string::npos);
  EXPECT_TRUE(bad_prompt.tokens.empty());

  ASSERT_TRUE(bad_decode.wait());
  EXPECT_EQ(bad_decode.last.kind, TokenEvent::kError);
  EXPECT_EQ(bad_decode.tokens.size(), 3u);  // the third was the poison, emitted before it ran
  for (int i = 0; i < 3; ++i) {
    auto& k = good[static_cast<size_t>(i)];
    ASSERT_TRUE(k.wait());
    EXPECT_EQ(k.last.kind, TokenEvent::kDone) << k.last.error.to_string();
    EXPECT_EQ(k.tokens, expected(gp[static_cast<size_t>(i)], 20, 128));
  }
  EXPECT_GT(e.counters().failed_calls, 0);

  // An injected failure on a lone request; the next request is served normally.
  wait_idle(s);
  e.fail_next_calls(1);
  Sink f, after;
  submit_ok(s, greq({10, 11}, 5), f);
  ASSERT_TRUE(f.wait());
  EXPECT_EQ(f.last.kind, TokenEvent::kError);
  submit_ok(s, greq({10, 11}, 5), after);
  ASSERT_TRUE(after.wait());
  EXPECT_EQ(after.last.kind, TokenEvent::kDone);
  EXPECT_EQ(after.tokens, expected({10, 11}, 5, 128));
  wait_idle(s);
  EXPECT_EQ(s.stats().busy_slots, 0);
}

TEST(Scheduler, DrainFinishesInFlightAndRefusesNewWork) {
  ScriptedEngine e({.n_slots = 2, .n_vocab = 64, .n_ctx = 1000, .decode_delay = 1ms});
  Scheduler s(e, {});
  std::vector<Sink> sinks(3);
  for (int i = 0; i < 3; ++i) submit_ok(s, greq({i + 1}, 10), sinks[static_cast<size_t>(i)]);
  s.drain();
  for (auto& k : sinks) {
    std::lock_guard lk(k.mu);
    EXPECT_EQ(k.terminals, 1);
    EXPECT_EQ(k.last.finish, FinishReason::kLength);
    EXPECT_EQ(k.tokens.size(), 10u);
  }
  Sink late;
  auto r = s.submit(greq({1}, 1), late.cb());
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kUnavailable);
  EXPECT_EQ(s.stats().requests_active, 0);
}

TEST(Scheduler, DestructorEndsPendingRequestsWithAnError) {
  ScriptedEngine e({.n_slots = 1, .n_vocab = 64, .n_ctx = 100000, .decode_delay = 1ms});
  std::vector<Sink> sinks(3);
  {
    Scheduler s(e, {});
    for (int i = 0; i < 3; ++i) submit_ok(s, greq({i + 1}, -1), sinks[static_cast<size_t>(i)]);
    while (sinks[0].n_tokens() < 2) std::this_thread::sleep_for(1ms);
  }
  for (auto& k : sinks) {
    std::lock_guard lk(k.mu);
    EXPECT_EQ(k.terminals, 1);
    EXPECT_EQ(k.last.kind, TokenEvent::kError);
    EXPECT_EQ(k.last.error.code(), ErrorCode::kUnavailable);
  }
}

TEST(Scheduler, StatsAndTimings) {
  ScriptedEngine e({.n_slots = 2, .n_vocab = 64, .n_ctx = 1000, .decode_delay = 200us,
                    .prefill_token_delay = 100us});
  Scheduler s(e, {});
  Sink a, b;
  submit_ok(s, greq(std::vector<int32_t>(20, 3), 5), a);
  ASSERT_TRUE(a.wait());
  submit_ok(s, greq(std::vector<int32_t>(30, 3), 5), b);  // shares 19 (capped) with a
  ASSERT_TRUE(b.wait());
  EXPECT_GE(a.last.prompt_ms, 1.5);  // 20 tokens × 100 µs
  EXPECT_GT(a.last.gen_ms, 0.5);     // 4 decodes × 200 µs
  double prev = -1;
  for (const auto& ev : a.events) {
    EXPECT_GE(ev.gen_ms, prev);
    prev = ev.gen_ms;
    EXPECT_EQ(ev.n_prompt, 20);
  }
  EXPECT_EQ(b.last.n_cached, 20);
  wait_idle(s);
  const auto st = s.stats();
  EXPECT_EQ(st.requests_total, 2);
  EXPECT_EQ(st.prompt_tokens_total, 20 + 10);
  EXPECT_EQ(st.gen_tokens_total, 10);
  EXPECT_GE(st.prompt_ms_total, a.last.prompt_ms);
  EXPECT_GT(st.gen_ms_total, 0);
  EXPECT_EQ(st.busy_slots, 0);
}

}  // namespace
}  // namespace dsv4::runtime
