// dsv4 backend/cpu: the CPU implementation of ops.h (issue 5 scope 1, issue 7): SIMD kernels
// with runtime dispatch and a persistent thread pool.
//
// SIMD levels: kScalar (portable C++, any target), kAvx2 (AVX2 + FMA + F16C), kAvx512
// (AVX-512 F/BW/VL for the dot products; its dequantizers are the AVX2 ones). The level is
// chosen once, at construction: the best one the CPU supports, lowered by the environment
// variable DSV4_SIMD=scalar|avx2|avx512 (a request above what the CPU supports falls back to the
// best supported level with a one-line warning on stderr). On non-x86 builds only kScalar exists.
//
// Numerics (the determinism rule of ops.h holds per level): matmul dequantizes each weight row
// into a float32 scratch that is bit-identical to dsv4::quant::dequantize_row, then takes float32
// dot products with a fixed lane layout and a fixed final reduction, so one output element is the
// same whatever n, its neighbours or the thread count. For n ≤ 2 tokens (decode) the AVX2 and
// AVX-512 levels use fused kernels for f32, f16, bf16, q8_0, mxfp4, iq4_nl, q2_K, q4_K and iq2_xxs
// (rows a multiple of 32 long) that dequantize in registers and feed the same lanes in the same
// order: bit-identical to the scratch path. Different levels give (slightly) different results.
// Threads split weight rows (matmul, moe: per expert), tokens (norms, HC, RoPE), tokens × heads
// (attention) or tokens × key chunks (indexer). moe groups the slots (token, k) by expert, so each
// selected expert's rows are read once per call, and sums the k outputs of a token in k order.
// Weights are never expanded to a whole float copy; per-thread scratch grows to the
// largest row block seen and is kept (no allocation in the steady state, except moe, whose
// per-(token, expert) scratch grows with n·n_used).
//
// Activations (ops.h ActQuant): with kQ8, matmul and moe on q8_0 / mxfp4 / iq4_nl / q2_K / q4_K /
// iq2_xxs weights quantize each activation row once per call (q8_0 or q8_K, qdot.h) and take
// integer dot products per block (AVX-512 VNNI where the CPU has it), for decode and prefill
// alike; bf16 / f16 weights get x rounded to bf16 / f16 (as upstream); other types, and a level
// without that type's integer kernel, use the float32 path.
//
// Threading: as ops.h: one caller at a time; the object owns n_threads − 1 worker threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dsv4/backend/ops.h"
#include "dsv4/core/thread_pool.h"

namespace dsv4::backend {

enum class SimdLevel { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

// "scalar", "avx2", "avx512".
const char* simd_level_name(SimdLevel level);
// Whether this build and this CPU can run `level`.
bool simd_level_supported(SimdLevel level);
// The best supported level (ignores DSV4_SIMD).
SimdLevel best_simd_level();

namespace cpu {
struct Kernels;      // internal kernel table (src/backend/cpu/kernels.h)
struct QDotKernels;  // integer dots over q8 activations (src/backend/cpu/qdot.h)
}

class CpuOps final : public Ops {
 public:
  // n_threads ≥ 1 (values < 1 mean 1). `level` must be supported (else it falls back to the
  // best supported level with a warning, as DSV4_SIMD does).
  CpuOps(int n_threads, SimdLevel level);
  ~CpuOps() override;

  std::string name() const override;  // "cpu[avx2]"
  SimdLevel level() const { return level_; }
  int threads() const { return pool_->threads(); }
  // Changes the thread count used by later calls (e.g. decode vs prefill); grows the pool when
  // needed, never shrinks it (idle workers just acknowledge each call).
  void set_threads(int n_threads);

  // The dequantizer this level uses inside matmul/moe: n elements of `type` from src into dst,
  // bit-identical to quant::dequantize_row (exposed for tests). Returns false for a type
  // dequantize_row does not support or n not a multiple of the block size.
  bool dequantize_row(quant::QType type, const void* src, float* dst, int64_t n) const;

  void matmul(const Weight& w, const float* x, int64_t ldx, int64_t n, float* y,
              int64_t ldy) override;
  void rms_norm(const float* x, const float* w, int64_t n, int64_t dim, float eps,
                float* y) override;
  void hc_coeffs(const float* X, int64_t n, int64_t hc, int64_t D, const HcWeights& p,
                 float norm_eps, float hc_eps, int64_t sinkhorn_iters, float* pre, float* post,
                 float* comb) override;
  void hc_pre(const float* X, int64_t n, int64_t hc, int64_t D, const float* pre,
              float* u) override;
  void hc_post(float* X, int64_t n, int64_t hc, int64_t D, const float* post, const float* comb,
               const float* F) override;
  void hc_head(const float* X, int64_t n, int64_t hc, int64_t D, const HcWeights& p,
               float norm_eps, float hc_eps, float* y) override;
  void rope(float* x, int64_t n, int64_t heads, int64_t dim, const float* freqs, int64_t n_freq,
            const int64_t* pos, bool inverse) override;
  void attention(const float* q, int64_t n, int64_t H, int64_t Dh, const float* kv,
                 const int64_t* offsets, const int32_t* indices, const float* sinks, float scale,
                 float* out) override;
  void indexer_scores(const float* qI, const float* wI, int64_t n, int64_t nI, int64_t dI,
                      const float* keys, const int64_t* n_vis, float scale, float* score,
                      int64_t ld_score) override;
  void moe(const ExpertWeights& ew, const float* x, int64_t n, int64_t n_used, const int32_t* ids,
           const float* weights, float limit, float* y) override;

