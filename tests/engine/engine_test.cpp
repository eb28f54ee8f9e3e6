// ModelEngine (src/runtime/model_engine.cpp) on the tiny fixture model: the Engine contract of
// engine.h — prefill/decode/rewind semantics, bit-identical rewind and batching, errors that
// leave the slot usable.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "dsv4/runtime/model_engine.h"
#include "fixture_util.h"

namespace {

using dsv4::runtime::Engine;
using dsv4::runtime::ModelEngineOptions;
using namespace dsv4::test;

std::unique_ptr<Engine> make(int slots, int64_t interval, int64_t ubatch = 512) {
  ModelEngineOptions o;
  o.model_path = fx("tiny", "model.gguf");
  o.n_slots = slots;
  o.n_ctx = 1024;
  o.n_threads = 2;
  o.checkpoint_interval = interval;
  o.n_ubatch = ubatch;
  auto e = dsv4::runtime::make_model_engine(o);
  EXPECT_TRUE(e.is_ok()) << e.status().to_string();
  return e ? std::move(*e) : nullptr;
}

std::vector<float> greedy_run(Engine& e, int slot, const std::vector<int32_t>& prompt, int n,
                              std::vector<int32_t>* gen = nullptr) {
  const int64_t V = e.info().n_vocab;
  std::vector<float> logits(static_cast<size_t>(V)), all;
  EXPECT_TRUE(e.prefill(slot, prompt, logits).is_ok());
  all = logits;
  for (int i = 0; i < n; ++i) {
    const int32_t t = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    if (gen) gen->push_back(t);
    const int s = slot;
    EXPECT_TRUE(e.decode(std::span<const int>(&s, 1), std::span<const int32_t>(&t, 1), logits).is_ok());
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

TEST(ModelEngine, RewindIsBitIdentical) {
  auto e = make(1, 32, 40);
  ASSERT_TRUE(e);
  const auto toks = tokens_of(load_npy(fx("tiny", "tokens/main.npy")));
  std::vector<int32_t> prompt(toks.begin(), toks.begin() + 150);
  std::vector<int32_t> gen;
  const std::vector<float> cold = greedy_run(*e, 0, prompt, 20, &gen);
  EXPECT_EQ(e->n_past(0), 170);
  const int64_t V = e->info().n_vocab;
  // rewind to points inside the window, inside a compression block, at checkpoint boundaries
  for (int64_t n : {169, 160, 151, 150, 128, 100, 64, 33, 1}) {
    ASSERT_TRUE(e->rewind(0, n).is_ok());
    ASSERT_EQ(e->n_past(0), n);
    // re-run the rest of prompt + generated tokens one decode at a time from n
    std::vector<int32_t> all(prompt);
    all.insert(all.end(), gen.begin(), gen.end());
    std::vector<float> logits(static_cast<size_t>(V));
    for (int64_t p = n; p < 170; ++p) {
      const int s = 0;
      const int32_t t = all[static_cast<size_t>(p)];
      ASSERT_TRUE(e->decode(std::span<const int>(&s, 1), std::span<const int32_t>(&t, 1), logits).is_ok());
      if (p >= 149) {  // logits after token p = row p − 149 of cold
        EXPECT_EQ(std::memcmp(logits.data(), cold.data() + (p - 149) * V, static_cast<size_t>(V) * 4), 0)
            << "rewind to " << n << ", position " << p;
      }
    }
  }
}

TEST(ModelEngine, BatchedDecodeEqualsAlone) {
  auto e = make(3, 1024);
  ASSERT_TRUE(e);
  const auto toks = tokens_of(load_npy(fx("tiny", "tokens/main.npy")));
  std::vector<std::vector<int32_t>> prompts = {
      {toks.begin(), toks.begin() + 30}, {toks.begin() + 40, toks.begin() + 100}, {toks.begin() + 5, toks.begin() + 7}};
  std::vector<std::vector<float>> alone;
  std::vector<std::vector<int32_t>> gens(3);
  for (int i = 0; i < 3; ++i) {
    alone.push_back(greedy_run(*e, i, prompts[static_cast<size_t>(i)], 8, &gens[static_cast<size_t>(i)]));
    ASSERT_TRUE(e->rewind(i, 0).is_ok());
  }
  const int64_t V = e->info().n_vocab;
  std::vector<float> logits(static_cast<size_t>(3 * V));
  std::vector<std::vector<float>> got(3);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(e->prefill(i, prompts[static_cast<size_t>(i)], std::span<float>(logits.data(), static_cast<size_t>(V))).is_ok());
    got[static_cast<size_t>(i)].assign(logits.begin(), logits.begin() + V);
  }
  for (int k = 0; k < 8; ++k) {
    const int slots[3] = {2, 0, 1};  // any order
    int32_t t[3];
    for (int j = 0; j < 3; ++j) t[j] = gens[static_cast<size_t>(slots[j])][static_cast<size_t>(k)];
    ASSERT_TRUE(e->decode(slots, t, logits).is_ok());
    for (int j = 0; j < 3; ++j)
      got[static_cast<size_t>(slots[j])].insert(got[static_cast<size_t>(slots[j])].end(), logits.begin() + j * V,
                                               logits.begin() + (j + 1) * V);
  }
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_EQ(got[i].size(), alone[i].size());
    EXPECT_EQ(std::memcmp(got[i].data(), alone[i].data(), got[i].size() * 4), 0) << "slot " << i;
  }
}

TEST(ModelEngine, ErrorsLeaveTheSlotUsable) {
  auto e = make(1, 1024);
  ASSERT_TRUE(e);
  const int64_t V = e->info().n_vocab;
  std::vector<float> logits(static_cast<size_t>(V));
  const std::vector<int32_t> ok = {5, 6, 7};
  ASSERT_TRUE(e->prefill(0, ok, logits).is_ok());
  const std::vector<float> want = logits;
  ASSERT_TRUE(e->rewind(0, 0).is_ok());
  // bad token id, too long a prompt, bad slot, bad rewind: errors, state unchanged
  EXPECT_EQ(e->prefill(0, std::vector<int32_t>{1, static_cast<int32_t>(V)}, logits).code(),
            dsv4::ErrorCode::kInvalidArgument);
  EXPECT_EQ(e->prefill(0, std::vector<int32_t>(2000, 1), logits).code(), dsv4::ErrorCode::kInvalidArgument);
  EXPECT_EQ(e->prefill(3, ok, logits).code(), dsv4::ErrorCode::kInvalidArgument);
  EXPECT_EQ(e->rewind(0, 5).code(), dsv4::ErrorCode::kInvalidArgument);
  EXPECT_EQ(e->n_past(0), 0);
  ASSERT_TRUE(e->prefill(0, ok, logits).is_ok());
  EXPECT_EQ(std::memcmp(logits.data(), want.data(), want.size() * 4), 0);
}

TEST(ModelEngine, MissingFileNamesIt) {
  ModelEngineOptions o;
  o.model_path = "/nonexistent/model.gguf";
  auto e = dsv4::runtime::make_model_engine(o);
  ASSERT_FALSE(e.is_ok());
  EXPECT_NE(e.status().message().find("/nonexistent/model.gguf"), std::string::npos) << e.status().to_string();
}

}  // namespace
