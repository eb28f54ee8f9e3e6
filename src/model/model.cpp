// dsv4 model: weight loading. See model.h; section numbers refer to dsv4-architecture.md.
#include "dsv4/model/model.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <utility>

#include "dsv4/model/tensors.h"
#ifdef DSV4_HAVE_HF_CONVERT
#include "dsv4/model/hf_convert.h"
#endif
#include "dsv4/quant/quant.h"

namespace dsv4::model {

std::vector<float> rope_frequencies(int64_t n_rot, float base, bool yarn, float factor,
                                    int64_t orig_ctx, float beta_fast, float beta_slow) {
  const int64_t half = n_rot / 2;
  std::vector<float> th(static_cast<size_t>(half));
  for (int64_t i = 0; i < half; ++i) {
    const float e = static_cast<float>(2 * i) / static_cast<float>(n_rot);
    th[static_cast<size_t>(i)] = 1.0f / std::pow(base, e);
  }
  if (!yarn) return th;
  const double pi = 3.14159265358979323846;
  auto corr = [&](double n_rotations) {
    return static_cast<double>(n_rot) *
           std::log(static_cast<double>(orig_ctx) / (n_rotations * 2 * pi)) /
           (2 * std::log(static_cast<double>(base)));
  };
  const double low = std::max(std::floor(corr(beta_fast)), 0.0);
  double high = std::min(std::ceil(corr(beta_slow)), static_cast<double>(n_rot - 1));
  if (low == high) high += 0.001;
  for (int64_t i = 0; i < half; ++i) {
    const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
    const float t = th[static_cast<size_t>(i)];
    const float extra = static_cast<float>(1.0 - ramp);
    th[static_cast<size_t>(i)] = (t / factor) * (1.0f - extra) + t * extra;
  }
  return th;
}

namespace {

class Loader {
 public:
  explicit Loader(const GgufModel& f) : f_(f) {}

  Status status() const { return st_; }

  const GgufTensorInfo* info(const std::string& name) {
    if (!st_) return nullptr;
    const GgufTensorInfo* t = f_.find_tensor(name);
    if (t == nullptr) {
      st_ = Status(ErrorCode::kNotFound, "tensor " + name + " is missing");
      return nullptr;
    }
    if (t->type == nullptr || t->data.size() < t->n_bytes) {
      st_ = Status(ErrorCode::kInvalidFile, "tensor " + name + ": no data");
      return nullptr;
    }
    return t;
  }

  Weight matrix(const std::string& name) {
    const GgufTensorInfo* t = info(name);
    if (t == nullptr) return {};
    auto qt = quant::qtype_from_traits(*t->type);
    if (!qt) {
      st_ = Status(qt.status().code(), "tensor " + name + ": " + qt.status().message());
      return {};
    }
    Weight w;
    w.type = *qt;
    w.data = t->data.data();
    w.cols = t->ne[0];
    w.rows = t->n_elements() / t->ne[0];
    w.row_bytes = static_cast<size_t>(t->n_bytes / static_cast<uint64_t>(w.rows));
    bytes_[name] = t->n_bytes;
    types_[std::string(t->type->name)] += t->n_bytes;
    return w;
  }

  std::vector<float> vec(const std::string& name) {
    Weight w = matrix(name);
    if (w.empty()) return {};
    std::vector<float> out(static_cast<size_t>(w.rows * w.cols));
    for (int64_t r = 0; r < w.rows; ++r) {
      Status s = quant::dequantize_row(w.type, w.data + static_cast<size_t>(r) * w.row_bytes,
                                       out.data() + r * w.cols, w.cols);
      if (!s) {
        st_ = Status(s.code(), "tensor " + name + ": " + s.message());
        return {};
      }
    }
    return out;
  }

  HcParams hc(const std::string& pfx) {
    HcParams p;
    p.fn = matrix(pfx + "_fn.weight");
    p.base = vec(pfx + "_base.weight");
    p.scale = vec(pfx + "_scale.weight");
    return p;
  }

  Compressor comp(const std::string& pfx, int32_t ratio) {
    Compressor c;
    c.wkv = matrix(pfx + "_kv.weight");
    c.wgate = matrix(pfx + "_gate.weight");
    c.ape = vec(pfx + "_ape.weight");
    c.norm = vec(pfx + "_norm.weight");
    c.d = static_cast<int64_t>(c.norm.size());
    c.coff = ratio == 4 ? 2 : 1;
    return c;
  }

  uint64_t bytes(const std::string& name) const {
    auto it = bytes_.find(name);
    return it == bytes_.end() ? 0 : it->second;
  }
  uint64_t total() const {
    uint64_t s = 0;
    for (auto& [k, v] : bytes_) s += v;
    return s;
  }
  const std::map<std::string, uint64_t>& types() const { return types_; }

