#include "dsv4/model/hf_convert.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "dsv4/core/dtypes.h"
#include "dsv4/format/safetensors.h"
#include "dsv4/model/gguf_meta.h"
#include "dsv4/model/tensors.h"
#include "dsv4/quant/hf.h"
#include "dsv4/quant/quant.h"

namespace dsv4 {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

Result<json> read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status(ErrorCode::kIo, "cannot open '" + path + "'");
  json j = json::parse(in, nullptr, false);
  if (j.is_discarded()) return Status(ErrorCode::kInvalidFile, path + ": not valid JSON");
  return j;
}

}  // namespace

Result<HParams> hparams_from_hf_config(const std::string& path) {
  auto jr = read_json(path);
  if (!jr) return jr.status();
  const json& c = *jr;
  HParams h;
  Status st;
  auto get_i = [&](const char* k, int64_t& out, bool required = true) {
    if (!st.is_ok()) return;
    if (!c.contains(k)) {
      if (required) st = Status(ErrorCode::kNotFound, path + ": missing key '" + k + "'");
      return;
    }
    if (!c[k].is_number_integer() || c[k].get<int64_t>() < 0) {
      st = Status(ErrorCode::kInvalidFile, path + ": '" + k + "' must be a non-negative integer");
      return;
    }
    out = c[k].get<int64_t>();
  };
  auto get_f = [&](const json& obj, const char* k, float& out, bool required = true) {
    if (!st.is_ok()) return;
    if (!obj.contains(k)) {
      if (required) st = Status(ErrorCode::kNotFound, path + ": missing key '" + k + "'");
      return;
    }
    if (!obj[k].is_number()) {
      st = Status(ErrorCode::kInvalidFile, path + ": '" + k + "' must be a number");
      return;
    }
    out = obj[k].get<float>();
  };
  get_i("num_hidden_layers", h.n_layer);
  get_i("hidden_size", h.n_embd);
  get_i("vocab_size", h.n_vocab);
  get_i("max_position_embeddings", h.n_ctx_train);
  get_i("num_attention_heads", h.n_head);
  get_i("num_key_value_heads", h.n_head_kv);
  get_i("head_dim", h.head_dim);
  get_i("qk_rope_head_dim", h.n_rot);
  get_i("q_lora_rank", h.q_lora_rank);
  get_i("o_groups", h.o_groups);
  get_i("o_lora_rank", h.o_lora_rank);
  get_i("sliding_window", h.n_swa);
  get_i("index_n_heads", h.n_indexer_head);
  get_i("index_head_dim", h.indexer_head_dim);
  get_i("index_topk", h.indexer_top_k);
  get_i("n_routed_experts", h.n_expert);
  get_i("num_experts_per_tok", h.n_expert_used);
  get_i("n_shared_experts", h.n_expert_shared);
  get_i("moe_intermediate_size", h.n_ff_exp);
  get_i("num_hash_layers", h.n_hash_layers);
  get_i("hc_mult", h.n_hc);
  get_i("hc_sinkhorn_iters", h.hc_sinkhorn_iters);
  get_f(c, "rope_theta", h.rope_freq_base);
  get_f(c, "compress_rope_theta", h.compress_rope_freq_base);
  get_f(c, "routed_scaling_factor", h.expert_weights_scale);
  get_f(c, "hc_eps", h.hc_eps);
  get_f(c, "rms_norm_eps", h.rms_eps);
  float limit = 0;
  get_f(c, "swiglu_limit", limit);
  if (st.is_ok() && c.contains("rope_scaling") && c["rope_scaling"].is_object()) {
    const json& rs = c["rope_scaling"];
    get_f(rs, "factor", h.rope_yarn_factor);
    get_f(rs, "beta_fast", h.rope_yarn_beta_fast, false);
    get_f(rs, "beta_slow", h.rope_yarn_beta_slow, false);
    if (rs.contains("original_max_position_embeddings") &&
        rs["original_max_position_embeddings"].is_number_integer()) {
      h.rope_yarn_orig_ctx = rs["original_max_position_embeddings"].get<int64_t>();
    }
  }
  if (!st.is_ok()) return st;
  if (c.value("scoring_func", std::string()) != "sqrtsoftplus") {
    return Status(ErrorCode::kUnsupported, path + ": scoring_func must be 'sqrtsoftplus'");
  }
  h.expert_weights_norm = c.value("norm_topk_prob", true);
  if (!c.contains("compress_ratios") || !c["compress_ratios"].is_array()) {
    // transformers' default schedule is neither Flash's nor Pro's (dsv4-architecture.md §2.3)
    return Status(ErrorCode::kNotFound, path + ": missing 'compress_ratios' (give the list explicitly)");
  }
  for (const auto& r : c["compress_ratios"]) {
    if (!r.is_number_integer()) return Status(ErrorCode::kInvalidFile, path + ": compress_ratios entry " + r.dump());
    h.compress_ratios.push_back(r.get<int32_t>());
  }
  h.n_layer_all = h.n_layer;  // the trunk GGUF holds no MTP block
  h.swiglu_clamp_exp.assign(h.compress_ratios.size(), limit);
  h.swiglu_clamp_shexp = h.swiglu_clamp_exp;
  if (static_cast<int64_t>(h.compress_ratios.size()) < h.n_layer) {
    return Status(ErrorCode::kInvalidFile, path + ": compress_ratios shorter than num_hidden_layers");
  }
  return h;
}

