// dsv4 backend/ref: the scalar reference forward pass of DeepSeek-V4 (issue 5, scope 1-2, the
// `ref` side). Plain loops, float64 storage and accumulation, one function per op of
// dsv4-architecture.md in execution order. It is the oracle for op tests and the first thing
// checked against the reference fixtures; it is not meant to be fast.
//
// Quantisation simulation (§9.2, §9.3) is optional (RefOptions); with it off the result matches
// the fixtures' `simoff` mode (plain transformers), with it on the `simon` mode. §9.1 activation
// quantisation is not implemented.
//
// The model is run token by token (§13: one step per token through every layer, with
// per-sequence state), which by §12 gives the same result as a prefill of the whole sequence:
// `prefill` is a loop of `step`. Indexer top-k ties go to the lower row
// index (stable sort, descending score), as the fixtures' tie-break does.
//
// Every size comes from the GGUF file (hparams_from_gguf); weights of any stored type are
// dequantised to float64 once at load (dsv4::quant::dequantize_row).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "dsv4/core/status.h"
#include "dsv4/format/gguf_model.h"
#include "dsv4/model/hparams.h"

namespace dsv4::ref {

// A dense row-major matrix [rows][cols] (PyTorch [out, in]; GGUF ne = {cols, rows}).
struct Mat {
  int64_t rows = 0, cols = 0;
  std::vector<double> d;
  const double* row(int64_t r) const { return d.data() + r * cols; }
};

// HC wrapper parameters (§5.1): fn [(2+hc)·hc, hc·D], base [(2+hc)·hc], scale [3].
struct HcParams {
  Mat fn;
  std::vector<double> base, scale;
};

// A compressor (§7.4): wkv/wgate [coff·d, D], ape [r, coff·d], norm [d].
struct CompressorWeights {
  Mat wkv, wgate, ape;
  std::vector<double> norm;
};

struct LayerWeights {
  int32_t ratio = 0;  // 0 SWA, 4 CSA, 128 HCA
  HcParams hc_attn, hc_ffn;
  std::vector<double> attn_norm, ffn_norm;
  Mat wq_a, wq_b, wkv, wo_a, wo_b;        // wq_a [R_q, D], wq_b [H·Dh, R_q], wkv [Dh, D],
                                          // wo_a [G·R_o, H·Dh/G], wo_b [D, G·R_o]
  std::vector<double> q_norm, kv_norm, sinks;
  CompressorWeights comp;                 // ratio 4 / 128
  CompressorWeights idx_comp;             // ratio 4 only (d = indexer head dim)
  Mat idx_wq_b, idx_proj;                 // [nI·dI, R_q], [nI, D]
  // MoE (§8)
  Mat gate;                               // [E, D]
  std::vector<double> gate_bias;          // [E] (score-routed layers only)
  std::vector<int32_t> tid2eid;           // [vocab][k] (hash-routed layers only)
  std::vector<Mat> w1, w3, w2;            // per expert: w1/w3 [I, D], w2 [D, I]
  Mat sh_w1, sh_w3, sh_w2;                // shared expert (n_expert_shared × I merged)
};

struct RefWeights {
  Mat embed;                              // [vocab, D]
  std::vector<LayerWeights> layers;       // trunk layers only
  Mat hc_head_fn;                         // [hc, hc·D]
  std::vector<double> hc_head_base, hc_head_scale;
  std::vector<double> out_norm;
  Mat head;                               // [vocab, D]
};

// Named intermediates (for debugging), called during step() with the name, the layer (−1 for
// globals), the position and the values. Names follow tests/fixtures/<cfg>/intermediates:
// "embed", per layer "attn_norm", "qr", "q_normed" [H][Dh] (before RoPE), "kv_unrounded",
// "kv" (after the §9.2 round-trip, before RoPE), "indexer_key_row" and "compressed_row" (when this
// token emits one: final, as stored), "indexer_scores" [n_vis], "indexer_topk", "attn_out",
// "hc_after_attn" [hc][D], "ffn_norm", "router_experts", "router_weights", "moe_out",
// "l_out" [hc][D]; then "hc_head_out", "final_norm".
using Observer =
    std::function<void(const std::string& name, int layer, int64_t pos, std::span<const double>)>;

// Per-sequence state of one layer (§11.1), kept in full (a reference: nothing is evicted).
struct LayerState {
  std::vector<std::vector<double>> raw;       // raw KV row of every position [Dh]
  // compressor inputs of every position: c = wkv·a, z = wgate·a + ape[p mod r]  [coff·d]
  std::vector<std::vector<double>> comp_c, comp_z, idx_c, idx_z;
  std::vector<std::vector<double>> comp_rows;  // emitted compressed rows [d]
  std::vector<std::vector<double>> idx_rows;   // emitted indexer key rows [dI]
};

// Which quantisation-simulation steps of the reference numerics to apply (default: none).
struct RefOptions {
  bool kv_fp8 = false;       // §9.2: FP8 e4m3 round-trip (per 64) of the nope part of raw and
                             // attention-compressor KV rows
  bool indexer_fp4 = false;  // §9.3: Hadamard + FP4 e2m1 round-trip (per 32) of indexer q and keys
};

class RefModel {
 public:
  // Opens a DeepSeek-V4 GGUF and dequantises every trunk tensor to float64.
  static Result<RefModel> load(const std::string& path, RefOptions opts = {});

