// dsv4 backend/cuda: CudaOps, the CUDA implementation of ops.h (issue 8, scope 1; first version).
//
// Interface: ops.h unchanged, i.e. HOST pointers in and out. Each call copies its activations to
// device buffers (grown to the largest call seen and kept), runs the kernels on the object's own
// stream and copies the results back before returning; strided outputs and entries an op must
// not write (ldy gaps, indexer scores past n_vis) are left untouched on the host.
//
// Weights: Weight::data is a host pointer (normally into the mapped model file). The first call
// that uses a pointer uploads the weight's bytes to device memory; later calls with the same
// pointer read the device copy. The cache assumes what a mapped file guarantees: the bytes behind
// a pointer do not change and stay mapped while this object lives. As a guard against host
// memory being freed and reused at the same address (tests), each lookup compares a hash of the
// first bytes and re-uploads on a mismatch; that is a guard, not a content check, so callers
// that rewrite weight memory in place call clear_weight_cache(). An MoE call uploads the whole
// stacked expert tensor (all n_expert matrices) once.
//
// Types: matmul / moe / hc weights of f32, f16, bf16, q8_0, mxfp4, q2_K, q4_K, iq2_xxs and
// f8_e4m3_b128 (supports()); another type is a caller bug (abort naming the type), so callers
// check supports() when they choose a backend. HC: hc ≤ 8.
//
// Numerics (ops.h determinism rule): matmul and the MoE projections compute each output element
// in one warp: lane l owns the 32-element chunks l, l+32, ... of the weight row, dequantizes them
// bit-identically to quant::dequantize_row, accumulates with float32 fused multiply-adds in
// element order and the lanes are summed by a fixed butterfly; decode (one slot) and batched
// tiles (8 slots per weight pass) run the same per-element arithmetic, so a token's row is
// bit-identical alone and inside any batch. RMS sums of squares and the HC coefficient algebra
// are in double, as in the CPU backend; attention is one block per (token, head) with fixed-tree
// reductions. Results differ from the CPU backend by float32 rounding only (tests/cuda).
//
// Errors: make_cuda_ops returns an error when there is no driver or device. After construction a
// CUDA failure (out of device memory, a failed launch) aborts with the CUDA message: ops.h ops
// return nothing.
//
// Threading: one caller at a time (ops.h). Each call makes the object's device current on the
// calling thread.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "dsv4/backend/ops.h"
#include "dsv4/core/status.h"

namespace dsv4::backend {

class CudaOps final : public Ops {
 public:
  struct Impl;  // device state (cuda_ops.cpp)
  explicit CudaOps(std::unique_ptr<Impl> impl);
  ~CudaOps() override;
  CudaOps(const CudaOps&) = delete;
  CudaOps& operator=(const CudaOps&) = delete;

  std::string name() const override;  // "cuda[0:NVIDIA H200]"
  int device() const;
  // Whether matmul / moe / hc take weights of this type.
  static bool supports(quant::QType type);
  // Frees every cached device weight.
  void clear_weight_cache();
  // Device bytes held by the weight cache.
  size_t weight_cache_bytes() const;

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
  std::unique_ptr<Impl> impl_;
};

// Number of CUDA devices visible (0 without a driver or device).
int cuda_device_count();

// The CUDA backend on `device` (0-based). Errors: kUnavailable without a driver or device,
// kInvalidArgument for a device index out of range.
Result<std::unique_ptr<Ops>> make_cuda_ops(int device);

// Device-to-device copy bandwidth of `device` in GB/s (bytes read + written per second, 1e9),
// over `reps` copies of `bytes`: the ceiling decode bandwidth is compared with (gpu-check.sh).
Result<double> measure_device_copy_bandwidth(int device, size_t bytes, int reps);

}  // namespace dsv4::backend
