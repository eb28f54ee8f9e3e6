// dsv4 backend: the DeepSeek-V4-level op interface (issue 5, scope 1; docs/design.md §2).
//
// The forward pass (src/model/forward.cpp) is written once against this interface. Each backend
// implements every op:
//   * `ref` (src/backend/ref, RefOps): scalar loops, float64 accumulation, reads like the spec;
//     the oracle of the op tests;
//   * `cpu` (src/backend/cpu, CpuOps): SIMD (AVX-512 / AVX2+FMA / portable, runtime dispatch,
//     forced by DSV4_SIMD=scalar|avx2|avx512) and threads;
//   * `cuda` later (issue 8).
//
// Conventions (every op):
//   * Activations are float32, row-major, one row per token: `x [n][dim]` means n rows of `dim`
//     contiguous floats (no padding unless a stride argument says so). Units are the model's.
//   * Weights are used in their stored format (Weight below), never expanded to float copies.
//   * Section numbers refer to ../shared/docs/dsv4-architecture.md.
//   * Determinism: the value written for one token's row depends only on that token's inputs and
//     the weights, never on n, on other tokens in the call or on the thread count (each output
//     element is reduced in a fixed order by one thread). The forward pass relies on this for
//     batch invariance (issue 5, scope 3).
//   * Ops never allocate per call in the steady state except where noted, never throw, and
//     abort only on broken preconditions of the caller (our own bug), never on data values.
//   * Threading: an Ops object may be called from one thread at a time; it may use its own
//     worker threads inside a call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "dsv4/quant/quant.h"

namespace dsv4::backend {

// A 2-D weight matrix in its stored block format: `rows` rows of `cols` elements, row r at
// data + r·row_bytes (PyTorch [out, in]; GGUF ne = {cols, rows}). cols is a multiple of the
// type's block size. A 3-D expert tensor is `rows·n_expert` rows; expert e's matrix starts at
// data + e·rows·row_bytes (see expert()).
struct Weight {
  quant::QType type = quant::QType::kF32;
  const uint8_t* data = nullptr;
  int64_t cols = 0;
  int64_t rows = 0;
  size_t row_bytes = 0;

  // The matrix of expert e of a stacked tensor with `rows_per_expert` rows each.
  Weight expert(int64_t e, int64_t rows_per_expert) const {
    Weight w = *this;
    w.rows = rows_per_expert;
    w.data = data + static_cast<size_t>(e * rows_per_expert) * row_bytes;
    return w;
  }
  bool empty() const { return data == nullptr; }
};

// HC parameters of one sublayer or of the head (§5.1, §5.4): fn [(2+hc)·hc or hc rows][hc·D],
// base [(2+hc)·hc or hc], scale [3 or 1]; base/scale are float32 vectors.
struct HcWeights {
  Weight fn;
  const float* base = nullptr;
  const float* scale = nullptr;
};

// One MoE expert set of a layer (§8.2): gate (w1) and up (w3) [n_ff rows][D], down (w2)
// [D rows][n_ff] per expert, stacked over n_expert (Weight::expert).
struct ExpertWeights {
  Weight gate, up, down;
  int64_t n_ff = 0;    // rows of gate/up per expert
  int64_t n_embd = 0;  // rows of down per expert
};

// Preconditions every backend checks on entry (DSV4_CHECK: a broken invariant of our own code,
// never a data value): a weight's layout is consistent with its type, and an expert set's three
// stacked matrices agree. n_expert_of returns the number of stacked experts.
inline void check_weight_layout(const Weight& w) {
  const quant::QTypeInfo* info = quant::qtype_info(w.type);
  DSV4_CHECK(info != nullptr);
  DSV4_CHECK(w.data != nullptr && w.cols > 0 && w.rows >= 0);
  DSV4_CHECK(w.cols % info->block_size == 0);
  DSV4_CHECK(w.row_bytes >= static_cast<size_t>(w.cols / info->block_size) * info->type_size);
}
inline int64_t n_expert_of(const ExpertWeights& ew) {
  check_weight_layout(ew.gate);
  check_weight_layout(ew.up);
  check_weight_layout(ew.down);
  const int64_t I = ew.n_ff, D = ew.n_embd;
  DSV4_CHECK(I > 0 && D > 0 && ew.gate.rows % I == 0 && ew.up.rows == ew.gate.rows);
  DSV4_CHECK(ew.gate.cols == D && ew.up.cols == D && ew.down.cols == I);
  const int64_t E = ew.gate.rows / I;
  DSV4_CHECK(ew.down.rows == E * D);
  return E;
}

// How matmul and moe treat the activations they multiply with a quantized weight.
//   * kF32: float32 activations; the result is the dot of the dequantized weight row with x (the
//     exact path the model tests against the reference fixtures use).
//   * kQ8: upstream llama.cpp's CPU numerics: before a dot with a quantized weight, each
//     activation row is rounded through that weight type's `vec_dot_type` (dsv4/quant/
//     act_quant.h act_format_of): q8_0 blocks for q8_0 / mxfp4 / iq4_nl, q8_K blocks for the K
//     and the other IQ types, bf16 / f16 for 16-bit weights; f32 weights keep float32. The CPU
//     backend then takes integer dot products where it has kernels (q8_0, mxfp4, iq4_nl, q2_K,
//     q4_K, iq2_xxs) and float ones over the rounded row otherwise. In moe, h is rounded without
//     the routing weight and the weight multiplies the down projection's output, as upstream.
//     Still finer than the official model's own §9.1 FP8 activation quantization (e4m3 values,
//     one scale per 128), and a per-row operation, so the determinism rule above holds.
enum class ActQuant { kF32 = 0, kQ8 = 1 };  // act_quant_name: "f32", "q8"

class Ops {
 public:
  virtual ~Ops() = default;
  // "ref", "cpu[avx2]", ...: the implementation and the SIMD level it runs.
  virtual std::string name() const = 0;

