// Each reference fixture GGUF (tests/fixtures/<config>/model.gguf, written by
// scripts/reference/) is read by our GGUF reader and its deepseek4.* metadata is checked against
// the Hugging Face config.json it was generated from (key mapping: gguf-and-llama-cpp.md §2.3).
// Float values are stored as f32 in GGUF, so they are compared at f32 precision (relative 1e-7).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dsv4/format/gguf.h"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Configs the foundation issue requires; each must exist (a missing fixture fails the test).
const std::vector<std::string> kConfigs = {DSV4_FIXTURE_CONFIGS};

struct Fixture {
  json config;
  GgufFile gguf;
};

Fixture load(const std::string& name) {
  const fs::path dir = fs::path(DSV4_FIXTURES_DIR) / name;
  std::ifstream in(dir / "config.json");
  EXPECT_TRUE(in.good()) << "missing " << (dir / "config.json");
  json cfg = json::parse(in, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(cfg.is_discarded()) << "config.json of " << name << " is not valid JSON";
  auto g = GgufFile::open((dir / "model.gguf").string());
  EXPECT_TRUE(g) << g.status().to_string();
  if (!g) return {cfg, GgufFile{}};
  return {cfg, std::move(g).value()};
}

// HF config keys (dsv4-architecture.md §2.1) and the deepseek4.* GGUF key that carries each.
struct IntKey {
  const char* gguf;
  const char* hf;
};
const IntKey kIntKeys[] = {
    {"block_count", "num_hidden_layers"},
    {"embedding_length", "hidden_size"},
    {"vocab_size", "vocab_size"},
    {"context_length", "max_position_embeddings"},
    {"attention.head_count", "num_attention_heads"},
    {"attention.head_count_kv", "num_key_value_heads"},
    {"attention.key_length", "head_dim"},
    {"attention.value_length", "head_dim"},
    {"rope.dimension_count", "qk_rope_head_dim"},
    {"attention.q_lora_rank", "q_lora_rank"},
    {"attention.sliding_window", "sliding_window"},
    {"attention.output_group_count", "o_groups"},
    {"attention.output_lora_rank", "o_lora_rank"},
    {"attention.indexer.head_count", "index_n_heads"},
    {"attention.indexer.key_length", "index_head_dim"},
    {"attention.indexer.top_k", "index_topk"},
    {"expert_count", "n_routed_experts"},
    {"expert_used_count", "num_experts_per_tok"},
    {"expert_feed_forward_length", "moe_intermediate_size"},
    {"expert_shared_count", "n_shared_experts"},
    {"hash_layer_count", "num_hash_layers"},
    {"hyper_connection.count", "hc_mult"},
    {"hyper_connection.sinkhorn_iterations", "hc_sinkhorn_iters"},
};
const IntKey kFloatKeys[] = {
    {"rope.freq_base", "rope_theta"},
    {"attention.compress_rope_freq_base", "compress_rope_theta"},
    {"attention.layer_norm_rms_epsilon", "rms_norm_eps"},
    {"expert_weights_scale", "routed_scaling_factor"},
    {"hyper_connection.epsilon", "hc_eps"},
};

void expect_f32_equal(double gguf, double hf, const std::string& what) {
  const double want = static_cast<double>(static_cast<float>(hf));
  EXPECT_LE(std::fabs(gguf - want), 1e-7 * std::fabs(want)) << what << ": gguf " << gguf << " hf " << hf;
}

class FixtureGguf : public testing::TestWithParam<std::string> {};

TEST_P(FixtureGguf, MetadataMatchesHfConfig) {
  Fixture fx = load(GetParam());
  const json& c = fx.config;
  const GgufFile& g = fx.gguf;
  ASSERT_EQ(*g.get_string("general.architecture"), "deepseek4");
  for (const auto& k : kIntKeys) {
    const std::string key = std::string("deepseek4.") + k.gguf;
    ASSERT_TRUE(c.contains(k.hf)) << GetParam() << ": config.json lacks " << k.hf;
    auto v = g.get_u64(key);
    ASSERT_TRUE(v) << GetParam() << ": " << v.status().to_string();
    EXPECT_EQ(*v, c[k.hf].get<uint64_t>()) << GetParam() << ": " << key << " vs " << k.hf;
  }
  for (const auto& k : kFloatKeys) {
    const std::string key = std::string("deepseek4.") + k.gguf;
    ASSERT_TRUE(c.contains(k.hf)) << GetParam() << ": config.json lacks " << k.hf;
    auto v = g.get_f64(key);
    ASSERT_TRUE(v) << GetParam() << ": " << v.status().to_string();
    expect_f32_equal(*v, c[k.hf].get<double>(), GetParam() + ": " + key);
  }

  // compress_ratios: the whole list, trunk + MTP entries (upstream requires length ≥ block_count).
  const GgufValue* ratios = g.find("deepseek4.attention.compress_ratios");
  ASSERT_NE(ratios, nullptr);
  auto r = ratios->as_i64_array();
  ASSERT_TRUE(r) << ratios->type_string();
  EXPECT_EQ(*r, c["compress_ratios"].get<std::vector<int64_t>>());
  EXPECT_GE(r->size(), c["num_hidden_layers"].get<size_t>());

  // Router: sqrtsoftplus is gating func 4 (upstream throws without it); top-k renormalised.
  EXPECT_EQ(c["scoring_func"], "sqrtsoftplus");
  EXPECT_EQ(*g.get_u64("deepseek4.expert_gating_func"), 4u);
  ASSERT_NE(g.find("deepseek4.expert_weights_norm"), nullptr);
  EXPECT_EQ(*g.find("deepseek4.expert_weights_norm")->as_bool(), c["norm_topk_prob"].get<bool>());

  // SwiGLU clamp: a scalar or one value per layer, all equal to swiglu_limit.
  const GgufValue* clamp = g.find("deepseek4.swiglu_clamp_exp");
  ASSERT_NE(clamp, nullptr);
  std::vector<double> cl;
  if (auto a = clamp->as_f64_array()) cl = *a;
  else if (auto s = clamp->as_f64()) cl = {*s};
  ASSERT_FALSE(cl.empty()) << clamp->type_string();
  for (double v : cl) expect_f32_equal(v, c["swiglu_limit"].get<double>(), "swiglu_clamp_exp");
}

TEST_P(FixtureGguf, TensorShapesFollowTheConfig) {
  Fixture fx = load(GetParam());
  const json& c = fx.config;
  const GgufFile& g = fx.gguf;
  const int64_t n_embd = c["hidden_size"], n_vocab = c["vocab_size"], hc = c["hc_mult"];
  const GgufTensorInfo* emb = g.find_tensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->ne[0], n_embd);
  EXPECT_EQ(emb->ne[1], n_vocab);
  const GgufTensorInfo* out = g.find_tensor("output.weight");
  ASSERT_NE(out, nullptr);
  EXPECT_EQ(out->ne[1], n_vocab);
  const GgufTensorInfo* hc_fn = g.find_tensor("output_hc_fn.weight");
  ASSERT_NE(hc_fn, nullptr);
  EXPECT_EQ(hc_fn->ne[0], hc * n_embd);
  EXPECT_EQ(hc_fn->ne[1], hc);
  const auto ratios = c["compress_ratios"].get<std::vector<int64_t>>();
  const int64_t n_layer = c["num_hidden_layers"];
  for (int64_t il = 0; il < n_layer; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    EXPECT_NE(g.find_tensor(p + "attn_q_a.weight"), nullptr) << p;
    EXPECT_EQ(g.find_tensor(p + "attn_compressor_kv.weight") != nullptr, ratios[il] != 0) << p;
    EXPECT_EQ(g.find_tensor(p + "indexer.attn_q_b.weight") != nullptr, ratios[il] == 4) << p;
    EXPECT_EQ(g.find_tensor(p + "ffn_gate_tid2eid.weight") != nullptr,
              il < c["num_hash_layers"].get<int64_t>())
        << p;
    const GgufTensorInfo* gate = g.find_tensor(p + "ffn_gate_exps.weight");
    ASSERT_NE(gate, nullptr) << p;
    EXPECT_EQ(gate->ne[0], n_embd);
    EXPECT_EQ(gate->ne[1], c["moe_intermediate_size"].get<int64_t>());
    EXPECT_EQ(gate->ne[2], c["n_routed_experts"].get<int64_t>());
  }
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FixtureGguf, testing::ValuesIn(kConfigs),
                         [](const testing::TestParamInfo<std::string>& i) {
                           std::string n = i.param;
                           for (char& ch : n) {
                             if (ch == '-') ch = '_';
                           }
                           return n;
                         });

}  // namespace
}  // namespace dsv4