std::string upstream_name(const std::string& n) {
  static const std::map<std::string, std::string> kGlobal = {
      {"embed.weight", "token_embd.weight"},       {"head.weight", "output.weight"},
      {"norm.weight", "output_norm.weight"},       {"hc_head_fn", "output_hc_fn.weight"},
      {"hc_head_base", "output_hc_base.weight"},   {"hc_head_scale", "output_hc_scale.weight"},
  };
  static const std::map<std::string, std::string> kLayer = {
      {"attn_norm.weight", "attn_norm.weight"},
      {"ffn_norm.weight", "ffn_norm.weight"},
      {"hc_attn_fn", "hc_attn_fn.weight"},
      {"hc_attn_base", "hc_attn_base.weight"},
      {"hc_attn_scale", "hc_attn_scale.weight"},
      {"hc_ffn_fn", "hc_ffn_fn.weight"},
      {"hc_ffn_base", "hc_ffn_base.weight"},
      {"hc_ffn_scale", "hc_ffn_scale.weight"},
      {"attn.attn_sink", "attn_sinks.weight"},
      {"attn.wq_a.weight", "attn_q_a.weight"},
      {"attn.q_norm.weight", "attn_q_a_norm.weight"},
      {"attn.wq_b.weight", "attn_q_b.weight"},
      {"attn.wkv.weight", "attn_kv.weight"},
      {"attn.kv_norm.weight", "attn_kv_a_norm.weight"},
      {"attn.wo_a.weight", "attn_output_a.weight"},
      {"attn.wo_b.weight", "attn_output_b.weight"},
      {"attn.compressor.wkv.weight", "attn_compressor_kv.weight"},
      {"attn.compressor.wgate.weight", "attn_compressor_gate.weight"},
      {"attn.compressor.ape", "attn_compressor_ape.weight"},
      {"attn.compressor.norm.weight", "attn_compressor_norm.weight"},
      {"attn.indexer.wq_b.weight", "indexer.attn_q_b.weight"},
      {"attn.indexer.weights_proj.weight", "indexer.proj.weight"},
      {"attn.indexer.compressor.wkv.weight", "indexer_compressor_kv.weight"},
      {"attn.indexer.compressor.wgate.weight", "indexer_compressor_gate.weight"},
      {"attn.indexer.compressor.ape", "indexer_compressor_ape.weight"},
      {"attn.indexer.compressor.norm.weight", "indexer_compressor_norm.weight"},
      {"ffn.gate.weight", "ffn_gate_inp.weight"},
      {"ffn.gate.bias", "exp_probs_b.bias"},
      {"ffn.gate.tid2eid", "ffn_gate_tid2eid.weight"},
      {"ffn.shared_experts.w1.weight", "ffn_gate_shexp.weight"},
      {"ffn.shared_experts.w3.weight", "ffn_up_shexp.weight"},
      {"ffn.shared_experts.w2.weight", "ffn_down_shexp.weight"},
  };
  if (auto it = kGlobal.find(n); it != kGlobal.end()) return it->second;
  if (n.rfind("layers.", 0) != 0) return "";
  const size_t dot = n.find('.', 7);
  if (dot == std::string::npos) return "";
  const std::string layer = n.substr(7, dot - 7);
  if (layer.empty() || layer.find_first_not_of("0123456789") != std::string::npos) return "";
  const std::string rest = n.substr(dot + 1);
  const std::string p = "blk." + layer + ".";
  if (auto it = kLayer.find(rest); it != kLayer.end()) return p + it->second;
  // routed experts: ffn.experts.E.wK.weight
  if (rest.rfind("ffn.experts.", 0) == 0) {
    const size_t d2 = rest.find('.', 12);
    if (d2 == std::string::npos) return "";
    const std::string w = rest.substr(d2 + 1);
    if (w == "w1.weight") return p + "ffn_gate_exps.weight";
    if (w == "w3.weight") return p + "ffn_up_exps.weight";
    if (w == "w2.weight") return p + "ffn_down_exps.weight";
  }
  return "";
}

