// Model::load on an official safetensors directory vs on the `--keep-fp8` GGUF of the same
// checkpoint (issue 3, acceptance "Loading a fixture checkpoint from safetensors and from a
// --keep-fp8 GGUF yields identical weights"), and both through the forward pass.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <algorithm>
#include <cstdio>
#include <string>

#include "dsv4/backend/cpu/cpu_ops.h"
#include "dsv4/model/forward.h"
#include "dsv4/model/hf_convert.h"
#include "dsv4/model/model.h"
#include "fixture_util.h"

namespace {

using dsv4::model::Model;
using namespace dsv4::test;

TEST(ModelLoad, SafetensorsDirEqualsKeepFp8Gguf) {
  const std::string dir = std::string(DSV4_FIXTURES_DIR) + "/tiny-quant";
  auto from_dir = Model::load(dir);
  ASSERT_TRUE(from_dir.is_ok()) << from_dir.status().to_string();
  const std::string gguf = (std::filesystem::temp_directory_path() / "dsv4_model_load_keepfp8.gguf").string();
  dsv4::ConvertOptions co;
  co.keep_fp8 = true;
  co.include_mtp = true;  // as Model::load does for a directory
  ASSERT_TRUE(dsv4::convert_hf_to_gguf(dir, gguf, co).is_ok());
  auto from_file = Model::load(gguf);
  ASSERT_TRUE(from_file.is_ok()) << from_file.status().to_string();
  const auto& a = (*from_dir)->file();
  const auto& b = (*from_file)->file();
  ASSERT_EQ(a.tensors().size(), b.tensors().size());
  int n_native = 0;
  for (const dsv4::GgufTensorInfo* t : a.tensors()) {
    const dsv4::GgufTensorInfo* u = b.find_tensor(t->name);
    ASSERT_NE(u, nullptr) << t->name;
    EXPECT_EQ(t->type, u->type) << t->name;
    EXPECT_EQ(std::memcmp(t->ne, u->ne, sizeof t->ne), 0) << t->name;
    ASSERT_EQ(t->n_bytes, u->n_bytes) << t->name;
    EXPECT_EQ(std::memcmp(t->data.data(), u->data.data(), t->n_bytes), 0) << t->name;
    const std::string ty(t->type->name);
    if (ty == "mxfp4" || ty == "f8_e4m3_b128") ++n_native;
  }
  EXPECT_GT(n_native, 0) << "FP4/FP8 weights should stay in native block formats";
  // and the same logits through the forward pass
  auto ops = dsv4::backend::make_cpu_ops(1);
  const auto toks = tokens_of(load_npy(fx("tiny-quant", "tokens/short.npy")));
  std::vector<float> la, lb;
  for (auto* m : {from_dir->get(), from_file->get()}) {
    dsv4::model::Forward f(*m, *ops);
    dsv4::model::SequenceState st(*m, {});
    dsv4::model::SeqInput in{&st, toks, true};
    ASSERT_TRUE(f.run(std::span<const dsv4::model::SeqInput>(&in, 1), m == from_dir->get() ? la : lb).is_ok());
  }
  ASSERT_EQ(la.size(), lb.size());
  EXPECT_EQ(std::memcmp(la.data(), lb.data(), la.size() * 4), 0);
  std::filesystem::remove(gguf);
}

TEST(ModelLoad, BadDirectoryNamesTheProblem) {
  const std::string d = (std::filesystem::temp_directory_path() / "dsv4_empty_ckpt").string();
  std::filesystem::create_directories(d);
  auto m = Model::load(d);
  ASSERT_FALSE(m.is_ok());
  EXPECT_NE(m.status().message().find("config.json"), std::string::npos) << m.status().to_string();
  std::filesystem::remove_all(d);
}

}  // namespace

