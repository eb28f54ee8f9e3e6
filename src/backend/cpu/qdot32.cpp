// dsv4 backend/cpu: the scalar (portable C++, no intrinsics) q8_0-activation integer dots of
// qdot.h — quantize_q8_0 and the tile functions for q8_0, mxfp4 and iq4_nl weights.
//
// quantize_q8_0: the operations of quant's q_q8_0 (gguf-py's Q8_0), so the bytes are identical:
//   amax = max|x|, d = amax/127, id = 1/d (0 if d = 0), q = roundf(x·id), d stored as fp16.
// Tiles: for each (row i, token t), in block order b = 0, 1, …:
//   S_b = Σ_j qw[j]·qx[j]      (exact int32; qw: int8 / doubled e2m1 / kvalues_iq4nl)
//   p_b = dw_b · dx_b           (float32, dw: fp16 / 2^(e-128) as quant::e8m0_to_f32_half)
//   acc = acc + float(S_b)·p_b  (two float32 roundings: the product, then the sum)
// out[t·ldo + i] = acc. Each (i, t) runs the same sequence whatever nr, nt and its position.
// The MXFP4 integers are the e2m1 values doubled (kKvaluesMxfp4), so its block scale is
// 2^(e-128) — exactly the dequantizer's e8m0_to_f32_half (subnormal for e < 2, 2^127 at e = 255).
// Upstream: ggml-cpu quants.c ggml_vec_dot_{q8_0,mxfp4,iq4_nl}_q8_0 (generic versions).
#include <cmath>
#include <cstring>

#include "dsv4/core/dtypes.h"
#include "dsv4/quant/blocks.h"
#include "dsv4/quant/iq_tables.h"
#include "qdot.h"

namespace dsv4::backend::cpu {
namespace {

inline uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

void quantize_q8_0_scalar(const float* x, void* dst, int64_t k) {
  quant::quantize_act_q8_0(x, static_cast<quant::BlockQ8_0*>(dst), k);
}

// Weight formats: block bytes, the 32 integer values of a block, its float scale.
struct WQ8_0 {
  static constexpr size_t kBytes = sizeof(quant::BlockQ8_0);
  static void values(const uint8_t* b, int32_t* v) {
    for (int j = 0; j < 32; ++j) v[j] = static_cast<int8_t>(b[2 + j]);
  }
  static float scale(const uint8_t* b) { return fp16_to_f32(rd16(b)); }
};
// Nibble formats: low nibble of qs[j] is element j, high nibble element j + 16.
inline void nibble_values(const uint8_t* qs, const int8_t* table, int32_t* v) {
  for (int j = 0; j < 16; ++j) {
    v[j] = table[qs[j] & 0xF];
    v[j + 16] = table[qs[j] >> 4];
  }
}
struct WMxfp4 {
  static constexpr size_t kBytes = sizeof(quant::BlockMXFP4);
  static void values(const uint8_t* b, int32_t* v) { nibble_values(b + 1, quant::kKvaluesMxfp4, v); }
  static float scale(const uint8_t* b) { return quant::e8m0_to_f32_half(b[0]); }
};
struct WIq4nl {
  static constexpr size_t kBytes = sizeof(quant::BlockIQ4_NL);
  static void values(const uint8_t* b, int32_t* v) { nibble_values(b + 2, quant::kKvaluesIq4nl, v); }
  static float scale(const uint8_t* b) { return fp16_to_f32(rd16(b)); }
};

template <class W>
void tile_scalar(const uint8_t* w, size_t row_bytes, int nr, const void* const* xq, int nt,
                 int64_t k, float* out, int64_t ldo) {
  const int64_t nb = k / 32;
  for (int i = 0; i < nr; ++i) {
    const uint8_t* row = w + static_cast<size_t>(i) * row_bytes;
    for (int t = 0; t < nt; ++t) {
      const auto* xb = static_cast<const uint8_t*>(xq[t]);
      float acc = 0.0f;
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* wb = row + static_cast<size_t>(b) * W::kBytes;
        const uint8_t* x = xb + static_cast<size_t>(b) * sizeof(quant::BlockQ8_0);
        int32_t v[32];
        W::values(wb, v);
        int32_t s = 0;
        for (int j = 0; j < 32; ++j) s += v[j] * static_cast<int8_t>(x[2 + j]);
        const float p = W::scale(wb) * fp16_to_f32(rd16(x));
        const float term = static_cast<float>(s) * p;
        acc = acc + term;
      }
      out[static_cast<int64_t>(t) * ldo + i] = acc;
    }
  }
}

}  // namespace

void fill_qdot32_scalar(QDotKernels& k) {
  k.quantize_q8_0 = quantize_q8_0_scalar;
  k.q8_0 = tile_scalar<WQ8_0>;
  k.mxfp4 = tile_scalar<WMxfp4>;
  k.iq4_nl = tile_scalar<WIq4nl>;
}

}  // namespace dsv4::backend::cpu
