// dsv4 quant: the q8_0 and q8_K activation quantizers (act_quant.h), the scalar references every
// SIMD level of src/backend/cpu/qdot32*.cpp / qdotK*.cpp reproduces byte for byte.
//
// q8_0: upstream ggml-cpu's x86 quantize_row_q8_0 (see act_quant.h).
//
// q8_K:
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

// _mm256_cvtps_epi32 of an already rounded value followed by the saturating int32 → int16 → int8
// packs: NaN and |v| ≥ 2^31 give INT32_MIN, hence −128.
inline int8_t cvt_pack_i8(float v) {
  if (!(v > -2147483648.0f && v < 2147483648.0f)) return -128;
  if (v > 127.0f) return 127;
  if (v < -128.0f) return -128;
  return static_cast<int8_t>(v);
}

}  // namespace

void quantize_act_q8_0(const float* x, BlockQ8_0* y, int64_t n) {
  for (int64_t b = 0; b < n / 32; ++b, x += 32) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
    BlockQ8_0& o = y[b];
    o.d = f32_to_fp16(d);
    for (int j = 0; j < 32; ++j) o.qs[j] = cvt_pack_i8(std::nearbyint(x[j] * id));  // ties to even
  }
}

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