Result<int64_t> write_tokenizer_metadata(GgufWriter& w, const std::string& path,
                                         const std::string& pre) {
  auto jr = read_json(path);
  if (!jr) return jr.status();
  const json& j = *jr;
  if (!j.contains("model") || !j["model"].contains("vocab") || !j["model"]["vocab"].is_object()) {
    return Status(ErrorCode::kInvalidFile, path + ": not a tokenizer.json with model.vocab");
  }
  std::map<int64_t, std::pair<std::string, int32_t>> by_id;
  for (auto it = j["model"]["vocab"].begin(); it != j["model"]["vocab"].end(); ++it) {
    if (!it.value().is_number_integer()) return Status(ErrorCode::kInvalidFile, path + ": vocab id of '" + it.key() + "'");
    by_id[it.value().get<int64_t>()] = {it.key(), 1};
  }
  for (const auto& a : j.value("added_tokens", json::array())) {
    if (!a.contains("id") || !a.contains("content")) continue;
    by_id[a["id"].get<int64_t>()] = {a["content"].get<std::string>(), a.value("special", false) ? 3 : 4};
  }
  if (by_id.empty() || by_id.begin()->first < 0 || by_id.rbegin()->first > (int64_t{1} << 24)) {
    return Status(ErrorCode::kInvalidFile, path + ": empty vocabulary or ids out of range");
  }
  const size_t n = static_cast<size_t>(by_id.rbegin()->first + 1);
  std::vector<std::string> tokens(n);
  std::vector<int32_t> types(n, 5);  // 5 = unused (an id no entry names)
  for (size_t i = 0; i < n; ++i) tokens[i] = "[UNUSED_" + std::to_string(i) + "]";
  int64_t bos = -1, eos = -1;
  for (const auto& [id, tt] : by_id) {
    tokens[static_cast<size_t>(id)] = tt.first;
    types[static_cast<size_t>(id)] = tt.second;
    if (tt.first == "<｜begin▁of▁sentence｜>") bos = id;
    if (tt.first == "<｜end▁of▁sentence｜>") eos = id;
  }
  std::vector<std::string> merges;
  for (const auto& m : j["model"].value("merges", json::array())) {
    if (m.is_string()) {
      merges.push_back(m.get<std::string>());
    } else if (m.is_array() && m.size() == 2) {
      merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
    }
  }
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", pre);
  w.add_array_string("tokenizer.ggml.tokens", tokens);
  w.add_array_i32("tokenizer.ggml.token_type", types);
  w.add_array_string("tokenizer.ggml.merges", merges);
  if (bos >= 0) w.add_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(bos));
  if (eos >= 0) {
    w.add_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(eos));
    w.add_u32("tokenizer.ggml.padding_token_id", static_cast<uint32_t>(eos));  // config: pad = eos
  }
  w.add_bool("tokenizer.ggml.add_bos_token", false);
  w.add_bool("tokenizer.ggml.add_eos_token", false);
  return static_cast<int64_t>(n);
}