 private:
  const GgufModel& f_;
  Status st_;
  std::map<std::string, uint64_t> bytes_;
  std::map<std::string, uint64_t> types_;
};

}  // namespace

Result<std::unique_ptr<Model>> Model::load(const std::string& path, MapOptions map) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
#ifdef DSV4_HAVE_HF_CONVERT
    ConvertOptions co;
    co.keep_fp8 = true;
    co.include_mtp = true;
    auto bytes = convert_hf_to_gguf_bytes(path, co);
    if (!bytes) return bytes.status();
    auto owned = std::move(*bytes);
    auto gf = GgufFile::parse(owned);
    if (!gf) return Status(gf.status().code(), path + " (converted in memory): " + gf.status().message());
    auto gm = GgufModel::from_file(std::move(*gf));
    if (!gm) return gm.status();
    auto m = from_gguf(std::move(*gm), std::move(owned));
    return m;
#else
    return Status(ErrorCode::kUnsupported, path + ": safetensors directories need the full build");
#endif
  }
  GgufParseOptions po;
  po.map = map;
  auto f = GgufModel::open(path, po);
  if (!f) return f.status();
  return from_gguf(std::move(*f));
}

Result<std::unique_ptr<Model>> Model::from_gguf(GgufModel file) {
  return from_gguf(std::move(file), {});
}

Result<std::unique_ptr<Model>> Model::from_gguf(GgufModel file, std::vector<uint8_t> owned) {
  auto m = std::unique_ptr<Model>(new Model());
  m->owned_ = std::move(owned);
  m->file_ = std::make_unique<GgufModel>(std::move(file));
  const GgufModel& f = *m->file_;
  auto hr = hparams_from_gguf(f);
  if (!hr) return hr.status();
  m->hp_ = *hr;
  const HParams& h = m->hp_;
  DSV4_RETURN_IF_ERROR(validate_tensors(f, h));

  Loader ld(f);
  m->embed_ = ld.matrix("token_embd.weight");
  m->head_ = ld.matrix("output.weight");
  m->out_norm_ = ld.vec("output_norm.weight");
  m->hc_head_ = ld.hc("output_hc");
  m->layers_.resize(static_cast<size_t>(h.n_layer));
  uint64_t active = 0;
  // Loads block il (a trunk layer, or the MTP block at il = n_layer) into L.
  auto load_layer = [&](int64_t il, Layer& L) -> Status {
    const std::string b = "blk." + std::to_string(il) + ".";
    L.ratio = h.ratio(il);
    L.hc_attn = ld.hc(b + "hc_attn");
    L.hc_ffn = ld.hc(b + "hc_ffn");
    L.attn_norm = ld.vec(b + "attn_norm.weight");
    L.ffn_norm = ld.vec(b + "ffn_norm.weight");
    L.wq_a = ld.matrix(b + "attn_q_a.weight");
    L.q_norm = ld.vec(b + "attn_q_a_norm.weight");
    L.wq_b = ld.matrix(b + "attn_q_b.weight");
    L.wkv = ld.matrix(b + "attn_kv.weight");
    L.kv_norm = ld.vec(b + "attn_kv_a_norm.weight");
    L.wo_a = ld.matrix(b + "attn_output_a.weight");
    L.wo_b = ld.matrix(b + "attn_output_b.weight");
    L.sinks = ld.vec(b + "attn_sinks.weight");
    if (L.ratio != 0) L.comp = ld.comp(b + "attn_compressor", L.ratio);
    if (L.ratio == 4) {
      L.idx_comp = ld.comp(b + "indexer_compressor", 4);
      L.idx_wq_b = ld.matrix(b + "indexer.attn_q_b.weight");
      L.idx_proj = ld.matrix(b + "indexer.proj.weight");
    }
    L.gate = ld.matrix(b + "ffn_gate_inp.weight");
    if (il < h.n_hash_layers) {
      std::vector<float> t = ld.vec(b + "ffn_gate_tid2eid.weight");
      L.tid2eid.resize(t.size());
      for (size_t i = 0; i < t.size(); ++i) {
        const float v = t[i];
        if (!(v >= 0 && v < static_cast<float>(h.n_expert))) {
          return Status(ErrorCode::kInvalidFile, b + "ffn_gate_tid2eid.weight: entry " +
                                                     std::to_string(i) + " is not an expert id");
        }
        L.tid2eid[i] = static_cast<int32_t>(v);
      }
    } else {
      L.gate_bias = ld.vec(b + "exp_probs_b.bias");
    }
    L.experts.gate = ld.matrix(b + "ffn_gate_exps.weight");
    L.experts.up = ld.matrix(b + "ffn_up_exps.weight");
    L.experts.down = ld.matrix(b + "ffn_down_exps.weight");
    L.experts.n_ff = h.n_ff_exp;
    L.experts.n_embd = h.n_embd;
    if (h.n_expert_shared > 0) {
      L.shared.gate = ld.matrix(b + "ffn_gate_shexp.weight");
      L.shared.up = ld.matrix(b + "ffn_up_shexp.weight");
      L.shared.down = ld.matrix(b + "ffn_down_shexp.weight");
      L.shared.n_ff = L.shared.gate.rows;
      L.shared.n_embd = h.n_embd;
    }
    L.clamp_exp = h.swiglu_clamp_exp[static_cast<size_t>(il)];
    L.clamp_shexp = h.swiglu_clamp_shexp[static_cast<size_t>(il)];
    return ld.status();
  };
  for (int64_t il = 0; il < h.n_layer; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    DSV4_RETURN_IF_ERROR(load_layer(il, m->layers_[static_cast<size_t>(il)]));
    // bytes one token reads in this layer: everything but the routed experts, plus k of them
    uint64_t experts = 0;
    for (const char* e : {"ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight"})
      experts += ld.bytes(b + e);
    active += experts / static_cast<uint64_t>(h.n_expert) * static_cast<uint64_t>(h.n_expert_used);
  }
  DSV4_RETURN_IF_ERROR(ld.status());
  if (h.n_nextn > 0) {  // the first MTP block (§10)
    const int64_t il = h.n_layer;
    const std::string n = "blk." + std::to_string(il) + ".nextn.";
    auto mtp = std::make_unique<Mtp>();
    DSV4_RETURN_IF_ERROR(load_layer(il, mtp->block));
    const GgufModel& gf = *m->file_;
    if (gf.find_tensor(n + "e_proj.weight") != nullptr) {
      mtp->e_proj = ld.matrix(n + "e_proj.weight");
      mtp->h_proj = ld.matrix(n + "h_proj.weight");
    } else {
      mtp->eh_proj = ld.matrix(n + "eh_proj.weight");
    }
    mtp->enorm = ld.vec(n + "enorm.weight");
    mtp->hnorm = ld.vec(n + "hnorm.weight");
    mtp->norm = gf.find_tensor(n + "shared_head_norm.weight") != nullptr ? ld.vec(n + "shared_head_norm.weight")
                                                                         : m->out_norm_;
    mtp->hc_head = gf.find_tensor(n + "hc_head_fn.weight") != nullptr ? ld.hc(n + "hc_head") : m->hc_head_;
    DSV4_RETURN_IF_ERROR(ld.status());
    m->mtp_ = std::move(mtp);
  }
  if (m->hc_head_.base.size() != static_cast<size_t>(h.n_hc) || m->hc_head_.scale.empty()) {
    return Status(ErrorCode::kInvalidFile, "output_hc_base/scale: wrong size");
  }
  m->weight_bytes_ = ld.total();
  // dense part: every mapped tensor except routed experts and the embedding table
  uint64_t routed = 0;
  for (int64_t il = 0; il < h.n_layer; ++il) {
    const std::string b = "blk." + std::to_string(il) + ".";
    for (const char* e : {"ffn_gate_exps.weight", "ffn_up_exps.weight", "ffn_down_exps.weight"})
      routed += ld.bytes(b + e);
  }
  const uint64_t embed = ld.bytes("token_embd.weight");
  m->active_bytes_ = (m->weight_bytes_ - routed - embed) + active +
                     embed / static_cast<uint64_t>(std::max<int64_t>(1, h.n_vocab));
  m->freqs_swa_ = rope_frequencies(h.n_rot, h.rope_freq_base, false, 1, 0, 0, 0);
  m->freqs_comp_ = rope_frequencies(h.n_rot, h.compress_rope_freq_base, h.rope_yarn_factor > 1.0f,
                                    h.rope_yarn_factor, h.rope_yarn_orig_ctx,
                                    h.rope_yarn_beta_fast, h.rope_yarn_beta_slow);
  return m;
}

