// The scripted test engine (tests/support/scripted_engine.h) keeps its promises: scripts,
// default continuation, exact rewind/n_past, limits, faults and counters.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <vector>

#include "scripted_engine.h"

namespace dsv4::testing {
namespace {

int32_t argmax(std::span<const float> l) {
  return static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
}

TEST(ScriptedEngine, FixedScriptAfterAnyPromptThenDefault) {
  ScriptedEngine e({.n_slots = 2, .n_vocab = 64, .n_ctx = 32});
  e.set_script({10, 11, 12});
  std::vector<float> lg(64);
  ASSERT_TRUE(e.prefill(0, std::vector<int32_t>{1, 2, 3}, lg).is_ok());
  EXPECT_EQ(argmax(lg), 10);
  EXPECT_EQ(lg[10], 30.0f);
  EXPECT_EQ(lg[0], 0.0f);
  std::vector<int> slots = {0};
  for (int32_t want : {11, 12}) {
    std::vector<int32_t> tok = {argmax(lg)};
    ASSERT_TRUE(e.decode(slots, tok, lg).is_ok());
    EXPECT_EQ(argmax(lg), want);
  }
  // Script exhausted: the default continuation of the last token (12).
  std::vector<int32_t> tok = {12};
  ASSERT_TRUE(e.decode(slots, tok, lg).is_ok());
  EXPECT_EQ(argmax(lg), ScriptedEngine::default_next(12, 64));
  EXPECT_EQ(e.n_past(0), 6);
  EXPECT_EQ(e.history(0), (std::vector<int32_t>{1, 2, 3, 10, 11, 12}));
}

TEST(ScriptedEngine, ChunkedPrefillStartsTheScriptAfterTheLastChunk) {
  ScriptedEngine e({.n_slots = 1, .n_vocab = 64, .n_ctx = 32});
  e.set_script({40, 41});
  std::vector<float> lg(64);
  ASSERT_TRUE(e.prefill(0, std::vector<int32_t>{1, 2}, lg).is_ok());
  ASSERT_TRUE(e.prefill(0, std::vector<int32_t>{3, 4}, lg).is_ok());
  EXPECT_EQ(argmax(lg), 40);
}

TEST(ScriptedEngine, QueuedScriptsGoToRequestsInOrder) {
  ScriptedEngine e({.n_slots = 2, .n_vocab = 64, .n_ctx = 32});
  e.set_script({5});
  e.queue_script({20, 21});
  e.queue_script({30});
  std::vector<float> lg(64);
  ASSERT_TRUE(e.rewind(1, 0).is_ok());
  ASSERT_TRUE(e.prefill(1, std::vector<int32_t>{1}, lg).is_ok());
  EXPECT_EQ(argmax(lg), 20);
  ASSERT_TRUE(e.prefill(0, std::vector<int32_t>{1}, lg).is_ok());
  EXPECT_EQ(argmax(lg), 30);
  std::vector<int> s1 = {1};
  std::vector<int32_t> t = {20};
  ASSERT_TRUE(e.decode(s1, t, lg).is_ok());
  EXPECT_EQ(argmax(lg), 21);
  // Next request on slot 1: queue empty → the all-slots script.
  ASSERT_TRUE(e.rewind(1, 1).is_ok());
  ASSERT_TRUE(e.prefill(1, std::vector<int32_t>{2}, lg).is_ok());
  EXPECT_EQ(argmax(lg), 5);
}

TEST(ScriptedEngine, ScriptFunctionSeesTheHistory) {
  ScriptedEngine e({.n_slots = 1, .n_vocab = 64, .n_ctx = 32});
  e.set_script_fn([](std::span<const int32_t> h) { return static_cast<int32_t>(h.size()); });
  std::vector<float> lg(64);
  ASSERT_TRUE(e.prefill(0, std::vector<int32_t>{9, 9, 9}, lg).is_ok());
  EXPECT_EQ(argmax(lg), 3);
  e.set_script_fn([](std::span<const int32_t>) { return -1; });  // defer to the default
  ASSERT_TRUE(e.rewind(0, 2).is_ok());
  ASSERT_TRUE(e.prefill(0, std::vector<int32_t>{7}, lg).is_ok());
  EXPECT_EQ(argmax(lg), ScriptedEngine::default_next(7, 64));
}

TEST(ScriptedEngine, DefaultDependsOnTheLastToken) {
  std::set<int32_t> outs;
  for (int32_t t = 0; t < 64; ++t) outs.insert(ScriptedEngine::default_next(t, 1000));
  EXPECT_GT(outs.size(), 55u);  // a hash, not a constant
}

TEST(ScriptedEngine, RewindIsExactAndLimitsHold) {
  ScriptedEngine e({.n_slots = 2, .n_vocab = 16, .n_ctx = 8});
  std::vector<float> lg(16);
  ASSERT_TRUE(e.prefill(0, std::vector<int32_t>{1, 2, 3, 4, 5}, lg).is_ok());
  EXPECT_FALSE(e.rewind(0, 6).is_ok());
  EXPECT_FALSE(e.rewind(0, -1).is_ok());
  ASSERT_TRUE(e.rewind(0, 2).is_ok());
  EXPECT_EQ(e.history(0), (std::vector<int32_t>{1, 2}));
  EXPECT_FALSE(e.prefill(0, std::vector<int32_t>(7, 1), lg).is_ok());  // 9 > n_ctx 8
  EXPECT_EQ(e.n_past(0), 2);
  EXPECT_FALSE(e.prefill(0, std::vector<int32_t>{16}, lg).is_ok());  // id ≥ n_vocab
  EXPECT_FALSE(e.prefill(2, std::vector<int32_t>{1}, lg).is_ok());   // bad slot
  std::vector<int> dup = {0, 0};
  std::vector<int32_t> toks = {1, 1};
  std::vector<float> lg2(32);
  EXPECT_FALSE(e.decode(dup, toks, lg2).is_ok());
  EXPECT_EQ(e.n_past(0), 2);
}

TEST(ScriptedEngine, FaultsLeaveTimelinesUnchangedAndCountersCount) {
  ScriptedEngine e({.n_slots = 2, .n_vocab = 16, .n_ctx = 16});
  std::vector<float> lg(32);
  ASSERT_TRUE(e.prefill(0, std::vector<int32_t>{1}, std::span<float>(lg).first(16)).is_ok());
  ASSERT_TRUE(e.prefill(1, std::vector<int32_t>{2}, std::span<float>(lg).first(16)).is_ok());
  e.set_poison_token(7);
  std::vector<int> both = {0, 1};
  std::vector<int32_t> toks = {3, 7};
  EXPECT_FALSE(e.decode(both, toks, lg).is_ok());
  EXPECT_EQ(e.n_past(0), 1);
  EXPECT_EQ(e.n_past(1), 1);
  toks = {3, 4};
  ASSERT_TRUE(e.decode(both, toks, lg).is_ok());
  e.fail_next_calls(1);
  EXPECT_FALSE(e.prefill(0, std::vector<int32_t>{1}, std::span<float>(lg).first(16)).is_ok());
  EXPECT_TRUE(e.prefill(0, std::vector<int32_t>{1}, std::span<float>(lg).first(16)).is_ok());
  const auto c = e.counters();
  EXPECT_EQ(c.decode_calls, 1);
  EXPECT_EQ(c.max_decode_batch, 2);
  EXPECT_EQ(c.decode_batch_sizes, (std::vector<int>{2}));
  EXPECT_EQ(c.prefill_calls, 3);
  EXPECT_EQ(c.prefill_tokens, 3);
  EXPECT_EQ(c.failed_calls, 2);
}

}  // namespace
}  // namespace dsv4::testing
