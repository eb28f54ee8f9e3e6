#include "dsv4/model/tensors.h"

#include <set>

namespace dsv4 {
namespace {

std::string shape_str(const int64_t* ne, size_t n) {
  std::string s = "{";
  for (size_t i = 0; i < n; ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "}";
}

bool type_allowed(TensorClass cls, uint32_t type_id) {
  switch (cls) {
    case TensorClass::kVector: return type_id == 0 || type_id == 1 || type_id == 30;  // f32 f16 bf16
    case TensorClass::kIndex: return type_id == 26;                                   // i32
    case TensorClass::kMatrix:
    case TensorClass::kProjection:
    case TensorClass::kExperts:
      return type_id != 24 && type_id != 25 && type_id != 26 && type_id != 27;  // not integers
  }
  return false;
}

}  // namespace

namespace {

// The tensors of one block (attention + MoE) named `p` + suffix: trunk layer `il` or an MTP block.
void add_block(std::vector<TensorSpec>& t, const HParams& h, const std::string& p, int32_t ratio,
               bool hash_routed) {
  const int64_t D = h.n_embd, V = h.n_vocab, hc_dim = h.n_hc * h.n_embd;
  const int64_t hc_mix = (2 + h.n_hc) * h.n_hc;
  const int64_t Dh = h.head_dim, H = h.n_head;
  auto add = [&](std::string name, std::vector<int64_t> ne, TensorClass cls, bool req = true) {
    t.push_back({p + name, std::move(ne), cls, req});
  };
  using C = TensorClass;
  add("attn_norm.weight", {D}, C::kVector);
  add("attn_sinks.weight", {H}, C::kVector);
  add("attn_q_a.weight", {D, h.q_lora_rank}, C::kProjection);
  add("attn_q_a_norm.weight", {h.q_lora_rank}, C::kVector);
  add("attn_q_b.weight", {h.q_lora_rank, H * Dh}, C::kProjection);
  add("attn_kv.weight", {D, Dh}, C::kProjection);
  add("attn_kv_a_norm.weight", {Dh}, C::kVector);
  add("attn_output_a.weight", {H * Dh / h.o_groups, h.o_groups * h.o_lora_rank}, C::kProjection);
  add("attn_output_b.weight", {h.o_groups * h.o_lora_rank, D}, C::kProjection);
  for (const char* w : {"hc_attn", "hc_ffn"}) {
    add(std::string(w) + "_fn.weight", {hc_dim, hc_mix}, C::kMatrix);
    add(std::string(w) + "_base.weight", {hc_mix}, C::kVector);
    add(std::string(w) + "_scale.weight", {3}, C::kVector);
  }
  if (ratio != 0) {
    const int64_t coff = ratio == 4 ? 2 : 1;
    add("attn_compressor_kv.weight", {D, coff * Dh}, C::kMatrix);
    add("attn_compressor_gate.weight", {D, coff * Dh}, C::kMatrix);
    add("attn_compressor_ape.weight", {coff * Dh, ratio}, C::kMatrix);
    add("attn_compressor_norm.weight", {Dh}, C::kVector);
  }
  if (ratio == 4) {
    const int64_t ihd = h.indexer_head_dim;
    add("indexer.proj.weight", {D, h.n_indexer_head}, C::kMatrix);
    add("indexer.attn_q_b.weight", {h.q_lora_rank, h.n_indexer_head * ihd}, C::kProjection);
    add("indexer_compressor_kv.weight", {D, 2 * ihd}, C::kMatrix);
    add("indexer_compressor_gate.weight", {D, 2 * ihd}, C::kMatrix);
    add("indexer_compressor_ape.weight", {2 * ihd, 4}, C::kMatrix);
    add("indexer_compressor_norm.weight", {ihd}, C::kVector);
  }
  add("ffn_gate_inp.weight", {D, h.n_expert}, C::kMatrix);
  if (hash_routed) {
    add("ffn_gate_tid2eid.weight", {h.n_expert_used, V}, C::kIndex);
  } else {
    add("exp_probs_b.bias", {h.n_expert}, C::kVector);
  }
  add("exp_probs_b_vl.bias", {h.n_expert}, C::kVector, /*req=*/false);  // vision variant
  add("ffn_norm.weight", {D}, C::kVector);
  add("ffn_gate_exps.weight", {D, h.n_ff_exp, h.n_expert}, C::kExperts);
  add("ffn_up_exps.weight", {D, h.n_ff_exp, h.n_expert}, C::kExperts);
  add("ffn_down_exps.weight", {h.n_ff_exp, D, h.n_expert}, C::kExperts);
  const int64_t ff_sh = h.n_ff_exp * h.n_expert_shared;
  if (ff_sh > 0) {
    add("ffn_gate_shexp.weight", {D, ff_sh}, C::kProjection);
    add("ffn_up_shexp.weight", {D, ff_sh}, C::kProjection);
    add("ffn_down_shexp.weight", {ff_sh, D}, C::kProjection);
  }
}

}  // namespace

std::vector<TensorSpec> expected_tensors(const HParams& h) {
  std::vector<TensorSpec> t;
  const int64_t D = h.n_embd, V = h.n_vocab, hc = h.n_hc;
  using C = TensorClass;
  auto add = [&](std::string name, std::vector<int64_t> ne, TensorClass cls, bool req = true) {
    t.push_back({std::move(name), std::move(ne), cls, req});
  };
  add("token_embd.weight", {D, V}, C::kMatrix);
  add("output_norm.weight", {D}, C::kVector);
  add("output.weight", {D, V}, C::kMatrix);
  add("output_hc_fn.weight", {hc * D, hc}, C::kMatrix);
  add("output_hc_base.weight", {hc}, C::kVector);
  add("output_hc_scale.weight", {1}, C::kVector);
  for (int64_t il = 0; il < h.n_layer_all; ++il) {
    const std::string p = "blk." + std::to_string(il) + ".";
    add_block(t, h, p, h.ratio(il), il < h.n_hash_layers);
    if (il >= h.n_layer) {  // MTP block: upstream concatenates the e/h projections into eh_proj;
      // dsv4 also reads them separately (e_proj, h_proj) and the MTP's own HC head (hc_head_*),
      // which upstream's naming lacks (model.h, struct Mtp). One of the two forms is required
      // (checked by validate_tensors).
      add(p + "nextn.eh_proj.weight", {2 * D, D}, C::kProjection, false);
      add(p + "nextn.e_proj.weight", {D, D}, C::kProjection, false);
      add(p + "nextn.h_proj.weight", {D, D}, C::kProjection, false);
      add(p + "nextn.hc_head_fn.weight", {hc * D, hc}, C::kMatrix, false);
      add(p + "nextn.hc_head_base.weight", {hc}, C::kVector, false);
      add(p + "nextn.hc_head_scale.weight", {1}, C::kVector, false);
      add(p + "nextn.enorm.weight", {D}, C::kVector);
      add(p + "nextn.hnorm.weight", {D}, C::kVector);
      add(p + "nextn.embed_tokens.weight", {D, V}, C::kMatrix, false);
      add(p + "nextn.shared_head_head.weight", {D, V}, C::kMatrix, false);
      add(p + "nextn.shared_head_norm.weight", {D}, C::kVector, false);
    }
  }
  return t;
}

std::vector<TensorSpec> expected_ds4_mtp_tensors(const HParams& h) {
  std::vector<TensorSpec> t;
  const int64_t D = h.n_embd, hc = h.n_hc;
  using C = TensorClass;
  const std::string p = "mtp.0.";
  // The MTP block is score-routed; its schedule entry follows the trunk (SWA in Flash).
  const int32_t ratio = static_cast<int64_t>(h.compress_ratios.size()) > h.n_layer_all
                            ? h.ratio(h.n_layer_all) : 0;
  add_block(t, h, p, ratio, /*hash_routed=*/false);
  for (auto& s : t) {
    if (s.name == p + "exp_probs_b.bias") s.required = true;  // ds4 requires it for MTP
  }
  auto add = [&](const char* name, std::vector<int64_t> ne, TensorClass cls) {
    t.push_back({p + name, std::move(ne), cls, true});
  };
  add("e_proj.weight", {D, D}, C::kProjection);
  add("h_proj.weight", {D, D}, C::kProjection);
  add("enorm.weight", {D}, C::kVector);
  add("hnorm.weight", {D}, C::kVector);
  add("norm.weight", {D}, C::kVector);
  add("hc_head_fn.weight", {hc * D, hc}, C::kMatrix);
  add("hc_head_base.weight", {hc}, C::kVector);
  add("hc_head_scale.weight", {1}, C::kVector);
  return t;
}

Status validate_tensors(const GgufModel& f, const HParams& h, std::vector<std::string>* problems) {
  std::vector<std::string> local;
  std::vector<std::string>& out = problems != nullptr ? *problems : local;
  std::set<std::string, std::less<>> known;
  // antirez/ds4's standalone MTP file: only mtp.0.* tensors, loaded beside a main model.
  const bool ds4_mtp = f.find_tensor("token_embd.weight") == nullptr &&
                       f.find_tensor("mtp.0.attn_norm.weight") != nullptr;
  for (const TensorSpec& s : ds4_mtp ? expected_ds4_mtp_tensors(h) : expected_tensors(h)) {
    known.insert(s.name);
    const GgufTensorInfo* t = f.find_tensor(s.name);
    if (t == nullptr) {
      if (s.required) out.push_back(s.name + ": required tensor is missing");
      continue;
    }
    bool same = t->n_dims == s.ne.size();
    for (size_t d = 0; same && d < s.ne.size(); ++d) same = t->ne[d] == s.ne[d];
    if (!same) {
      out.push_back(s.name + ": shape " + shape_str(t->ne, t->n_dims) + ", expected " +
                    shape_str(s.ne.data(), s.ne.size()));
    }
    if (!type_allowed(s.cls, t->type_id)) {
      out.push_back(s.name + ": type " + std::string(t->type->name) + " is not allowed here");
    }
  }
  // MTP blocks: eh_proj, or e_proj and h_proj
  for (int64_t il = h.n_layer; !ds4_mtp && il < h.n_layer_all; ++il) {
    const std::string n = "blk." + std::to_string(il) + ".nextn.";
    const bool eh = f.find_tensor(n + "eh_proj.weight") != nullptr;
    const bool e = f.find_tensor(n + "e_proj.weight") != nullptr, hp = f.find_tensor(n + "h_proj.weight") != nullptr;
    if (!eh && !(e && hp)) out.push_back(n + "eh_proj.weight (or e_proj + h_proj): required tensor is missing");
  }
  for (const GgufTensorInfo* t : f.tensors()) {
    if (known.find(t->name) == known.end()) {
      out.push_back(std::string(t->name) + ": unknown tensor for deepseek4 (block_count " +
                    std::to_string(h.n_layer_all) + ")");
    }
  }
  if (out.empty()) return Status::ok();
  std::string msg = out.front();
  if (out.size() > 1) msg += " (and " + std::to_string(out.size() - 1) + " more problems)";
  return Status(ErrorCode::kInvalidFile, msg);
}

}  // namespace dsv4