std::string Model::weights_residency() const {
  const std::string mode = file_->load_mode();
  if (mode.empty()) return "in memory";
  const size_t held = file_->held_bytes();
  const double pct = held > 0 ? 100.0 * static_cast<double>(file_->huge_bytes()) / static_cast<double>(held) : 0.0;
  char buf[96];
  std::snprintf(buf, sizeof buf, "%s, %.0f%% in 2 MiB pages", mode.c_str(), pct);
  return buf;
}

std::string Model::type_mix() const {
  std::map<std::string, uint64_t> by;
  for (const GgufTensorInfo* t : file_->tensors())
    if (t->type != nullptr) by[std::string(t->type->name)] += t->n_bytes;
  std::vector<std::pair<uint64_t, std::string>> v;
  for (auto& [k, b] : by) v.emplace_back(b, k);
  std::sort(v.rbegin(), v.rend());
  std::string s;
  for (auto& [b, k] : v) {
    if (!s.empty()) s += ", ";
    char buf[64];
    std::snprintf(buf, sizeof buf, "%s %.1f%%", k.c_str(),
                  100.0 * static_cast<double>(b) / static_cast<double>(std::max<uint64_t>(1, weight_bytes_)));
    s += buf;
  }
  return s;
}

}  // namespace dsv4::model