namespace {

// All tensors of a checkpoint directory, by official name.
struct Checkpoint {
  std::vector<std::unique_ptr<SafetensorsFile>> files;
  std::map<std::string, const StTensor*> by_name;
  const StTensor* find(const std::string& n) const {
    auto it = by_name.find(n);
    return it == by_name.end() ? nullptr : it->second;
  }
};

Status open_checkpoint(const std::string& dir, Checkpoint& ck) {
  std::vector<std::string> paths;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".safetensors") paths.push_back(e.path().string());
  }
  if (ec) return Status(ErrorCode::kIo, "cannot list '" + dir + "': " + ec.message());
  if (paths.empty()) return Status(ErrorCode::kNotFound, dir + ": no *.safetensors files");
  std::sort(paths.begin(), paths.end());
  for (const auto& p : paths) {
    auto f = SafetensorsFile::open(p);
    if (!f) return f.status();
    ck.files.push_back(std::make_unique<SafetensorsFile>(std::move(f).value()));
    for (const auto& t : ck.files.back()->tensors()) {
      if (!ck.by_name.emplace(t.name, &t).second) {
        return Status(ErrorCode::kInvalidFile, p + ": tensor '" + t.name + "' also in another shard");
      }
    }
  }
  return Status::ok();
}

std::string base_of(const std::string& weight_name) {  // "x.weight" -> "x"
  const std::string suf = ".weight";
  return weight_name.size() > suf.size() && weight_name.ends_with(suf)
             ? weight_name.substr(0, weight_name.size() - suf.size()) : weight_name;
}

// How one GGUF tensor is produced from the checkpoint.
struct Plan {
  TensorSpec spec;
  uint32_t type = 0;                  // ggml type id written
  std::vector<const StTensor*> src;   // one, or the experts of a stacked tensor in order
  std::vector<const StTensor*> scale; // FP8/FP4 companions, parallel to src
};

constexpr uint32_t kF32 = 0, kQ8_0 = 8, kI32 = 26, kBF16 = 30, kMXFP4 = 39, kF8B128 = 42;