  // The activation treatment of later matmul / moe calls (default kF32). A backend without a
  // kQ8 path keeps float32 and says so in act_quant().
  virtual void set_act_quant(ActQuant a) { act_quant_ = a; }
  ActQuant act_quant() const { return act_quant_; }

  // y[t][r] = Σ_c W[r][c]·x[t][c] (§1) for t < n, r < w.rows. x row t at x + t·ldx (ldx ≥
  // w.cols), y row t at y + t·ldy (ldy ≥ w.rows). x and y do not overlap.
  virtual void matmul(const Weight& w, const float* x, int64_t ldx, int64_t n, float* y,
                      int64_t ldy) = 0;

  // y[t] = w ⊙ x[t] / sqrt(mean(x[t]²) + eps) (§1) for n rows of dim; w == nullptr: unweighted.
  // y may equal x.
  virtual void rms_norm(const float* x, const float* w, int64_t n, int64_t dim, float eps,
                        float* y) = 0;

  // HC mixing coefficients (§5.1, §5.2) of n tokens: X [n][hc][D] (stream-major per token);
  // writes pre [n][hc], post [n][hc], comb [n][hc][hc] (comb[t][j][k] = C[j][k]).
  virtual void hc_coeffs(const float* X, int64_t n, int64_t hc, int64_t D, const HcWeights& p,
                         float norm_eps, float hc_eps, int64_t sinkhorn_iters, float* pre,
                         float* post, float* comb) = 0;
  // u[t] = Σ_j pre[t][j]·X[t][j] (§5.3): u [n][D].
  virtual void hc_pre(const float* X, int64_t n, int64_t hc, int64_t D, const float* pre,
                      float* u) = 0;
  // X[t][k] ← post[t][k]·F[t] + Σ_j comb[t][j][k]·X[t][j] (§5.3), in place; F [n][D].
  virtual void hc_post(float* X, int64_t n, int64_t hc, int64_t D, const float* post,
                       const float* comb, const float* F) = 0;
  // HC head (§5.4): y[t] = Σ_j (sigmoid(m[j]·scale[0] + base[j]) + hc_eps)·X[t][j] with
  // m = fn·RMSNorm(X[t]) (unweighted, over hc·D): y [n][D].
  virtual void hc_head(const float* X, int64_t n, int64_t hc, int64_t D, const HcWeights& p,
                       float norm_eps, float hc_eps, float* y) = 0;

  // RoPE (§7.1), interleaved pairs on the LAST 2·n_freq channels of each head: x [n][heads][dim];
  // token t rotates by φ_i = float(pos[t])·freqs[i] (fp32 product), inverse: by −φ_i.
  virtual void rope(float* x, int64_t n, int64_t heads, int64_t dim, const float* freqs,
                    int64_t n_freq, const int64_t* pos, bool inverse) = 0;

  // Sparse attention with sinks (§7.6), one shared K = V row set: for token t and head h,
  //   s_k = scale·(q[t][h] · kv[idx_k]) over k in rows_of(t) = indices[offsets[t] .. offsets[t+1]),
  //   out[t][h] = Σ_k softmax_k(s ∪ {sinks[h]}) · kv[idx_k]   (the sink takes mass, adds no value).
  // q [n][H][Dh], kv [*][Dh], out [n][H][Dh]. A token with no rows writes zeros.
  virtual void attention(const float* q, int64_t n, int64_t H, int64_t Dh, const float* kv,
                         const int64_t* offsets, const int32_t* indices, const float* sinks,
                         float scale, float* out) = 0;

  // Lightning-indexer scores (§7.5): for token t and key j < n_vis[t],
  //   score[t][j] = Σ_h wI[t][h]·scale·relu(qI[t][h] · keys[j]),
  // qI [n][nI][dI], wI [n][nI], keys [*][dI], score row t at score + t·ld_score.
  virtual void indexer_scores(const float* qI, const float* wI, int64_t n, int64_t nI,
                              int64_t dI, const float* keys, const int64_t* n_vis, float scale,
                              float* score, int64_t ld_score) = 0;

  // MoE experts with clamped SwiGLU (§8.2), accumulated into y [n][D] (y is NOT cleared):
  //   for token t and k < n_used: e = ids[t][k] (skipped when < 0), w = weights[t][k],
  //   h = w · silu(min(gate_e·x, limit)) ⊙ clamp(up_e·x, ±limit);  y[t] += down_e · h.
  // x [n][D], ids/weights [n][n_used]. The shared expert is the same op with n_used = 1,
  // ids 0, weight 1 over its own (unstacked) ExpertWeights. The sum over k is in k order.
  virtual void moe(const ExpertWeights& ew, const float* x, int64_t n, int64_t n_used,
                   const int32_t* ids, const float* weights, float limit, float* y) = 0;

 protected:
  ActQuant act_quant_ = ActQuant::kF32;
};

inline const char* act_quant_name(ActQuant a) { return a == ActQuant::kQ8 ? "q8" : "f32"; }

}  // namespace dsv4::backend
