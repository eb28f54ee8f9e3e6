// dsv4 backend/cpu: portable kernels (the kScalar level). Built with -ffp-contract=off, so each
// product and sum is rounded on its own.
#include "kernels.h"

namespace dsv4::backend::cpu {
namespace {

constexpr int kL = 8;  // lanes

bool dequant_scalar(quant::QType type, const uint8_t* src, float* dst, int64_t n) {
  return static_cast<bool>(quant::dequantize_row(type, src, dst, n));
}

inline float reduce8(const float* a) {
  return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

float dot_scalar(const float* a, const float* b, int64_t n) {
  float acc[kL] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t c = 0;
  for (; c + kL <= n; c += kL)
    for (int l = 0; l < kL; ++l) acc[l] += a[c + l] * b[c + l];
  for (int l = 0; c + l < n; ++l) acc[l] += a[c + l] * b[c + l];
  return reduce8(acc);
}

void dot_rows_scalar(const float* w, int64_t ldw, int nr, const float* x, int64_t n, float* out) {
  for (int i = 0; i < nr; ++i) out[i] = dot_scalar(w + i * ldw, x, n);
}

void dot_tile_scalar(const float* w, int64_t ldw, int nr, const float* const* x, int nt, int64_t n,
                     float* out, int64_t ldo) {
  for (int t = 0; t < nt; ++t)
    for (int i = 0; i < nr; ++i) out[t * ldo + i] = dot_scalar(w + i * ldw, x[t], n);
}

void axpy_scalar(float a, const float* x, float* y, int64_t n) {
  for (int64_t c = 0; c < n; ++c) y[c] += a * x[c];
}

void qk16_scalar(const float* qt, const float* const* x, int64_t nr, int64_t n, float* out) {
  for (int64_t r = 0; r < nr; ++r) {
    float acc[16] = {};
    for (int64_t d = 0; d < n; ++d)
      for (int j = 0; j < 16; ++j) acc[j] += x[r][d] * qt[d * 16 + j];
    for (int j = 0; j < 16; ++j) out[r * 16 + j] = acc[j];
  }
}

void pv16_scalar(const float* p, const float* const* x, int64_t nk, int64_t n, float* ot) {
  for (int64_t c = 0; c < n; ++c) {
    float acc[16] = {};
    for (int64_t k = 0; k < nk; ++k)
      for (int j = 0; j < 16; ++j) acc[j] += x[k][c] * p[k * 16 + j];
    for (int j = 0; j < 16; ++j) ot[c * 16 + j] = acc[j];
  }
}

const Kernels kScalarKernels = {dequant_scalar, dot_scalar, dot_rows_scalar, dot_tile_scalar, axpy_scalar, nullptr, nullptr,
                                qk16_scalar, pv16_scalar};

}  // namespace

const Kernels& kernels_scalar() { return kScalarKernels; }

}  // namespace dsv4::backend::cpu