namespace {

// MTP (dsv4-architecture.md §10) against the official inference code's MTP logits
// (tests/fixtures/tiny/mtp_*.npy: official_stable variant, quantisation simulation as published).
// The MTP block is fed the official trunk states, so trunk rounding flips do not enter; our own
// trunk states are compared separately. Bound: NMSE ≤ 1e-6 at ≥ 99% of positions (the MTP block's
// own FP8 KV rounding can flip at a near tie, as in the trunk tests).
TEST(Mtp, OfficialLogitsFromOfficialTrunkStates) {
  auto m = Model::load(std::string(DSV4_FIXTURES_DIR) + "/tiny");
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  const Model& model = **m;
  ASSERT_NE(model.mtp(), nullptr) << "the safetensors directory holds mtp.0.*";
  const auto toks = tokens_of(load_npy(fx("tiny", "mtp_tokens.npy")));
  const dsv4::NpyArray X = load_npy(fx("tiny", "mtp_trunk_states.npy"));
  const dsv4::NpyArray ref = load_npy(fx("tiny", "mtp_logits.npy"));
  const int64_t T = X.shape[0], V = model.hparams().n_vocab;
  std::vector<float> xs(static_cast<size_t>(X.size()));
  for (int64_t i = 0; i < X.size(); ++i) xs[static_cast<size_t>(i)] = static_cast<float>(X.as_f64(i));
  std::vector<int32_t> next(toks.begin() + 1, toks.begin() + 1 + T);
  auto ops = dsv4::backend::make_cpu_ops(1);
  dsv4::model::Forward f(model, *ops);
  dsv4::model::SequenceState st(model, {});
  std::vector<float> logits;
  ASSERT_TRUE(f.run_mtp(st, xs, next, logits).is_ok());
  int64_t bad = 0;
  double worst = 0;
  for (int64_t p = 0; p < T; ++p) {
    const double e = nmse(logits.data() + p * V, ref, p);
    worst = std::max(worst, e);
    if (!(e <= 1e-6)) ++bad;
  }
  std::printf("[mtp] one call over %lld positions: max NMSE %.3e, %lld over 1e-6\n", static_cast<long long>(T),
              worst, static_cast<long long>(bad));
  EXPECT_LE(bad, T / 100);
  // one position per call (decode form): bit-identical to the one call
  dsv4::model::SequenceState st2(model, {});
  std::vector<float> one;
  const size_t row = static_cast<size_t>(model.hparams().n_hc * model.hparams().n_embd);
  for (int64_t p = 0; p < T; ++p) {
    ASSERT_TRUE(f.run_mtp(st2, std::span<const float>(xs.data() + static_cast<size_t>(p) * row, row),
                          std::span<const int32_t>(&next[static_cast<size_t>(p)], 1), one).is_ok());
    EXPECT_EQ(std::memcmp(one.data(), logits.data() + p * V, static_cast<size_t>(V) * 4), 0) << "position " << p;
  }
}

TEST(Mtp, OwnTrunkStatesThenMtp) {
  auto m = Model::load(std::string(DSV4_FIXTURES_DIR) + "/tiny");
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  const Model& model = **m;
  const auto toks = tokens_of(load_npy(fx("tiny", "mtp_tokens.npy")));
  const dsv4::NpyArray X = load_npy(fx("tiny", "mtp_trunk_states.npy"));
  const dsv4::NpyArray ref = load_npy(fx("tiny", "mtp_logits.npy"));
  const int64_t T = X.shape[0], V = model.hparams().n_vocab;
  auto ops = dsv4::backend::make_cpu_ops(1);
  dsv4::model::Forward f(model, *ops);
  dsv4::model::SequenceState st(model, {});
  std::vector<float> logits;
  dsv4::model::SeqInput in{&st, toks, true};
  ASSERT_TRUE(f.run(std::span<const dsv4::model::SeqInput>(&in, 1), logits).is_ok());
  const size_t row = static_cast<size_t>(model.hparams().n_hc * model.hparams().n_embd);
  std::vector<float> hid(f.hidden().begin(), f.hidden().begin() + static_cast<std::ptrdiff_t>(row * static_cast<size_t>(T)));
  int64_t state_bad = 0, bad = 0, untraced = 0;
  std::vector<int64_t> bad_state_pos;
  for (int64_t p = 0; p < T; ++p) {
    double num = 0, den = 0;
    for (size_t i = 0; i < row; ++i) {
      const double b = X.as_f64(p * static_cast<int64_t>(row) + static_cast<int64_t>(i));
      num += (hid[static_cast<size_t>(p) * row + i] - b) * (hid[static_cast<size_t>(p) * row + i] - b);
      den += b * b;
    }
    if (!(num / den <= 1e-6)) {
      ++state_bad;
      bad_state_pos.push_back(p);
    }
  }
  std::vector<int32_t> next(toks.begin() + 1, toks.begin() + 1 + T);
  ASSERT_TRUE(f.run_mtp(st, hid, next, logits).is_ok());
  // Our trunk states differ from the official ones by float noise (and by near-tie FP8/FP4 flips
  // at a few positions); inside the MTP block that noise can flip its own FP8 KV roundings, so
  // this end-to-end run is reported, with a loose guard (a real MTP bug gives ~1e-2 and up
  // everywhere; the strict check is the test above, fed the official states).
  const int64_t W = model.hparams().n_swa;
  double worst = 0;
  for (int64_t p = 0; p < T; ++p) {
    const double e = nmse(logits.data() + p * V, ref, p);
    worst = std::max(worst, e);
    if (!(e <= 1e-6)) {
      ++bad;
      const bool traced = std::any_of(bad_state_pos.begin(), bad_state_pos.end(),
                                      [&](int64_t q) { return q <= p && p - q < W; });
      if (!traced) ++untraced;
    }
  }
  // The trunk's own near-tie rounding flips (forward_test traces them against transformers'
  // recorded rows; the official code's rows are not recorded) propagate into some positions.
  std::printf("[mtp] own trunk: %lld of %lld trunk states over 1e-6; MTP logits: max NMSE %.3e, over 1e-6 at "
              "%lld positions (%lld without such a trunk state in the MTP window)\n",
              static_cast<long long>(state_bad), static_cast<long long>(T), worst, static_cast<long long>(bad),
              static_cast<long long>(untraced));
  EXPECT_LE(worst, 1e-3);
}

}  // namespace