 private:
  // Threads for an op of `work` multiply-adds / element updates: 1 (inline, no worker wake-up)
  // below a threshold, else all n_threads_. Never changes results (ops.h determinism rule).
  int threads_for(int64_t work) const;
  // Per-thread scratch, grown only.
  float* scratch(int thread, size_t n_floats);
  const float** row_scratch(int thread, size_t n);  // per-thread row-pointer scratch, grown only
  // Shared helpers: y[t] rows of W·x for the rows [r0, r1) of w, on the calling thread.
  void matmul_rows(const Weight& w, int64_t r0, int64_t r1, const float* x, int64_t ldx,
                   int64_t n, float* y, int64_t ldy, int thread);
  // ActQuant::kQ8 (ops.h): whether `type` has an integer path at this level, and the quantized
  // activation rows (format of `type`, act_row_bytes each) of x [n][k] (row t at x + t·ldx) into
  // dst. A row holding inf/NaN gets NaN block scales, so its dots are NaN (as the float path).
  bool has_qdot(quant::QType type) const;
  // skip (nullable): rows t with skip[t] < 0 are not written. Returns the rows the tile function
  // of `type` takes — the quantized rows in qbuf, or the level's prepared rows in pbuf (qdot.h) —
  // and their stride in bytes.
  const uint8_t* quantize_act(quant::QType type, const float* x, int64_t ldx, int64_t n, int64_t k,
                              std::vector<uint8_t>& qbuf, std::vector<uint8_t>& pbuf, size_t& stride,
                              const int32_t* skip = nullptr);
  void matmul_q8(const Weight& w, const float* x, int64_t ldx, int64_t n, float* y, int64_t ldy);
  // kQ8 without an integer kernel: rows of x [n][k] rounded through `type`'s vec_dot_type
  // (act_quant.h act_round_trip; SIMD for bf16 / f16) into dst [n][k] (row t at dst + t·k; dst
  // may be x itself when ldx == k); rows with skip[t] < 0 are left alone.
  void round_act(quant::QType type, const float* x, int64_t ldx, int64_t n, int64_t k, float* dst,
                 const int32_t* skip = nullptr);
  // The same into buf (grown to n·k floats); returns buf's data.
  const float* round_act(quant::QType type, const float* x, int64_t ldx, int64_t n, int64_t k,
                         std::vector<float>& buf);
  // m[t][r] = (fn·X[t]) / sqrt(mean(X[t]²) + eps): the shared first step of hc_coeffs/hc_head.
  void hc_mix(const float* X, int64_t n, int64_t hc, int64_t D, const Weight& fn, float norm_eps,
              float* m);

  SimdLevel level_;
  const cpu::Kernels* k_;
  const cpu::QDotKernels* qk_;
  const cpu::QDotKernels* qk_scalar_;  // quantizers where the level has none
  void (*round16_)(bool bf16, const float* x, float* y, int64_t n);  // kernels.h Round16Fn
  std::unique_ptr<ThreadPool> pool_;
  int n_threads_ = 1;
  std::vector<std::vector<float>> scratch_;
  std::vector<std::vector<const float*>> row_scratch_;
  // moe / hc scratch (grown only)
  std::vector<float> buf_a_, buf_b_;
  std::vector<int64_t> ibuf_a_, ibuf_b_, ibuf_c_, ibuf_d_;
  // quantized activations (kQ8), grown only
  std::vector<uint8_t> qbuf_a_, qbuf_b_, qbuf_c_, pbuf_a_, pbuf_b_, pbuf_c_;
  std::vector<uint8_t> panel_buf_;  // iq2_xxs activation panels (qdot.h), grown only
  std::vector<float> rbuf_, rbuf_b_;  // rounded activations (kQ8 without integer kernels)
};

// The CPU backend at the level DSV4_SIMD / the CPU allows.
std::unique_ptr<Ops> make_cpu_ops(int n_threads);
// The CPU backend at a forced level (tests); falls back as the constructor does.
std::unique_ptr<CpuOps> make_cpu_ops(int n_threads, SimdLevel level);

}  // namespace dsv4::backend
