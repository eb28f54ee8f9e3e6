// dsv4 model: DeepSeek-V4 weights as the forward pass uses them (issue 5, scope 2).
//
// Matrices stay in their stored block format (backend::Weight views into the mapped file, never
// expanded); 1-D tensors (norms, biases, sinks, HC base/scale; F32/F16/BF16 in the file) are
// converted once to float32 vectors owned here; tid2eid (I32) is copied. Every shape comes from
// the hyperparameters read from the file and is checked by validate_tensors before use.
//
// Lifetime: a Model owns its GgufModel (the mapping); Weight views stay valid while it lives.
// Threading: immutable after load; shared by every sequence and thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dsv4/backend/ops.h"
#include "dsv4/core/status.h"
#include "dsv4/format/gguf_model.h"
#include "dsv4/model/hparams.h"

namespace dsv4::model {

using backend::ExpertWeights;
using backend::HcWeights;
using backend::Weight;

// HC parameters with owned base/scale (HcWeights points into them).
struct HcParams {
  Weight fn;
  std::vector<float> base, scale;
  HcWeights view() const { return {fn, base.data(), scale.data()}; }
};

// A compressor (§7.4): wkv/wgate [coff·d rows][D], ape [r][coff·d] (float), norm [d].
struct Compressor {
  Weight wkv, wgate;
  std::vector<float> ape, norm;
  int64_t d = 0;      // output row size
  int64_t coff = 0;   // 2 for ratio 4 (overlapping windows), 1 for ratio 128
};

struct Layer {
  int32_t ratio = 0;  // 0 SWA, 4 CSA, 128 HCA
  HcParams hc_attn, hc_ffn;
  std::vector<float> attn_norm, ffn_norm, q_norm, kv_norm, sinks;
  Weight wq_a, wq_b, wkv, wo_a, wo_b;  // [R_q][D], [H·Dh][R_q], [Dh][D], [G·R_o][H·Dh/G], [D][G·R_o]
  Compressor comp;                      // ratio 4 / 128
  Compressor idx_comp;                  // ratio 4 (d = indexer head dim)
  Weight idx_wq_b, idx_proj;            // [nI·dI][R_q], [nI][D]
  Weight gate;                          // router [E][D]
  std::vector<float> gate_bias;         // [E] (score-routed layers)
  std::vector<int32_t> tid2eid;         // [n_vocab][k] (hash-routed layers)
  ExpertWeights experts;                // routed, stacked
  ExpertWeights shared;                 // shared expert (n_expert_shared·n_ff rows), may be empty
  float clamp_exp = 0, clamp_shexp = 0;
};

// The MTP block (§10), stored as upstream's `blk.{n_layer}.*` + `blk.{n_layer}.nextn.*`: a full
// block (SWA in Flash) plus either eh_proj [D][2D] (upstream: [e ; h] concatenated) or e_proj and
// h_proj [D][D] (dsv4's names for the official separate projections), enorm, hnorm, the head norm
// (nextn.shared_head_norm; else output_norm) and the MTP's own HC head (nextn.hc_head_{fn,base,
// scale}, a dsv4 extension; upstream files lack it and then the trunk's HC head is used, as
// upstream llama.cpp does).
struct Mtp {
  Layer block;
  Weight eh_proj, e_proj, h_proj;
  std::vector<float> enorm, hnorm, norm;
  HcParams hc_head;
};

class Model {
 public:
  // Opens a DeepSeek-V4 GGUF (any shard of a split set) and maps its weights, or an official
  // Hugging Face safetensors directory (config.json + model*.safetensors [+ index] [+
  // tokenizer.json]), whose weights are repacked losslessly in memory into the same block
  // formats (FP8 → f8_e4m3_b128, FP4 → mxfp4; hf_convert.h convert_hf_to_gguf_bytes with
  // keep_fp8), so both paths give identical weights. Errors name the file, key or tensor.
  // `map`: how a GGUF's bytes are held (mapped_file.h; by default read into 2 MiB pages when the
  // file takes at most half the RAM, else mapped 2 MiB-aligned: the page size is worth about a
  // quarter of decode speed); ignored for a safetensors directory.
  static Result<std::unique_ptr<Model>> load(const std::string& path,
                                             MapOptions map = {LoadMode::kAuto, true});
  // Same over an already opened file (the Model takes ownership).
  static Result<std::unique_ptr<Model>> from_gguf(GgufModel file);

  const HParams& hparams() const { return hp_; }
  const std::vector<Layer>& layers() const { return layers_; }
  const Weight& embed() const { return embed_; }   // [n_vocab][D]
  const Weight& head() const { return head_; }     // [n_vocab][D]
  const std::vector<float>& out_norm() const { return out_norm_; }
  const HcParams& hc_head() const { return hc_head_; }
  // The first MTP block, or nullptr when the file has none.
  const Mtp* mtp() const { return mtp_.get(); }
  const GgufModel& file() const { return *file_; }
  // RoPE frequencies θ'_i (§7.1) of a layer kind: compressed (ratio ≠ 0, YaRN) or plain.
  const std::vector<float>& rope_freqs(bool compressed) const {
    return compressed ? freqs_comp_ : freqs_swa_;
  }
  // Bytes of every weight the trunk reads (the file's tensor data), and the bytes one decode
  // token touches (dense weights + n_expert_used routed experts per layer + one embedding row).
  uint64_t weight_bytes() const { return weight_bytes_; }
  uint64_t active_bytes_per_token() const { return active_bytes_; }
  // "q8_0 x120, mxfp4 x12, f32 x80": the stored types of the tensors, most bytes first.
  std::string type_mix() const;
  // How the weights are held, e.g. "mmap, 98% in 2 MiB pages" or "read, 100% in 2 MiB pages"
  // ("in memory" for a converted safetensors directory).
  std::string weights_residency() const;

 private:
  // `owned` holds the bytes `file` views (a GGUF built in memory), or is empty for a mapped file.
  static Result<std::unique_ptr<Model>> from_gguf(GgufModel file, std::vector<uint8_t> owned);
  std::vector<uint8_t> owned_;  // the in-memory GGUF of a safetensors directory (before file_)
  std::unique_ptr<GgufModel> file_;
  HParams hp_;
  std::vector<Layer> layers_;
  Weight embed_, head_;
  std::vector<float> out_norm_;
  HcParams hc_head_;
  std::unique_ptr<Mtp> mtp_;
  std::vector<float> freqs_swa_, freqs_comp_;
  uint64_t weight_bytes_ = 0, active_bytes_ = 0;
};

// RoPE frequencies (§7.1): θ_i = base^(−2i/n_rot) in fp32, with static YaRN when `yarn`.
std::vector<float> rope_frequencies(int64_t n_rot, float base, bool yarn, float factor,
                                    int64_t orig_ctx, float beta_fast, float beta_slow);

}  // namespace dsv4::model
