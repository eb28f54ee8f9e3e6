// dsv4 backend/cpu: scalar integer dots of q2_K / q4_K / iq2_xxs weights with q8_K activations
// (qdot.h, "weights × q8_K activations"; the scalar level's fill_qdotK_scalar).
//
// Per (weight row i, activation row t) and 256-block b, exact int32 sums (the upstream
// ggml_vec_dot_*_q8_K generic versions, ggml/src/ggml-cpu/quants.c, are the model):
//   q2_K:    isum = Σ_g sc_g · Σ_l q[16g+l]·x[16g+l]          (g < 16, q in 0..3, sc 4-bit)
//            msum = Σ_g m_g · bsums_g                           (m 4-bit)
//            v_b  = (dx·d)·isum − (dx·dmin)·msum
//   q4_K:    the same over 8 sub-blocks of 32 (6-bit sc, m; bsums paired), q in 0..15
//   iq2_xxs: isum = Σ_s (2·ls_s + 1) · Σ_l ±grid[l]·x[l]       (s < 8 sub-blocks of 32)
//            v_b  = (d·dx)·isum, and out = 0.125 · Σ_b v_b   (the dequantized scale is
//            d·(0.5+ls)·0.25 = d·(2ls+1)/8; multiplying by 0.125 is exact)
// Float order (this level): every product and sum rounded on its own (no FMA), in the order
// written above; the block values are added one by one in increasing b into a float starting
// at 0. Each out value depends only on its (row, activation) pair.
#include <cstring>

#include "dsv4/core/dtypes.h"
#include "dsv4/quant/act_quant.h"
#include "dsv4/quant/blocks.h"
#include "dsv4/quant/iq_tables.h"
#include "qdot.h"

namespace dsv4::backend::cpu {
namespace {

using quant::BlockIQ2_XXS;
using quant::BlockQ2_K;
using quant::BlockQ4_K;
using quant::BlockQ8_K;
using quant::kQK_K;

template <class B>
B load(const uint8_t* p) {
  B b;
  std::memcpy(&b, p, sizeof b);
  return b;
}

void quantize_q8_K(const float* x, void* dst, int64_t k) {
  quant::quantize_act_q8_K(x, static_cast<BlockQ8_K*>(dst), k);
}

float dot_q2_K(const uint8_t* w, const BlockQ8_K* x, int64_t nb) {
  float acc = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    const auto B = load<BlockQ2_K>(w + static_cast<size_t>(b) * sizeof(BlockQ2_K));
    const BlockQ8_K& X = x[b];
    int32_t isum = 0, msum = 0;
    for (int g = 0; g < 16; ++g) {
      const uint8_t* q = B.qs + 32 * (g / 8) + 16 * (g % 2);
      const int shift = 2 * ((g % 8) / 2);
      int32_t s = 0;
      for (int l = 0; l < 16; ++l) s += ((q[l] >> shift) & 3) * X.qs[16 * g + l];
      isum += (B.scales[g] & 0xF) * s;
      msum += (B.scales[g] >> 4) * X.bsums[g];
    }
    const float a = X.d * fp16_to_f32(B.d);
    const float m = X.d * fp16_to_f32(B.dmin);
    acc += a * static_cast<float>(isum) - m * static_cast<float>(msum);
  }
  return acc;
}

float dot_q4_K(const uint8_t* w, const BlockQ8_K* x, int64_t nb) {
  float acc = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    const auto B = load<BlockQ4_K>(w + static_cast<size_t>(b) * sizeof(BlockQ4_K));
    const BlockQ8_K& X = x[b];
    int32_t isum = 0, msum = 0;
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      quant::get_scale_min_k4(j, B.scales, &sc, &m);
      const uint8_t* q = B.qs + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      int32_t s = 0;
      for (int l = 0; l < 32; ++l) s += ((q[l] >> shift) & 0xF) * X.qs[32 * j + l];
      isum += sc * s;
      msum += m * (X.bsums[2 * j] + X.bsums[2 * j + 1]);
    }
    const float a = X.d * fp16_to_f32(B.d);
    const float m = X.d * fp16_to_f32(B.dmin);
    acc += a * static_cast<float>(isum) - m * static_cast<float>(msum);
  }
  return acc;
}

float dot_iq2_xxs(const uint8_t* w, const BlockQ8_K* x, int64_t nb) {
  float acc = 0.0f;
  for (int64_t b = 0; b < nb; ++b) {
    const auto B = load<BlockIQ2_XXS>(w + static_cast<size_t>(b) * sizeof(BlockIQ2_XXS));
    const BlockQ8_K& X = x[b];
    const auto* qs = reinterpret_cast<const uint8_t*>(B.qs);
    int32_t isum = 0;
    for (int s = 0; s < 8; ++s) {
      uint32_t aux0, aux1;
      std::memcpy(&aux0, qs + 8 * s, 4);
      std::memcpy(&aux1, qs + 8 * s + 4, 4);
      int32_t sub = 0;
      for (int l = 0; l < 4; ++l) {
        const uint64_t grid = quant::kIq2xxsGrid[(aux0 >> (8 * l)) & 0xFF];
        const uint8_t signs = quant::kKsignsIq2xs[(aux1 >> (7 * l)) & 127];
        const int8_t* q = X.qs + 32 * s + 8 * l;
        for (int j = 0; j < 8; ++j) {
          const int g = static_cast<int>((grid >> (8 * j)) & 0xFF);
          sub += ((signs >> j) & 1) ? -g * q[j] : g * q[j];
        }
      }
      isum += static_cast<int32_t>(2 * (aux1 >> 28) + 1) * sub;
    }
    acc += (fp16_to_f32(B.d) * X.d) * static_cast<float>(isum);
  }
  return 0.125f * acc;
}

using DotFn = float (*)(const uint8_t*, const BlockQ8_K*, int64_t);

template <DotFn F>
void tile(const uint8_t* w, size_t row_bytes, int nr, const void* const* xq, int nt, int64_t k,
          float* out, int64_t ldo) {
  const int64_t nb = k / kQK_K;
  for (int t = 0; t < nt; ++t)
    for (int i = 0; i < nr; ++i)
      out[t * ldo + i] = F(w + static_cast<size_t>(i) * row_bytes,
                           static_cast<const BlockQ8_K*>(xq[t]), nb);
}

}  // namespace

void fill_qdotK_scalar(QDotKernels& k) {
  k.quantize_q8_K = quantize_q8_K;
  k.q2_K = tile<dot_q2_K>;
  k.q4_K = tile<dot_q4_K>;
  k.iq2_xxs = tile<dot_iq2_xxs>;
}

}  // namespace dsv4::backend::cpu
