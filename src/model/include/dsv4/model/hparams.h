// dsv4 model: DeepSeek-V4 hyperparameters read from a GGUF file's deepseek4.* keys, checked
// against the family rules before anything is allocated.
//
// Keys and meanings: gguf-and-llama-cpp.md §2.3; values and rules: dsv4-architecture.md §2.
// Every size comes from the file (tiny test models run the same code as the real one). Errors
// name the key at fault: "deepseek4.expert_used_count = 9 exceeds deepseek4.expert_count = 8".
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dsv4/core/status.h"
#include "dsv4/format/gguf_model.h"

namespace dsv4 {

struct HParams {
  // trunk
  int64_t n_layer_all = 0;   // deepseek4.block_count: trunk + MTP blocks stored in the file
  int64_t n_layer = 0;       // trunk layers = n_layer_all - n_nextn
  int64_t n_embd = 0;        // hidden size D
  int64_t n_vocab = 0;
  int64_t n_ctx_train = 0;
  // attention
  int64_t n_head = 0;
  int64_t n_head_kv = 0;     // 1: one shared latent K = V
  int64_t head_dim = 0;      // key_length == value_length (512 in Flash)
  int64_t n_rot = 0;         // rope dims, the LAST n_rot channels of each head (64)
  int64_t q_lora_rank = 0;
  int64_t o_groups = 0;
  int64_t o_lora_rank = 0;
  int64_t n_swa = 0;         // sliding window
  std::vector<int32_t> compress_ratios;  // ≥ n_layer entries, each 0 (SWA), 4 (CSA), 128 (HCA)
  float rope_freq_base = 0;              // ratio-0 layers, no YaRN
  float compress_rope_freq_base = 0;     // ratio-4/128 layers, with YaRN
  float rope_yarn_factor = 1;
  int64_t rope_yarn_orig_ctx = 0;
  float rope_yarn_beta_fast = 32, rope_yarn_beta_slow = 1;
  float rms_eps = 0;
  // lightning indexer (CSA layers)
  int64_t n_indexer_head = 0;
  int64_t indexer_head_dim = 0;
  int64_t indexer_top_k = 0;
  // MoE
  int64_t n_expert = 0;
  int64_t n_expert_used = 0;
  int64_t n_expert_shared = 0;
  int64_t n_ff_exp = 0;
  float expert_weights_scale = 1;
  bool expert_weights_norm = true;
  int64_t n_hash_layers = 0;
  std::vector<float> swiglu_clamp_exp;    // one per layer (trunk + MTP entries of compress_ratios)
  std::vector<float> swiglu_clamp_shexp;  // defaults to swiglu_clamp_exp
  // hyper-connections
  int64_t n_hc = 0;
  int64_t hc_sinkhorn_iters = 0;
  float hc_eps = 0;
  // MTP blocks stored in this file: deepseek4.nextn_predict_layers, counted only when the first
  // of them is present (blk.{n_layer}.nextn.eh_proj.weight), as upstream llama.cpp does; else 0.
  int64_t n_nextn = 0;

  // Compression ratio of layer il (trunk or MTP index n_layer + k).
  int32_t ratio(int64_t il) const { return compress_ratios[static_cast<size_t>(il)]; }
};

// Reads and checks the hyperparameters. Errors: kNotFound (a required key is missing),
// kInvalidFile (wrong type or a value outside the family's rules), kUnsupported (another
// architecture). Never aborts on any file.
Result<HParams> hparams_from_gguf(const GgufModel& f);

// "SWA", "CSA", "HCA" for a compression ratio.
const char* layer_kind_name(int32_t ratio);

}  // namespace dsv4
