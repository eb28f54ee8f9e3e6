#include "dsv4/model/hparams.h"

#include <cmath>
#include <limits>

namespace dsv4 {
namespace {

constexpr const char* kPrefix = "deepseek4.";

std::string key_of(const char* k) { return std::string(kPrefix) + k; }

Status bad(const std::string& key, const std::string& why) {
  return Status(ErrorCode::kInvalidFile, key + " " + why);
}

// Reads one deepseek4.* key into the HParams under construction, collecting the first error.
class Reader {
 public:
  explicit Reader(const GgufModel& f) : f_(f) {}

  // The value of `key`, or nullptr when an earlier error stands or the key is absent (an error if
  // `required`).
  const GgufValue* lookup(const std::string& key, bool required) {
    if (!st_.is_ok()) return nullptr;
    const GgufValue* v = f_.find(key);
    if (v == nullptr && required) st_ = Status(ErrorCode::kNotFound, "missing metadata key '" + key + "'");
    return v;
  }

  // Positive integer in [lo, hi]; missing → error if required, else keeps `out`.
  void count(const char* k, int64_t& out, int64_t lo, int64_t hi, bool required = true) {
    const std::string key = key_of(k);
    const GgufValue* v = lookup(key, required);
    if (v == nullptr) return;
    auto u = v->as_u64();
    if (!u) {
      st_ = bad(key, "must be an integer, got " + v->type_string());
      return;
    }
    if (*u < static_cast<uint64_t>(lo) || *u > static_cast<uint64_t>(hi)) {
      st_ = bad(key, "= " + std::to_string(*u) + " is outside [" + std::to_string(lo) + ", " +
                         std::to_string(hi) + "]");
      return;
    }
    out = static_cast<int64_t>(*u);
  }

  // Finite float in (lo, hi]; missing → error if required.
  void real(const char* k, float& out, double lo, double hi, bool required = true) {
    const std::string key = key_of(k);
    const GgufValue* v = lookup(key, required);
    if (v == nullptr) return;
    auto d = v->as_f64();
    if (!d) {
      st_ = bad(key, "must be a float, got " + v->type_string());
      return;
    }
    if (!std::isfinite(*d) || *d <= lo || *d > hi) {
      st_ = bad(key, "= " + std::to_string(*d) + " is outside (" + std::to_string(lo) + ", " +
                         std::to_string(hi) + "]");
      return;
    }
    out = static_cast<float>(*d);
  }

  void boolean(const char* k, bool& out) {
    const std::string key = key_of(k);
    const GgufValue* v = lookup(key, /*required=*/false);
    if (v == nullptr) return;
    auto b = v->as_bool();
    if (!b) {
      st_ = bad(key, "must be a bool, got " + v->type_string());
      return;
    }
    out = *b;
  }

  // A float given either as a scalar or as an array (one per layer), expanded to n entries.
  void per_layer(const char* k, std::vector<float>& out, size_t n, bool required) {
    const std::string key = key_of(k);
    const GgufValue* v = lookup(key, required);
    if (v == nullptr) return;
    std::vector<double> vals;
    if (auto a = v->as_f64_array()) {
      vals = *a;
      if (vals.size() < n) {
        st_ = bad(key, "has " + std::to_string(vals.size()) + " entries, need at least " +
                           std::to_string(n));
        return;
      }
    } else if (auto s = v->as_f64()) {
      vals.assign(n, *s);
    } else {
      st_ = bad(key, "must be a float or a float array, got " + v->type_string());
      return;
    }
    out.clear();
    for (double d : vals) {
      if (!std::isfinite(d) || d <= 0) {
        st_ = bad(key, "contains " + std::to_string(d) + " (need finite > 0)");
        return;
      }
      out.push_back(static_cast<float>(d));
    }
  }

  void check(bool ok, const std::string& key, const std::string& why) {
    if (st_.is_ok() && !ok) st_ = bad(key, why);
  }

  Status& status() { return st_; }

