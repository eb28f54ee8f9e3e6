// The scheduler over the real ModelEngine on the tiny fixture model (issue 6, "Isolation"):
// 8 concurrent greedy requests on 4 slots each equal to running alone; a request reusing a
// cached prefix equal to its cold run (prefixes diverging inside the window and inside a
// compression block); the reference's greedy continuations of the fixture prompts through the
// whole stack; 200 rounds of random cancellation leaving no busy slot (also run under TSan).
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "dsv4/runtime/model_engine.h"
#include "dsv4/runtime/scheduler.h"
#include "fixture_util.h"

namespace {

using namespace dsv4::runtime;
using namespace dsv4::test;
using namespace std::chrono_literals;

std::unique_ptr<Engine> make_engine(int slots, bool numerics = true) {
  ModelEngineOptions o;
  o.model_path = fx("tiny", "model.gguf");
  o.n_slots = slots;
  o.n_ctx = 512;
  o.n_threads = 2;
  o.checkpoint_interval = 64;
  o.official_numerics = numerics;
  auto e = make_model_engine(o);
  EXPECT_TRUE(e.is_ok()) << e.status().to_string();
  return e ? std::move(*e) : nullptr;
}

struct Result1 {
  std::vector<int32_t> tokens;
  FinishReason finish = FinishReason::kNone;
  int64_t n_cached = -1;
  bool done = false;
};

// Submits and waits.
Result1 run(Scheduler& s, std::vector<int32_t> prompt, int64_t max_tokens) {
  std::mutex mu;
  std::condition_variable cv;
  Result1 r;
  GenRequest g;
  g.prompt = std::move(prompt);
  g.max_tokens = max_tokens;
  g.sampling.temperature = 0;
  auto id = s.submit(std::move(g), [&](const TokenEvent& e) {
    std::lock_guard<std::mutex> lk(mu);
    if (e.kind == TokenEvent::kToken) r.tokens.push_back(e.token.id);
    if (e.kind != TokenEvent::kToken) {
      r.finish = e.finish;
      r.n_cached = e.n_cached;
      r.done = true;
      cv.notify_all();
    }
    return true;
  });
  EXPECT_TRUE(id.is_ok()) << id.status().to_string();
  std::unique_lock<std::mutex> lk(mu);
  cv.wait_for(lk, 120s, [&] { return r.done; });
  EXPECT_TRUE(r.done);
  return r;
}

TEST(SchedulerModel, FixtureGreedyContinuations) {
  auto e = make_engine(1, /*numerics=*/false);
  ASSERT_TRUE(e);
  Scheduler s(*e, {});
  for (int k = 0; k < 3; ++k) {
    const std::string pr = fx("tiny", "tokens/prompt" + std::to_string(k) + ".npy");
    if (!std::filesystem::exists(pr)) continue;
    const auto want = tokens_of(load_npy(fx("tiny", "simoff/greedy" + std::to_string(k) + ".npy")));
    const Result1 r = run(s, tokens_of(load_npy(pr)), static_cast<int64_t>(want.size()));
    EXPECT_EQ(r.tokens, want) << "prompt" << k;
  }
}

TEST(SchedulerModel, ConcurrentEqualsAlone) {
  const auto toks = tokens_of(load_npy(fx("tiny", "tokens/main.npy")));
  std::vector<std::vector<int32_t>> prompts;
  for (int k = 0; k < 8; ++k) prompts.emplace_back(toks.begin() + 7 * k, toks.begin() + 7 * k + 5 + 9 * k);
  std::vector<std::vector<int32_t>> alone;
  {
    auto e = make_engine(1);
    ASSERT_TRUE(e);
    Scheduler s(*e, {});
    for (auto& p : prompts) alone.push_back(run(s, p, 12).tokens);
  }
  auto e = make_engine(4);
  ASSERT_TRUE(e);
  SchedulerOptions so;
  so.n_batch = 8;  // small chunks: prefills interleave with decodes
  Scheduler s(*e, so);
  std::vector<Result1> got(prompts.size());
  std::vector<std::thread> th;
  for (size_t i = 0; i < prompts.size(); ++i) th.emplace_back([&, i] { got[i] = run(s, prompts[i], 12); });
  for (auto& t : th) t.join();
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(got[i].tokens, alone[i]) << "request " << i;
}

TEST(SchedulerModel, PrefixReuseEqualsColdRun) {
  const auto toks = tokens_of(load_npy(fx("tiny", "tokens/main.npy")));
  const std::vector<int32_t> base(toks.begin(), toks.begin() + 150);
  // diverging inside the raw window (the window is 16), inside a CSA block (4) and an HCA
  // block (128), and a full extension
  std::vector<std::vector<int32_t>> variants;
  for (size_t cut : {size_t{149}, size_t{141}, size_t{130}, size_t{150}}) {
    std::vector<int32_t> v(base.begin(), base.begin() + static_cast<std::ptrdiff_t>(cut));
    v.push_back(static_cast<int32_t>(300 + cut % 7));
    v.push_back(11);
    variants.push_back(v);
  }
  auto e = make_engine(1);
  ASSERT_TRUE(e);
  Scheduler s(*e, {});
  for (const auto& v : variants) {
    (void)run(s, base, 4);                 // warm the slot with the base prompt
    const Result1 warm = run(s, v, 10);    // reuses the cached prefix
    EXPECT_GT(warm.n_cached, 0);
    auto cold_engine = make_engine(1);
    Scheduler cold(*cold_engine, {});
    const Result1 c = run(cold, v, 10);
    EXPECT_EQ(warm.tokens, c.tokens) << "variant of length " << v.size();
  }
}

TEST(SchedulerModel, RandomCancellationLeavesNoBusySlot) {
  auto e = make_engine(2);
  ASSERT_TRUE(e);
  SchedulerOptions so;
  so.n_batch = 8;
  Scheduler s(*e, so);
  const auto toks = tokens_of(load_npy(fx("tiny", "tokens/main.npy")));
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    GenRequest g;
    const size_t len = 1 + rng() % 40;
    g.prompt.assign(toks.begin(), toks.begin() + static_cast<std::ptrdiff_t>(len));
    g.max_tokens = 1 + rng() % 6;
    g.sampling.temperature = 0;
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    auto id = s.submit(std::move(g), [&](const TokenEvent& ev) {
      if (ev.kind != TokenEvent::kToken) {
        std::lock_guard<std::mutex> lk(mu);
        done = true;
        cv.notify_all();
      }
      return true;
    });
    ASSERT_TRUE(id.is_ok());
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
    s.cancel(*id);
    std::unique_lock<std::mutex> lk(mu);
    ASSERT_TRUE(cv.wait_for(lk, 60s, [&] { return done; })) << "round " << round;
  }
  // every slot free, and the engine still answers correctly
  for (int i = 0; i < 50 && s.stats().busy_slots != 0; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_EQ(s.stats().busy_slots, 0);
  EXPECT_EQ(s.stats().queue_depth, 0);
  auto fresh = make_engine(1);
  Scheduler s2(*fresh, {});
  const std::vector<int32_t> p(toks.begin(), toks.begin() + 20);
  EXPECT_EQ(run(s, p, 8).tokens, run(s2, p, 8).tokens);
}

}  // namespace
