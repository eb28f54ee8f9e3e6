// dsv4 CUDA backend, internal: the launch interface between the host code (cuda_ops.cpp, C++20)
// and the kernels (*.cu, CUDA C++17, in the shared library dsv4_cuda). Plain types only, so both
// sides compile it; not installed, not a public header.
//
// Every pointer is a DEVICE pointer unless its name says host_. Launches are asynchronous on
// `stream`; a launch that the CUDA runtime refuses returns its error string ("" on success).
// Shapes and strides are the ones of ops.h; the host side has already checked them.
//
// Numerics (the determinism rule of ops.h): every output element is computed by one warp or one
// thread in an order that depends only on that element's own inputs and shapes, never on n, on
// the grid, or on which kernel variant (token tile 1 or 8) ran it. Dequantization rounds each
// product on its own (__fmul_rn / __fsub_rn), so a dequantized weight is bit-identical to
// dsv4::quant::dequantize_row; dot products accumulate with explicit fused multiply-adds.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>

namespace dsv4::cuda {

// Weight types the matmul kernels take (values of dsv4::quant::QType).
enum class KType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ8_0 = 8,
  kQ2_K = 10,
  kQ4_K = 12,
  kIQ2_XXS = 16,
  kBF16 = 30,
  kMXFP4 = 39,
  kF8_E4M3_B128 = 0x1002A,
};
bool ktype_supported(uint32_t qtype);

// Uploads the format tables the kernels read (IQ2_XXS grid, the shared 7-bit sign table, the
// MXFP4 value table) into the current device's memory. Called once per device with the host
// tables of dsv4_quant (dsv4/quant/iq_tables.h), which stay the one definition of that data.
std::string upload_quant_tables(const uint64_t* host_iq2xxs_grid /*[256]*/,
                                const uint8_t* host_ksigns /*[128]*/,
                                const int8_t* host_kvalues_mxfp4 /*[16]*/);

// Grouped matmul, the one kernel behind matmul and the MoE projections:
//   for each group g < n_groups (expert e = group_expert ? group_expert[g] : 0), each slot s in
//   group_start[g] .. group_start[g+1] (slot list `slots`, or the identity when slots == nullptr;
//   without groups: one group of slots 0 .. n), each row r < rows:
//     y[s·ldy + r] = Σ_c W_e[r][c] · x[(s / x_div)·ldx + c]
//   with W_e's row r at w + (e·rows + r)·row_bytes. cols is a multiple of the block size.
struct MatmulArgs {
  uint32_t qtype = 0;
  const uint8_t* w = nullptr;
  size_t row_bytes = 0;
  int64_t rows = 0;  // rows per group (expert)
  int64_t cols = 0;
  const float* x = nullptr;
  int64_t ldx = 0;
  int64_t x_div = 1;
  float* y = nullptr;
  int64_t ldy = 0;
  int64_t n = 0;                          // slots when group_start == nullptr
  int64_t n_groups = 1;                   // ≤ 65535
  const int32_t* group_expert = nullptr;  // [n_groups] or nullptr
  const int32_t* group_start = nullptr;   // [n_groups + 1] or nullptr
  const int32_t* slots = nullptr;         // or nullptr (identity)
  int64_t max_group_slots = 0;            // largest group (chooses the token tile; any value ≥ 1 is correct)
};
std::string launch_matmul(const MatmulArgs& a, cudaStream_t stream);

// y[t] = w ⊙ x[t] · r_t, r_t = 1/sqrt(mean(x[t]²) + eps) (sum of squares in double); w may be
// nullptr; y may equal x.
std::string launch_rms_norm(const float* x, const float* w, int64_t n, int64_t dim, float eps,
                            float* y, cudaStream_t stream);
// m[t][i] *= r_t (i < m_cols) with r_t the RMS factor of X[t] (F values each).
std::string launch_rms_scale(const float* X, int64_t n, int64_t F, float eps, float* m,
                             int64_t m_cols, cudaStream_t stream);

// HC coefficients from m [n][(2+hc)·hc] (already RMS-scaled): pre, post, comb as ops.h, in
// double; base [(2+hc)·hc], scale [3]. hc ≤ kMaxHc.
inline constexpr int64_t kMaxHc = 8;
std::string launch_hc_coeffs_finish(const float* m, int64_t n, int64_t hc, const float* base,
                                    const float* scale, float hc_eps, int64_t sinkhorn_iters,
                                    float* pre, float* post, float* comb, cudaStream_t stream);
// u[t] = Σ_j pre[t][j]·X[t][j].
std::string launch_hc_pre(const float* X, int64_t n, int64_t hc, int64_t D, const float* pre,
                          float* u, cudaStream_t stream);
// X[t][k] ← post[t][k]·F[t] + Σ_j comb[t][j][k]·X[t][j], in place.
std::string launch_hc_post(float* X, int64_t n, int64_t hc, int64_t D, const float* post,
                           const float* comb, const float* F, cudaStream_t stream);
// y[t] = Σ_j (sigmoid(m[t][j]·scale[0] + base[j]) + hc_eps)·X[t][j]; m [n][hc] RMS-scaled.
std::string launch_hc_head_finish(const float* X, const float* m, int64_t n, int64_t hc,
                                  int64_t D, const float* base, const float* scale, float hc_eps,
                                  float* y, cudaStream_t stream);

// RoPE on the last 2·n_freq channels of each head, pos [n].
std::string launch_rope(float* x, int64_t n, int64_t heads, int64_t dim, const float* freqs,
                        int64_t n_freq, const int64_t* pos, bool inverse, cudaStream_t stream);

// Sparse attention with sinks (ops.h), one block per (token, head). scores: scratch of
// n·H·max(max_rows, 1) floats. sinks may be nullptr.
std::string launch_attention(const float* q, int64_t n, int64_t H, int64_t Dh, const float* kv,
                             const int64_t* offsets, const int32_t* indices, const float* sinks,
                             float scale, float* scores, int64_t max_rows, float* out,
                             cudaStream_t stream);

// Indexer scores (ops.h), score [n][ld_score]; entries j ≥ n_vis[t] are not written.
std::string launch_indexer_scores(const float* qI, const float* wI, int64_t n, int64_t nI,
                                  int64_t dI, const float* keys, const int64_t* n_vis,
                                  int64_t max_vis, float scale, float* score, int64_t ld_score,
                                  cudaStream_t stream);

// MoE: h[s][i] = weights[s]·silu(min(g[s][i], limit))·clamp(u[s][i], ±limit) for the slots in
// slots[0 .. n_slots); g, u, h [*][I] indexed by slot.
std::string launch_moe_swiglu(const float* g, const float* u, const int32_t* slots,
                              int64_t n_slots, const float* weights, int64_t I, float limit,
                              float* h, cudaStream_t stream);
// y[t] += Σ_k o[t·n_used + k] over k < n_used in k order, skipping ids < 0; o [*][D].
std::string launch_moe_sum(const float* o, const int32_t* ids, int64_t n, int64_t n_used,
                           int64_t D, float* y, cudaStream_t stream);

// Device-to-device copy bandwidth probe for scripts/gpu-check.sh: copies `bytes` between two
// device buffers `reps` times with cudaMemcpyAsync and returns GB/s counting bytes read plus
// written (2·bytes per copy), or a negative value on error (message in *err).
double measure_d2d_bandwidth(size_t bytes, int reps, std::string* err);

}  // namespace dsv4::cuda