Status fill(const Plan& p, std::span<uint8_t> out) {
  uint8_t* o = out.data();
  const StTensor* s = p.src.front();
  if (p.type == kMXFP4 || (p.scale.front() != nullptr && s->dtype == StDtype::kI8)) {
    // stacked FP4 experts: each expert [out, in/2] bytes + [out, in/32] scales
    for (size_t e = 0; e < p.src.size(); ++e) {
      const StTensor* w = p.src[e];
      const StTensor* sc = p.scale[e];
      const int64_t rows = w->shape[0], n = w->shape[1] * 2;
      for (int64_t r = 0; r < rows; ++r) {
        DSV4_RETURN_IF_ERROR(quant::repack_hf_fp4_row_to_mxfp4(
            w->data.data() + r * n / 2, sc->data.data() + r * n / 32, o, n));
        o += n / 32 * 17;
      }
    }
    return Status::ok();
  }
  if (s->dtype == StDtype::kF8E4M3) {
    const StTensor* sc = p.scale.front();
    const int64_t rows = s->shape[0], n = s->shape[1], scols = (n + 127) / 128;
    std::vector<float> row(static_cast<size_t>(n));
    for (int64_t r = 0; r < rows; ++r) {
      const uint8_t* q = s->data.data() + r * n;
      const uint8_t* srow = sc->data.data() + (r / 128) * scols;
      if (p.type == kF8B128) {
        DSV4_RETURN_IF_ERROR(quant::repack_hf_fp8_row_to_b128(q, srow, o, n));
        o += n / 128 * 129;
      } else if (p.type == kBF16) {  // e4m3 x 2^k is exact in bf16 (3 < 7 mantissa bits)
        DSV4_RETURN_IF_ERROR(quant::dequantize_hf_fp8_row(q, srow, row.data(), n));
        for (int64_t i = 0; i < n; ++i) {
          const uint16_t b = f32_to_bf16(row[static_cast<size_t>(i)]);
          std::memcpy(o + 2 * i, &b, 2);
        }
        o += 2 * n;
      } else {
        DSV4_RETURN_IF_ERROR(quant::dequantize_hf_fp8_row(q, srow, row.data(), n));
        DSV4_RETURN_IF_ERROR(quant::quantize_row(quant::QType::kQ8_0, row.data(), o, n));
        o += n / 32 * 34;
      }
    }
    return Status::ok();
  }
  if (p.src.size() > 1) {  // stacked float experts, in order
    for (const StTensor* e : p.src) {
      Plan one = p;
      one.src = {e};
      one.scale = {nullptr};
      const size_t bytes = static_cast<size_t>(e->n_elements()) * (p.type == kF32 ? 4 : 2);
      DSV4_RETURN_IF_ERROR(fill(one, std::span<uint8_t>(o, bytes)));
      o += bytes;
    }
    return Status::ok();
  }
  const int64_t n = s->n_elements();
  switch (s->dtype) {
    case StDtype::kBF16:
      if (p.type == kBF16) {
        std::memcpy(o, s->data.data(), s->data.size());
      } else {  // widen to F32 (exact)
        for (int64_t i = 0; i < n; ++i) {
          uint16_t b;
          std::memcpy(&b, s->data.data() + 2 * i, 2);
          const float f = bf16_to_f32(b);
          std::memcpy(o + 4 * i, &f, 4);
        }
      }
      return Status::ok();
    case StDtype::kF32:
      std::memcpy(o, s->data.data(), s->data.size());
      return Status::ok();
    case StDtype::kI64:  // tid2eid: values are expert ids, well inside int32
      for (int64_t i = 0; i < n; ++i) {
        int64_t v;
        std::memcpy(&v, s->data.data() + 8 * i, 8);
        if (v < 0 || v > INT32_MAX) {
          return Status(ErrorCode::kInvalidFile, "tensor '" + s->name + "': value " + std::to_string(v));
        }
        const int32_t v32 = static_cast<int32_t>(v);
        std::memcpy(o + 4 * i, &v32, 4);
      }
      return Status::ok();
    default:
      return Status(ErrorCode::kUnsupported, "tensor '" + s->name + "': dtype " + st_dtype_name(s->dtype));
  }
}

}  // namespace