  const HParams& hparams() const { return hp_; }
  const RefWeights& weights() const { return w_; }

  // Clears the per-sequence state (position 0 next).
  void reset();
  // Runs one token at the next position; returns its logits [vocab].
  std::vector<double> step(int32_t token);
  // Runs tokens at the next positions; returns logits [T][vocab] (row-major).
  std::vector<double> prefill(std::span<const int32_t> tokens);
  int64_t position() const { return pos_; }

  void set_observer(Observer obs) { obs_ = std::move(obs); }
  // Indexer selection of the last step for each CSA layer (−1 entries never appear).
  const std::vector<std::vector<int64_t>>& last_selection() const { return last_sel_; }

 private:
  HParams hp_;
  RefOptions opts_;
  RefWeights w_;
  std::vector<LayerState> st_;
  int64_t pos_ = 0;
  Observer obs_;
  std::vector<std::vector<int64_t>> last_sel_;

  void emit(const char* name, int layer, std::span<const double> v) const;
  std::vector<double> attention(int il, std::span<const double> a, int64_t p);
  std::vector<double> moe(int il, std::span<const double> b, int32_t token);
};

// ---- ops (dsv4-architecture.md), exposed for op tests ------------------------------------------

// y = W x (§1). x has W.cols entries; returns W.rows entries.
std::vector<double> matvec(const Mat& w, std::span<const double> x);
// RMSNorm_w(x) = w ⊙ x / sqrt(mean(x²) + eps) (§1); w empty = unweighted.
std::vector<double> rms_norm(std::span<const double> x, std::span<const double> w, double eps);

// HC mixing coefficients (§5.1, §5.2): X is [hc][D] stream-major.
struct HcCoeffs {
  std::vector<double> pre, post;  // [hc]
  std::vector<double> comb;       // [hc][hc], C[j][k]
};
HcCoeffs hc_coeffs(std::span<const double> X, int hc, const HcParams& p, double norm_eps,
                   double hc_eps, int sinkhorn_iters);
// u = Σ_j pre[j]·X[j] (§5.3).
std::vector<double> hc_pre(std::span<const double> X, int hc, std::span<const double> pre);
// X'[k] = post[k]·F + Σ_j C[j][k]·X[j] (§5.3).
std::vector<double> hc_post(std::span<const double> X, int hc, const HcCoeffs& c,
                            std::span<const double> F);
// HC head (§5.4): y = Σ_j (sigmoid(m[j]·scale + base[j]) + eps)·X[j].
std::vector<double> hc_head(std::span<const double> X, int hc, const Mat& fn,
                            std::span<const double> base, std::span<const double> scale,
                            double norm_eps, double hc_eps);

// Rotates the LAST 2·freqs.size() channels of x in interleaved pairs by φ = float(p)·θ'_i
// (inverse: by −φ) (§7.1); the frequencies come from dsv4::model::rope_frequencies (model.h).
void rope(std::span<double> x, std::span<const float> freqs, int64_t p, bool inverse);

// §9.2: per block of `block` values (computed in fp32 like the reference): amax = max(|x|, 1e-4),
// s = 2^ceil(log2(amax/448)), x ← e4m3_rne(clamp(x/s, ±448))·s.
void fp8_roundtrip(std::span<double> x, int64_t block);
// §9.3: per block of 32: amax = max(|x|, 6·2^-126), s = 2^ceil(log2(amax/6)),
// x ← e2m1_rne(clamp(x/s, ±6))·s.
void fp4_roundtrip(std::span<double> x, int64_t block);
// §9.3: orthonormal Sylvester Walsh–Hadamard transform of x (size a power of two), in fp32 with the
// butterfly order (a+b, a−b) over strides 1, 2, …, n/2, then × 1/sqrt(n).
void hadamard(std::span<double> x);

}  // namespace dsv4::ref