 private:
  const GgufModel& f_;
  Status st_;
};

}  // namespace

const char* layer_kind_name(int32_t ratio) {
  switch (ratio) {
    case 0: return "SWA";
    case 4: return "CSA";
    case 128: return "HCA";
    default: return "?";
  }
}

Result<HParams> hparams_from_gguf(const GgufModel& f) {
  auto arch = f.meta().get_string("general.architecture");
  if (!arch) return arch.status();
  if (*arch != "deepseek4") {
    return Status(ErrorCode::kUnsupported,
                  "general.architecture is '" + std::string(*arch) + "', dsv4 needs 'deepseek4'");
  }
  constexpr int64_t kBig = int64_t{1} << 32;  // any count beyond this is a corrupt file
  HParams h;
  Reader r(f);
  r.count("block_count", h.n_layer_all, 1, 4096);
  r.count("embedding_length", h.n_embd, 1, 1 << 20);
  r.count("vocab_size", h.n_vocab, 1, kBig, /*required=*/false);
  r.count("context_length", h.n_ctx_train, 1, int64_t{1} << 30);
  r.count("attention.head_count", h.n_head, 1, 1 << 16);
  r.count("attention.head_count_kv", h.n_head_kv, 1, 1);
  r.count("attention.key_length", h.head_dim, 1, 1 << 16);
  int64_t value_length = 0;
  r.count("attention.value_length", value_length, 1, 1 << 16);
  r.check(value_length == h.head_dim, key_of("attention.value_length"),
          "= " + std::to_string(value_length) + " differs from key_length " +
              std::to_string(h.head_dim) + " (K = V in DeepSeek-V4)");
  r.count("rope.dimension_count", h.n_rot, 2, 1 << 16);
  r.count("attention.q_lora_rank", h.q_lora_rank, 1, 1 << 20);
  r.count("attention.sliding_window", h.n_swa, 1, int64_t{1} << 30);
  r.count("attention.output_group_count", h.o_groups, 1, 1 << 16);
  r.count("attention.output_lora_rank", h.o_lora_rank, 1, 1 << 20);
  r.real("rope.freq_base", h.rope_freq_base, 0, 1e12, /*required=*/false);
  r.real("attention.compress_rope_freq_base", h.compress_rope_freq_base, 0, 1e12, false);
  if (r.status().is_ok() && f.find(key_of("attention.compress_rope_freq_base")) == nullptr) {
    // The nsparks FP4-FP8 converter stores the compressed layers' rope base as
    // rope.freq_base_swa (real-headers/nsparks-fp4-fp8.txt).
    if (f.find(key_of("rope.freq_base_swa")) == nullptr) {
      return Status(ErrorCode::kNotFound,
                    "missing metadata key 'deepseek4.attention.compress_rope_freq_base' (or the "
                    "nsparks dialect's 'deepseek4.rope.freq_base_swa')");
    }
    r.real("rope.freq_base_swa", h.compress_rope_freq_base, 0, 1e12);
  }
  r.real("rope.scaling.factor", h.rope_yarn_factor, 0, 1e6, false);
  r.count("rope.scaling.original_context_length", h.rope_yarn_orig_ctx, 1, int64_t{1} << 30, false);
  r.real("rope.scaling.yarn_beta_fast", h.rope_yarn_beta_fast, 0, 1e6, false);
  r.real("rope.scaling.yarn_beta_slow", h.rope_yarn_beta_slow, 0, 1e6, false);
  r.real("attention.layer_norm_rms_epsilon", h.rms_eps, 0, 1);
  r.count("attention.indexer.head_count", h.n_indexer_head, 1, 1 << 16);
  r.count("attention.indexer.key_length", h.indexer_head_dim, 1, 1 << 16);
  r.count("attention.indexer.top_k", h.indexer_top_k, 1, int64_t{1} << 30);
  r.count("expert_count", h.n_expert, 1, 1 << 16);
  r.count("expert_used_count", h.n_expert_used, 1, 1 << 16);
  r.count("expert_shared_count", h.n_expert_shared, 0, 1 << 16);
  r.count("expert_feed_forward_length", h.n_ff_exp, 1, 1 << 20);
  r.real("expert_weights_scale", h.expert_weights_scale, 0, 1e6);
  r.boolean("expert_weights_norm", h.expert_weights_norm);
  int64_t gating = 0;
  r.count("expert_gating_func", gating, 0, 1 << 16);
  r.check(gating == 4, key_of("expert_gating_func"),
          "= " + std::to_string(gating) + "; DeepSeek-V4 routes with sqrtsoftplus (4)");
  r.count("hash_layer_count", h.n_hash_layers, 0, 4096);
  r.count("hyper_connection.count", h.n_hc, 1, 64);
  r.count("hyper_connection.sinkhorn_iterations", h.hc_sinkhorn_iters, 1, 1000);
  r.real("hyper_connection.epsilon", h.hc_eps, 0, 1);
  r.count("nextn_predict_layers", h.n_nextn, 0, 16, false);
  if (!r.status().is_ok()) return r.status();

  // MTP blocks: upstream stores them as the last nextn_predict_layers blocks of block_count and
  // ignores the key when the first MTP tensor is absent (ds4 files declare 1 and store none); dsv4
  // also accepts the separate e_proj/h_proj form (tensors.h).
  r.check(h.n_nextn < h.n_layer_all, key_of("nextn_predict_layers"),
          "= " + std::to_string(h.n_nextn) + " leaves no trunk layer in block_count " +
              std::to_string(h.n_layer_all));
  if (!r.status().is_ok()) return r.status();
  const std::string first_mtp = "blk." + std::to_string(h.n_layer_all - h.n_nextn) + ".nextn.";
  if (h.n_nextn > 0 && f.find_tensor(first_mtp + "eh_proj.weight") == nullptr &&
      f.find_tensor(first_mtp + "e_proj.weight") == nullptr) {
    h.n_nextn = 0;
  }
  h.n_layer = h.n_layer_all - h.n_nextn;

  // vocab: deepseek4.vocab_size, else the tokenizer's token count.
  if (h.n_vocab == 0) {
    const GgufValue* tok = f.find("tokenizer.ggml.tokens");
    if (tok == nullptr || !tok->is_array() || tok->array_size() == 0) {
      return Status(ErrorCode::kNotFound,
                    "missing metadata key 'deepseek4.vocab_size' (and no tokenizer.ggml.tokens)");
    }
    h.n_vocab = static_cast<int64_t>(tok->array_size());
  }

  // compress_ratios: i32 or u32 array, ≥ block_count entries, each in {0, 4, 128}.
  const std::string rk = key_of("attention.compress_ratios");
  const GgufValue* rv = f.find(rk);
  if (rv == nullptr) return Status(ErrorCode::kNotFound, "missing metadata key '" + rk + "'");
  auto ratios = rv->as_i64_array();
  if (!ratios) return bad(rk, "must be an integer array, got " + rv->type_string());
  if (static_cast<int64_t>(ratios->size()) < h.n_layer_all) {
    return bad(rk, "has " + std::to_string(ratios->size()) + " entries, block_count is " +
                       std::to_string(h.n_layer_all));
  }
  for (size_t i = 0; i < ratios->size(); ++i) {
    const int64_t x = (*ratios)[i];
    if (x != 0 && x != 4 && x != 128) {
      return bad(rk, "entry " + std::to_string(i) + " = " + std::to_string(x) +
                         " (each must be 0, 4 or 128)");
    }
    h.compress_ratios.push_back(static_cast<int32_t>(x));
  }

  const size_t n_entries = h.compress_ratios.size();
  r.per_layer("swiglu_clamp_exp", h.swiglu_clamp_exp, static_cast<size_t>(h.n_layer_all), true);
  r.per_layer("swiglu_clamp_shexp", h.swiglu_clamp_shexp, static_cast<size_t>(h.n_layer_all), false);
  if (!r.status().is_ok()) return r.status();
  // Scalar clamps apply to every entry, MTP included; arrays shorter than the ratio list
  // (trunk-only, as upstream writes them) extend with their last value for the MTP blocks.
  auto extend = [&](std::vector<float>& v) {
    while (!v.empty() && v.size() < n_entries) v.push_back(v.back());
  };
  extend(h.swiglu_clamp_exp);
  if (h.swiglu_clamp_shexp.empty()) h.swiglu_clamp_shexp = h.swiglu_clamp_exp;
  extend(h.swiglu_clamp_shexp);

  // Family rules (dsv4-architecture.md §2, §15 constraints).
  r.check(h.n_hc == 4, key_of("hyper_connection.count"),
          "= " + std::to_string(h.n_hc) + "; DeepSeek-V4 has 4 hyper-connection streams");
  r.check(h.n_rot % 2 == 0 && h.n_rot < h.head_dim, key_of("rope.dimension_count"),
          "= " + std::to_string(h.n_rot) + " must be even and below key_length " +
              std::to_string(h.head_dim));
  r.check((h.head_dim - h.n_rot) % 64 == 0, key_of("attention.key_length"),
          "- rope dims = " + std::to_string(h.head_dim - h.n_rot) +
              " must be a multiple of 64 (FP8 KV blocks)");
  r.check(h.n_head % h.o_groups == 0, key_of("attention.output_group_count"),
          "= " + std::to_string(h.o_groups) + " does not divide head_count " +
              std::to_string(h.n_head));
  r.check(h.n_expert_used <= h.n_expert, key_of("expert_used_count"),
          "= " + std::to_string(h.n_expert_used) + " exceeds " + key_of("expert_count") + " = " +
              std::to_string(h.n_expert));
  r.check(h.n_swa <= h.n_ctx_train, key_of("attention.sliding_window"),
          "= " + std::to_string(h.n_swa) + " exceeds context_length " +
              std::to_string(h.n_ctx_train));
  r.check(h.n_hash_layers <= h.n_layer, key_of("hash_layer_count"),
          "= " + std::to_string(h.n_hash_layers) + " exceeds block_count " +
              std::to_string(h.n_layer));
  const int64_t ihd = h.indexer_head_dim;
  r.check((ihd & (ihd - 1)) == 0 && ihd % 32 == 0 && ihd > h.n_rot,
          key_of("attention.indexer.key_length"),
          "= " + std::to_string(ihd) +
              " must be a power of two, a multiple of 32 (FP4 blocks) and above the rope dims");
  if (!r.status().is_ok()) return r.status();
  return h;
}

}  // namespace dsv4