namespace {

// GGUF name of an official MTP tensor (mtp.0.*) for the block stored at index n_layer.
std::string mtp_gguf_name(const std::string& n, int64_t n_layer) {
  static const std::map<std::string, std::string> kExtra = {
      {"e_proj.weight", "nextn.e_proj.weight"},   {"h_proj.weight", "nextn.h_proj.weight"},
      {"enorm.weight", "nextn.enorm.weight"},     {"hnorm.weight", "nextn.hnorm.weight"},
      {"norm.weight", "nextn.shared_head_norm.weight"},
      {"hc_head_fn", "nextn.hc_head_fn.weight"},  {"hc_head_base", "nextn.hc_head_base.weight"},
      {"hc_head_scale", "nextn.hc_head_scale.weight"},
  };
  const std::string rest = n.substr(6);
  const std::string p = "blk." + std::to_string(n_layer) + ".";
  if (auto it = kExtra.find(rest); it != kExtra.end()) return p + it->second;
  return upstream_name("layers." + std::to_string(n_layer) + "." + rest);
}

// Everything a conversion writes, planned: the writer (metadata + tensor infos), what fills each
// tensor, and the open checkpoint the fills read.
struct Conversion {
  GgufWriter w;
  std::vector<Plan> plans;
  Checkpoint ck;
};

Status plan_conversion(const std::string& dir, const ConvertOptions& opt, Conversion& cv) {
  Checkpoint& ck = cv.ck;
  std::vector<Plan>& plans = cv.plans;
  GgufWriter& w = cv.w;
  auto hr = hparams_from_hf_config((fs::path(dir) / "config.json").string());
  if (!hr) return hr.status();
  HParams h = std::move(hr).value();
  DSV4_RETURN_IF_ERROR(open_checkpoint(dir, ck));
  // The MTP block (mtp.0.*) only on request: upstream's converter drops it, and its GGUF naming
  // (one concatenated eh_proj, no MTP HC head) cannot hold it losslessly.
  const bool mtp = opt.include_mtp && ck.find("mtp.0.e_proj.weight") != nullptr &&
                   static_cast<int64_t>(h.compress_ratios.size()) > h.n_layer;
  if (mtp) {
    h.n_nextn = 1;
    h.n_layer_all = h.n_layer + 1;
  }

  // Group the checkpoint's tensors under their GGUF names.
  std::map<std::string, std::vector<const StTensor*>> groups;
  for (const auto& [name, t] : ck.by_name) {
    std::string u = upstream_name(name);
    if (mtp && name.rfind("mtp.0.", 0) == 0) u = mtp_gguf_name(name, h.n_layer);
    if (!u.empty()) groups[u].push_back(t);
  }
  for (const TensorSpec& spec : expected_tensors(h)) {
    auto it = groups.find(spec.name);
    if (it == groups.end()) {
      if (spec.required) return Status(ErrorCode::kNotFound, dir + ": no checkpoint tensor for '" + spec.name + "'");
      continue;
    }
    Plan p;
    p.spec = spec;
    p.src = it->second;
    if (spec.cls == TensorClass::kExperts) {
      // order experts by index: layers.L.ffn.experts.E.wK.weight
      std::sort(p.src.begin(), p.src.end(), [](const StTensor* a, const StTensor* b) {
        auto idx = [](const std::string& s) {
          const size_t k = s.find(".experts.") + 9;
          return std::stoll(s.substr(k, s.find('.', k) - k));
        };
        return idx(a->name) < idx(b->name);
      });
      for (const StTensor* e : p.src)  // one dtype and shape for the whole stack (fill relies on it)
        if (e->dtype != p.src.front()->dtype || e->shape != p.src.front()->shape)
          return Status(ErrorCode::kInvalidFile, dir + ": " + e->name + " differs in dtype or shape from " +
                                                     p.src.front()->name);
      if (static_cast<int64_t>(p.src.size()) != h.n_expert) {
        return Status(ErrorCode::kInvalidFile, dir + ": " + spec.name + " has " + std::to_string(p.src.size()) +
                                                   " experts, config says " + std::to_string(h.n_expert));
      }
    } else if (p.src.size() != 1) {
      return Status(ErrorCode::kInvalidFile, dir + ": several tensors map to " + spec.name);
    }
    for (const StTensor* s : p.src) {
      const StTensor* sc = ck.find(base_of(s->name) + ".scale");
      if ((s->dtype == StDtype::kF8E4M3 || s->dtype == StDtype::kI8) && sc == nullptr) {
        return Status(ErrorCode::kNotFound, dir + ": '" + s->name + "' has no .scale companion");
      }
      p.scale.push_back(sc);
    }
    const StTensor* s = p.src.front();
    if (spec.cls == TensorClass::kExperts) {
      // official checkpoints: FP4 (I8 pairs); float experts (test checkpoints) are stacked as stored
      if (s->dtype == StDtype::kI8) {
        p.type = kMXFP4;
      } else if (s->dtype == StDtype::kF32 || s->dtype == StDtype::kBF16) {
        p.type = s->dtype == StDtype::kF32 ? kF32 : kBF16;
      } else {
        return Status(ErrorCode::kUnsupported, s->name + ": routed experts must be FP4 (I8), F32 or BF16");
      }
    } else if (s->dtype == StDtype::kF8E4M3) {
      // F8_E4M3_B128 needs rows of whole 128-blocks; a narrower row (only in tiny test models)
      // is kept losslessly as BF16 instead.
      p.type = !opt.keep_fp8 ? kQ8_0 : spec.ne[0] % 128 == 0 ? kF8B128 : kBF16;
    } else if (s->dtype == StDtype::kBF16) {
      p.type = spec.ne.size() == 1 ? kF32 : kBF16;
    } else if (s->dtype == StDtype::kF32) {
      p.type = kF32;
    } else if (s->dtype == StDtype::kI64 || s->dtype == StDtype::kI32) {
      if (s->dtype == StDtype::kI32) return Status(ErrorCode::kUnsupported, s->name + ": I32 tid2eid");
      p.type = kI32;
    } else {
      return Status(ErrorCode::kUnsupported, s->name + ": dtype " + st_dtype_name(s->dtype));
    }
    // element count must match the GGUF shape
    int64_t want = 1, have = 0;
    for (int64_t d : spec.ne) want *= d;
    for (const StTensor* t : p.src) have += t->n_elements() * (t->dtype == StDtype::kI8 ? 2 : 1);
    if (want != have) {
      return Status(ErrorCode::kInvalidFile, s->name + ": " + std::to_string(have) + " elements, " + spec.name +
                                                 " needs " + std::to_string(want));
    }
    plans.push_back(std::move(p));
  }

  write_hparams(w, h);
  w.add_string("general.name", fs::path(dir).filename().string());
  w.add_u32("general.file_type", opt.keep_fp8 ? 41u : 38u);  // 38 = MOSTLY_MXFP4_MOE
  if (opt.keep_fp8) w.add_bool("dsv4.keep_fp8", true);  // marks type id 42 as F8_E4M3_B128
  const std::string tok = (fs::path(dir) / "tokenizer.json").string();
  if (fs::exists(tok)) {
    auto n = write_tokenizer_metadata(w, tok, opt.pre);
    if (!n) return n.status();
    if (*n != h.n_vocab) {
      return Status(ErrorCode::kInvalidFile, tok + " has " + std::to_string(*n) +
                                                 " tokens, config.json vocab_size is " +
                                                 std::to_string(h.n_vocab));
    }
  }
  for (const Plan& p : plans) {
    const GgmlTypeTraits* tt = p.type == kF8B128 ? &ggml_type_f8_e4m3_b128() : ggml_type_traits(p.type);
    uint64_t rows = 1;
    for (size_t d = 1; d < p.spec.ne.size(); ++d) rows *= static_cast<uint64_t>(p.spec.ne[d]);
    const auto row = ggml_row_bytes(*tt, p.spec.ne[0]);
    if (!row) {
      return Status(ErrorCode::kUnsupported, p.spec.name + ": ne[0] = " + std::to_string(p.spec.ne[0]) +
                                                 " is not a multiple of the " + std::string(tt->name) + " block");
    }
    w.add_tensor_info(p.spec.name, p.type, p.spec.ne, *row * rows);
  }
  return Status::ok();
}

}  // namespace

Status convert_hf_to_gguf(const std::string& dir, const std::string& out, const ConvertOptions& opt) {
  auto cv = std::make_unique<Conversion>();
  DSV4_RETURN_IF_ERROR(plan_conversion(dir, opt, *cv));
  return cv->w.write_streaming(out, [&](size_t i, std::span<uint8_t> buf) { return fill(cv->plans[i], buf); });
}

Result<std::vector<uint8_t>> convert_hf_to_gguf_bytes(const std::string& dir, const ConvertOptions& opt) {
  auto cv = std::make_unique<Conversion>();
  DSV4_RETURN_IF_ERROR(plan_conversion(dir, opt, *cv));
  return cv->w.bytes_streaming([&](size_t i, std::span<uint8_t> buf) { return fill(cv->plans[i], buf); });
}

}  // namespace dsv4
