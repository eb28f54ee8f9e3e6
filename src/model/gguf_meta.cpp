#include "dsv4/model/gguf_meta.h"

#include <string>
#include <vector>

namespace dsv4 {

void write_hparams(GgufWriter& w, const HParams& h) {
  auto u32 = [&](const char* k, int64_t v) {
    w.add_u32(std::string("deepseek4.") + k, static_cast<uint32_t>(v));
  };
  auto f32 = [&](const char* k, float v) { w.add_f32(std::string("deepseek4.") + k, v); };
  w.add_string("general.architecture", "deepseek4");
  u32("block_count", h.n_layer_all);
  u32("context_length", h.n_ctx_train);
  u32("embedding_length", h.n_embd);
  u32("embedding_length_out", h.n_embd * h.n_hc);
  u32("vocab_size", h.n_vocab);
  u32("feed_forward_length", h.n_ff_exp);
  u32("attention.head_count", h.n_head);
  u32("attention.head_count_kv", h.n_head_kv);
  u32("attention.key_length", h.head_dim);
  u32("attention.value_length", h.head_dim);
  u32("rope.dimension_count", h.n_rot);
  f32("rope.freq_base", h.rope_freq_base);
  w.add_string("deepseek4.rope.scaling.type", "yarn");
  f32("rope.scaling.factor", h.rope_yarn_factor);
  u32("rope.scaling.original_context_length", h.rope_yarn_orig_ctx);
  f32("rope.scaling.yarn_beta_fast", h.rope_yarn_beta_fast);
  f32("rope.scaling.yarn_beta_slow", h.rope_yarn_beta_slow);
  f32("attention.layer_norm_rms_epsilon", h.rms_eps);
  u32("attention.q_lora_rank", h.q_lora_rank);
  u32("attention.sliding_window", h.n_swa);
  u32("attention.output_group_count", h.o_groups);
  u32("attention.output_lora_rank", h.o_lora_rank);
  w.add_array_i32("deepseek4.attention.compress_ratios", h.compress_ratios);
  f32("attention.compress_rope_freq_base", h.compress_rope_freq_base);
  u32("attention.indexer.head_count", h.n_indexer_head);
  u32("attention.indexer.key_length", h.indexer_head_dim);
  u32("attention.indexer.top_k", h.indexer_top_k);
  u32("expert_count", h.n_expert);
  u32("expert_used_count", h.n_expert_used);
  u32("expert_shared_count", h.n_expert_shared);
  u32("expert_feed_forward_length", h.n_ff_exp);
  f32("expert_weights_scale", h.expert_weights_scale);
  w.add_bool("deepseek4.expert_weights_norm", h.expert_weights_norm);
  u32("expert_gating_func", 4);  // sqrtsoftplus; upstream refuses files without it
  u32("expert_group_count", 0);
  u32("expert_group_used_count", 0);
  const std::vector<float> clamp(h.swiglu_clamp_exp.begin(),
                                 h.swiglu_clamp_exp.begin() + h.n_layer_all);
  const std::vector<float> clamp_sh(h.swiglu_clamp_shexp.begin(),
                                    h.swiglu_clamp_shexp.begin() + h.n_layer_all);
  w.add_array_f32("deepseek4.swiglu_clamp_exp", clamp);
  w.add_array_f32("deepseek4.swiglu_clamp_shexp", clamp_sh);
  u32("hash_layer_count", h.n_hash_layers);
  u32("hyper_connection.count", h.n_hc);
  u32("hyper_connection.sinkhorn_iterations", h.hc_sinkhorn_iters);
  f32("hyper_connection.epsilon", h.hc_eps);
  if (h.n_nextn > 0) u32("nextn_predict_layers", h.n_nextn);
}

}  // namespace dsv4
