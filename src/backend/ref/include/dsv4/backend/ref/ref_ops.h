// dsv4 backend/ref: RefOps, the scalar float64 implementation of ops.h (issue 5 scope 1): the
// oracle of the op tests (tests/backend/ops_test.cpp).
//
// Every op reads like its section of dsv4-architecture.md: weights are dequantized row by row
// with dsv4::quant::dequantize_row into a float scratch, every product, sum, exp and norm is
// taken in double, and outputs are rounded to float32 once at the end. Where the reference model
// (ref_model.h) has the op as a free function (rms_norm, hc_coeffs, hc_pre, hc_post, hc_head,
// rope) RefOps calls it. It is not meant to be fast: it allocates per call and uses one thread.
//
// Threading: one caller at a time (ops.h); no state is kept between calls.
#pragma once

#include <string>

#include "dsv4/backend/ops.h"

namespace dsv4::backend {

class RefOps final : public Ops {
 public:
  std::string name() const override { return "ref"; }

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
};

}  // namespace dsv4::backend
