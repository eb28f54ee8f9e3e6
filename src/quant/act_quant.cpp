// dsv4 quant: the q8_K activation quantizer (act_quant.h), the scalar reference every SIMD level
// of src/backend/cpu/qdotK*.cpp reproduces byte for byte.
//
// The algorithm of upstream ggml's quantize_row_q8_K_ref / dequantize_row_q8_K
// (ggml/src/ggml-quants.c; its behaviour is the format's definition, so every step that decides a
// byte is the same), including its integer rounding: nearest_int(f) adds 1.5·2^23 in
// float32 and reads the low 23 mantissa bits, which is round-half-to-even for |f| < 2^22. Every
// finite input gives upstream's bytes, also a block whose largest |x| is so small that
// iscale = −127/max overflows to −inf (nearest_int(±inf) = −2^22 and nearest_int(NaN) = 0, both
// stored as the int8 0 after MIN(127, ·) and the truncating int8 store; d = 1/iscale = −0 or +0).
// One difference: upstream leaves bsums of an all-zero block unwritten; they are 0 here.
// Checked against upstream's own function in tests/backend/qdotK_test.cpp (fixture
// tests/fixtures/quant/q8_K_upstream.bin, scripts/fixtures/make_q8k_fixture.sh).
#include <cmath>
#include <cstring>

#include "dsv4/quant/act_quant.h"

namespace dsv4::quant {
namespace {

inline int nearest_int(float f) {
  const float v = f + 12582912.f;  // 1.5 · 2^23
  int32_t i;
  std::memcpy(&i, &v, sizeof i);
  return (i & 0x007fffff) - 0x00400000;
}

}  // namespace

void quantize_act_q8_K(const float* x, BlockQ8_K* y, int64_t n) {
  const int64_t nb = n / kQK_K;
  for (int64_t b = 0; b < nb; ++b, x += kQK_K) {
    BlockQ8_K& o = y[b];
    float max = 0.0f, amax = 0.0f;
    for (int j = 0; j < kQK_K; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (amax == 0.0f) {
      o.d = 0.0f;
      std::memset(o.qs, 0, sizeof o.qs);
      std::memset(o.bsums, 0, sizeof o.bsums);
      continue;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < kQK_K; ++j) {
      const int v = nearest_int(iscale * x[j]);
      o.qs[j] = static_cast<int8_t>(static_cast<uint8_t>(v < 127 ? v : 127));  // truncating store
    }
    for (int g = 0; g < kQK_K / 16; ++g) {
      int s = 0;
      for (int l = 0; l < 16; ++l) s += o.qs[16 * g + l];
      o.bsums[g] = static_cast<int16_t>(s);
    }
    o.d = 1.0f / iscale;
  }
}

void dequantize_act_q8_K(const BlockQ8_K* x, float* y, int64_t n) {
  const int64_t nb = n / kQK_K;
  for (int64_t b = 0; b < nb; ++b)
    for (int j = 0; j < kQK_K; ++j) *y++ = x[b].d * static_cast<float>(x[b].qs[j]);
}

}  // namespace dsv4::quant
