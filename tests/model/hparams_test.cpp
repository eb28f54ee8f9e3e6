// Hyperparameters and tensor-table validation (reliability.md G6, G10) on the reference fixture
// GGUFs and on mutations of them: each mutation must be rejected with a message naming the key
// or tensor at fault, before any tensor data is touched.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "dsv4/format/gguf.h"
#include "dsv4/format/gguf_writer.h"
#include "dsv4/model/hparams.h"
#include "dsv4/model/tensors.h"
#include "dsv4/model/vocab_meta.h"

namespace dsv4 {
namespace {

const std::string kTiny = std::string(DSV4_FIXTURES_DIR) + "/tiny/model.gguf";

GgufFile open_tiny() {
  auto f = GgufFile::open(kTiny);
  EXPECT_TRUE(f) << f.status().to_string();
  return std::move(f).value();
}

// Rebuilds the tiny fixture with a metadata edit and/or a tensor-table edit.
struct Mutation {
  std::function<bool(std::string_view key, GgufWriter& w)> kv;  // true: handled (skip copy)
  std::function<void(GgufWriter& w)> extra_kv;
  std::function<bool(const GgufTensorInfo& t, GgufWriter& w)> tensor;  // true: handled
};

std::vector<uint8_t> mutate(const GgufFile& f, const Mutation& m) {
  GgufWriter w;
  for (const auto& kv : f.metadata()) {
    if (m.kv && m.kv(kv.key, w)) continue;
    w.add_value(kv.key, kv.value);
  }
  if (m.extra_kv) m.extra_kv(w);
  for (const auto& t : f.tensors()) {
    if (m.tensor && m.tensor(t, w)) continue;
    w.add_tensor(t.name, t.type_id, std::span<const int64_t>(t.ne, t.n_dims), t.data);
  }
  return w.bytes();
}

// Parses, reads hparams and validates; returns "" when accepted, else the error message.
std::string check(const std::vector<uint8_t>& bytes) {
  auto f = GgufFile::parse(bytes);
  if (!f) return "parse: " + f.status().message();
  auto m = GgufModel::from_file(std::move(f).value());
  if (!m) return "model: " + m.status().message();
  auto h = hparams_from_gguf(*m);
  if (!h) return h.status().message();
  auto st = validate_tensors(*m, *h);
  return st ? "" : st.message();
}

Mutation set_u32(const std::string& key, uint32_t v) {
  Mutation m;
  m.kv = [key, v](std::string_view k, GgufWriter& w) {
    if (k != key) return false;
    w.add_u32(key, v);
    return true;
  };
  return m;
}

Mutation drop_key(const std::string& key) {
  Mutation m;
  m.kv = [key](std::string_view k, GgufWriter&) { return k == key; };
  return m;
}

TEST(HParams, FixturesValidate) {
  for (const char* cfg : {"tiny", "tiny-clamp", "tiny-quant", "tiny-pro"}) {
    auto f = GgufModel::open(std::string(DSV4_FIXTURES_DIR) + "/" + cfg + "/model.gguf");
    ASSERT_TRUE(f) << cfg << ": " << f.status().to_string();
    auto h = hparams_from_gguf(*f);
    ASSERT_TRUE(h) << cfg << ": " << h.status().to_string();
    std::vector<std::string> problems;
    EXPECT_TRUE(validate_tensors(*f, *h, &problems)) << cfg << ": " << problems.size() << " problems, first: "
                                                     << (problems.empty() ? "" : problems[0]);
  }
}

TEST(HParams, ReadsTinyValues) {
  auto h = hparams_from_gguf(*GgufModel::open(kTiny));
  ASSERT_TRUE(h) << h.status().to_string();
  EXPECT_EQ(h->n_hc, 4);
  EXPECT_EQ(h->head_dim, 192);
  EXPECT_EQ(h->n_rot, 64);
  EXPECT_EQ(h->n_layer + h->n_nextn, h->n_layer_all);
  EXPECT_GE(h->compress_ratios.size(), static_cast<size_t>(h->n_layer_all));
  EXPECT_EQ(h->swiglu_clamp_exp.size(), h->compress_ratios.size());
}

TEST(HParams, UnmodifiedCopyIsAccepted) {
  GgufFile f = open_tiny();
  EXPECT_EQ(check(mutate(f, Mutation{})), "");
}

// G6: one table-driven case per key and trap; the message must name the key.
TEST(HParams, G6SemanticTrapsNameTheKey) {
  GgufFile f = open_tiny();
  auto h = hparams_from_gguf(*GgufModel::open(kTiny));
  ASSERT_TRUE(h);
  struct Case {
    Mutation m;
    std::string key;
  };
  const uint32_t n_expert = static_cast<uint32_t>(h->n_expert);
  std::vector<Case> cases = {
      {set_u32("deepseek4.block_count", 0), "deepseek4.block_count"},
      {set_u32("deepseek4.attention.head_count", 0), "deepseek4.attention.head_count"},
      {set_u32("deepseek4.expert_count", 0), "deepseek4.expert_count"},
      {set_u32("deepseek4.vocab_size", 0), "deepseek4.vocab_size"},
      {set_u32("deepseek4.expert_used_count", n_expert + 1), "deepseek4.expert_used_count"},
      {set_u32("deepseek4.context_length", 0), "deepseek4.context_length"},
      {set_u32("deepseek4.attention.sliding_window", 1u << 31), "deepseek4.attention.sliding_window"},
      {set_u32("deepseek4.hyper_connection.count", 3), "deepseek4.hyper_connection.count"},
      {set_u32("deepseek4.expert_gating_func", 1), "deepseek4.expert_gating_func"},
      {set_u32("deepseek4.attention.output_group_count", 3), "deepseek4.attention.output_group_count"},
      {set_u32("deepseek4.attention.indexer.key_length", 96), "deepseek4.attention.indexer.key_length"},
      {drop_key("deepseek4.expert_gating_func"), "deepseek4.expert_gating_func"},
      {drop_key("deepseek4.attention.compress_ratios"), "deepseek4.attention.compress_ratios"},
  };
  {  // rope base NaN
    Mutation m;
    m.kv = [](std::string_view k, GgufWriter& w) {
      if (k != "deepseek4.attention.compress_rope_freq_base") return false;
      w.add_f32(k, std::numeric_limits<float>::quiet_NaN());
      return true;
    };
    cases.push_back({m, "deepseek4.attention.compress_rope_freq_base"});
  }
  {  // compress ratio 3, and a list shorter than block_count
    Mutation m;
    m.kv = [&](std::string_view k, GgufWriter& w) {
      if (k != "deepseek4.attention.compress_ratios") return false;
      std::vector<int32_t> r(h->compress_ratios.begin(), h->compress_ratios.end());
      r[1] = 3;
      w.add_array_i32(k, r);
      return true;
    };
    cases.push_back({m, "entry 1 = 3"});
    Mutation s;
    s.kv = [&](std::string_view k, GgufWriter& w) {
      if (k != "deepseek4.attention.compress_ratios") return false;
      std::vector<int32_t> r(h->compress_ratios.begin(), h->compress_ratios.begin() + 2);
      w.add_array_i32(k, r);
      return true;
    };
    cases.push_back({s, "deepseek4.attention.compress_ratios has 2 entries"});
  }
  {  // a count stored as a string
    Mutation m;
    m.kv = [](std::string_view k, GgufWriter& w) {
      if (k != "deepseek4.expert_count") return false;
      w.add_string(k, "256");
      return true;
    };
    cases.push_back({m, "deepseek4.expert_count must be an integer, got string"});
  }
  for (const auto& c : cases) {
    const std::string err = check(mutate(f, c.m));
    EXPECT_NE(err, "") << c.key << ": mutation accepted";
    EXPECT_NE(err.find(c.key), std::string::npos) << "want '" << c.key << "' in: " << err;
  }
}

// G10: wrong shapes, missing and unknown tensors, wrong types, expert_count off by one.
TEST(HParams, G10TensorTableTrapsNameTheTensor) {
  GgufFile f = open_tiny();
  auto h = hparams_from_gguf(*GgufModel::open(kTiny));
  ASSERT_TRUE(h);
  {  // swapped dims of a 2-D weight
    Mutation m;
    m.tensor = [](const GgufTensorInfo& t, GgufWriter& w) {
      if (t.name != "blk.1.attn_q_a.weight") return false;
      const int64_t ne[] = {t.ne[1], t.ne[0]};
      w.add_tensor(t.name, t.type_id, ne, t.data);
      return true;
    };
    const std::string err = check(mutate(f, m));
    EXPECT_NE(err.find("blk.1.attn_q_a.weight: shape {" + std::to_string(h->q_lora_rank)), std::string::npos)
        << err;
  }
  {  // a required tensor deleted
    Mutation m;
    m.tensor = [](const GgufTensorInfo& t, GgufWriter&) { return t.name == "blk.2.attn_kv.weight"; };
    EXPECT_NE(check(mutate(f, m)).find("blk.2.attn_kv.weight: required tensor is missing"), std::string::npos);
  }
  {  // an unknown extra tensor
    Mutation m;
    m.extra_kv = nullptr;
    m.tensor = [](const GgufTensorInfo& t, GgufWriter& w) {
      if (t.name != "output_norm.weight") return false;
      w.add_tensor(t.name, t.type_id, std::span<const int64_t>(t.ne, t.n_dims), t.data);
      w.add_tensor("blk.0.surprise.weight", t.type_id, std::span<const int64_t>(t.ne, t.n_dims), t.data);
      return true;
    };
    EXPECT_NE(check(mutate(f, m)).find("blk.0.surprise.weight: unknown tensor"), std::string::npos);
  }
  {  // a norm stored as i32
    Mutation m;
    m.tensor = [](const GgufTensorInfo& t, GgufWriter& w) {
      if (t.name != "output_norm.weight") return false;
      w.add_tensor(t.name, 26, std::span<const int64_t>(t.ne, t.n_dims), t.data);
      return true;
    };
    EXPECT_NE(check(mutate(f, m)).find("output_norm.weight: type i32 is not allowed"), std::string::npos);
  }
  {  // expert_count off by one: every expert tensor and router disagrees
    const std::string err = check(mutate(f, set_u32("deepseek4.expert_count", static_cast<uint32_t>(h->n_expert + 1))));
    EXPECT_NE(err.find("shape"), std::string::npos) << err;
    EXPECT_NE(err.find("more problems"), std::string::npos) << err;
  }
}

// G11: tokenizer metadata that does not fit the model is rejected, naming the key.
TEST(HParams, G11TokenizerMetadataTraps) {
  GgufFile f = open_tiny();
  auto check_vocab = [](const std::vector<uint8_t>& bytes) -> std::string {
    auto pf = GgufFile::parse(bytes);
    if (!pf) return "parse: " + pf.status().message();
    auto m = GgufModel::from_file(std::move(pf).value());
    auto h = hparams_from_gguf(*m);
    if (!h) return h.status().message();
    auto st = validate_vocab_metadata(*m, h->n_vocab);
    return st ? "" : st.message();
  };
  EXPECT_EQ(check_vocab(mutate(f, Mutation{})), "");
  auto tokens = *f.find("tokenizer.ggml.tokens")->as_string_array();
  auto merges = *f.find("tokenizer.ggml.merges")->as_string_array();
  auto edit_strings = [](const std::string& key, std::vector<std::string> v) {
    Mutation m;
    m.kv = [key, v](std::string_view k, GgufWriter& w) {
      if (k != key) return false;
      w.add_array_string(key, v);
      return true;
    };
    return m;
  };
  struct Case {
    Mutation m;
    std::string want;
  };
  std::vector<std::string> short_tokens(tokens.begin(), tokens.end() - 1);
  std::vector<std::string> bad_merges(merges.begin(), merges.end());
  bad_merges.push_back("zz_not_a_token qq_nor_this");
  std::vector<std::string> bad_utf8(tokens.begin(), tokens.end());
  bad_utf8[5] = "\xff";
  Mutation pre;
  pre.kv = [](std::string_view k, GgufWriter& w) {
    if (k != "tokenizer.ggml.pre") return false;
    w.add_string(k, "llama-bpe");
    return true;
  };
  const std::vector<Case> cases = {
      {edit_strings("tokenizer.ggml.tokens", short_tokens), "tokenizer.ggml.tokens has"},
      {edit_strings("tokenizer.ggml.merges", bad_merges), "names a token the vocabulary lacks"},
      {edit_strings("tokenizer.ggml.tokens", bad_utf8), "entry 5 is empty or not valid UTF-8"},
      {set_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(tokens.size())), "tokenizer.ggml.bos_token_id"},
      {drop_key("tokenizer.ggml.merges"), "tokenizer.ggml.merges"},
      {pre, "does not fall back"},
  };
  for (const auto& c : cases) {
    const std::string err = check_vocab(mutate(f, c.m));
    EXPECT_NE(err.find(c.want), std::string::npos) << "want '" << c.want << "' in: " << err;
  }
}

}  // namespace
}  // namespace dsv4
