// Scalar reference dequantizers. Each follows the float32 operation order of gguf-py's numpy
// reference (gguf/quants.py) so the results are bit-identical; element order follows ggml.
#include <cstring>
#include <string>

#include "dsv4/core/dtypes.h"
#include "dsv4/quant/blocks.h"
#include "dsv4/quant/iq_tables.h"
#include "dsv4/quant/quant.h"

namespace dsv4::quant {
namespace {

template <class B>
B load(const uint8_t* p) {
  B b;
  std::memcpy(&b, p, sizeof b);
  return b;
}

inline uint32_t le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

inline uint8_t grid_byte(uint64_t row, int j) { return static_cast<uint8_t>(row >> (8 * j)); }
inline uint8_t grid_byte32(uint32_t row, int j) { return static_cast<uint8_t>(row >> (8 * j)); }
inline float sign_of(uint8_t signs, int j) { return (signs & kKmaskIq2xs[j]) ? -1.0f : 1.0f; }

void deq_q8_0(const uint8_t* p, float* y) {
  const auto b = load<BlockQ8_0>(p);
  const float d = fp16_to_f32(b.d);
  for (int j = 0; j < 32; ++j) y[j] = static_cast<float>(b.qs[j]) * d;
}

void deq_q2_0(const uint8_t* p, float* y) {
  const auto b = load<BlockQ2_0>(p);
  const float d = fp16_to_f32(b.d);
  for (int j = 0; j < 64; ++j) {
    const int q = (b.qs[j / 4] >> (2 * (j % 4))) & 3;
    y[j] = static_cast<float>(q - 1) * d;
  }
}

// 32 values of a 4-bit table type: element j from the low nibble of qs[j], element j+16 from its
// high nibble (MXFP4, IQ4_NL).
void deq_nibble_table(const uint8_t* qs, const int8_t* table, float d, float* y) {
  for (int j = 0; j < 16; ++j) {
    y[j] = d * static_cast<float>(table[qs[j] & 0xF]);
    y[j + 16] = d * static_cast<float>(table[qs[j] >> 4]);
  }
}

void deq_mxfp4(const uint8_t* p, float* y) {
  const auto b = load<BlockMXFP4>(p);
  deq_nibble_table(b.qs, kKvaluesMxfp4, e8m0_to_f32_half(b.e), y);
}

void deq_f8_b128(const uint8_t* p, float* y) {
  const auto b = load<BlockF8E4M3B128>(p);
  const float d = e8m0_to_f32(b.e);
  for (int j = 0; j < 128; ++j) y[j] = e4m3fn_to_f32(b.qs[j]) * d;
}

void deq_iq4_nl(const uint8_t* p, float* y) {
  const auto b = load<BlockIQ4_NL>(p);
  deq_nibble_table(b.qs, kKvaluesIq4nl, fp16_to_f32(b.d), y);
}

// Q2_K: 16 groups of 16; group g reads qs[32*(g/8) + 16*(g%2) + l] >> 2*((g%8)/2).
void deq_q2_K(const uint8_t* p, float* y) {
  const auto b = load<BlockQ2_K>(p);
  const float d = fp16_to_f32(b.d);
  const float dmin = fp16_to_f32(b.dmin);
  for (int g = 0; g < 16; ++g) {
    const float dl = d * static_cast<float>(b.scales[g] & 0xF);
    const float ml = dmin * static_cast<float>(b.scales[g] >> 4);
    const uint8_t* q = b.qs + 32 * (g / 8) + 16 * (g % 2);
    const int shift = 2 * ((g % 8) / 2);
    for (int l = 0; l < 16; ++l) y[16 * g + l] = dl * static_cast<float>((q[l] >> shift) & 3) - ml;
  }
}

// Q3_K: 16 groups of 16 with signed 6-bit scales; 2 low bits as Q2_K, high bit from hmask
// (bit g/2 of hmask[16*(g%2) + l]; a clear bit subtracts 4).
void deq_q3_K(const uint8_t* p, float* y) {
  const auto b = load<BlockQ3_K>(p);
  const float d = fp16_to_f32(b.d);
  for (int g = 0; g < 16; ++g) {
    const int lo = (g < 8) ? (b.scales[g] & 0xF) : (b.scales[g - 8] >> 4);
    const int hi = (b.scales[8 + g % 4] >> (2 * (g / 4))) & 3;
    const float dl = d * static_cast<float>((lo | (hi << 4)) - 32);
    const uint8_t* q = b.qs + 32 * (g / 8) + 16 * (g % 2);
    const int shift = 2 * ((g % 8) / 2);
    const uint8_t* h = b.hmask + 16 * (g % 2);
    for (int l = 0; l < 16; ++l) {
      const int ql = (q[l] >> shift) & 3;
      const int qh = ((h[l] >> (g / 2)) & 1) ^ 1;
      y[16 * g + l] = dl * static_cast<float>(ql - (qh << 2));
    }
  }
}

// Q4_K: 8 sub-blocks of 32; sub-block j is nibble j%2 of qs[32*(j/2) + l].
void deq_q4_K(const uint8_t* p, float* y) {
  const auto b = load<BlockQ4_K>(p);
  const float d = fp16_to_f32(b.d);
  const float dmin = fp16_to_f32(b.dmin);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    get_scale_min_k4(j, b.scales, &sc, &m);
    const float dd = d * static_cast<float>(sc);
    const float dm = dmin * static_cast<float>(m);
    const uint8_t* q = b.qs + 32 * (j / 2);
    for (int l = 0; l < 32; ++l)
      y[32 * j + l] = dd * static_cast<float>((q[l] >> (4 * (j % 2))) & 0xF) - dm;
  }
}

// Q5_K: Q4_K plus a fifth bit, bit j of qh[l].
void deq_q5_K(const uint8_t* p, float* y) {
  const auto b = load<BlockQ5_K>(p);
  const float d = fp16_to_f32(b.d);
  const float dmin = fp16_to_f32(b.dmin);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    get_scale_min_k4(j, b.scales, &sc, &m);
    const float dd = d * static_cast<float>(sc);
    const float dm = dmin * static_cast<float>(m);
    const uint8_t* q = b.qs + 32 * (j / 2);
    for (int l = 0; l < 32; ++l) {
      const int v = ((q[l] >> (4 * (j % 2))) & 0xF) | (((b.qh[l] >> j) & 1) << 4);
      y[32 * j + l] = dd * static_cast<float>(v) - dm;
    }
  }
}

// Q6_K: 8 chunks of 32; chunk k: low 4 bits = nibble (k%4)/2 of ql[64*(k/4) + 32*(k%2) + l],
// high 2 bits = (qh[32*(k/4) + l] >> 2*(k%4)) & 3; 16 int8 scales, one per 16 elements.
void deq_q6_K(const uint8_t* p, float* y) {
  const auto b = load<BlockQ6_K>(p);
  const float d = fp16_to_f32(b.d);
  for (int k = 0; k < 8; ++k) {
    const uint8_t* ql = b.ql + 64 * (k / 4) + 32 * (k % 2);
    const uint8_t* qh = b.qh + 32 * (k / 4);
    for (int l = 0; l < 32; ++l) {
      const int lo = (ql[l] >> (4 * ((k % 4) / 2))) & 0xF;
      const int hi = (qh[l] >> (2 * (k % 4))) & 3;
      const int e = 32 * k + l;
      const float dl = d * static_cast<float>(b.scales[e / 16]);
      y[e] = dl * static_cast<float>((lo | (hi << 4)) - 32);
    }
  }
}

void deq_iq2_xxs(const uint8_t* p, float* y) {
  const auto b = load<BlockIQ2_XXS>(p);
  const float d = fp16_to_f32(b.d);
  const auto* qs = reinterpret_cast<const uint8_t*>(b.qs);
  for (int ib = 0; ib < 8; ++ib) {
    const uint32_t aux0 = le32(qs + 8 * ib);
    const uint32_t aux1 = le32(qs + 8 * ib + 4);
    const float db = d * (0.5f + static_cast<float>(aux1 >> 28)) * 0.25f;
    for (int l = 0; l < 4; ++l) {
      const uint64_t grid = kIq2xxsGrid[(aux0 >> (8 * l)) & 0xFF];
      const uint8_t signs = kKsignsIq2xs[(aux1 >> (7 * l)) & 127];
      for (int j = 0; j < 8; ++j)
        y[32 * ib + 8 * l + j] = db * static_cast<float>(grid_byte(grid, j)) * sign_of(signs, j);
    }
  }
}

void deq_iq2_xs(const uint8_t* p, float* y) {
  const auto b = load<BlockIQ2_XS>(p);
  const float d = fp16_to_f32(b.d);
  for (int k = 0; k < 32; ++k) {  // 8 elements per qs entry; a 4-bit scale per 16 elements
    const int s = (b.scales[k / 4] >> (4 * ((k / 2) % 2))) & 0xF;
    const float db = d * (0.5f + static_cast<float>(s)) * 0.25f;
    const uint64_t grid = kIq2xsGrid[b.qs[k] & 511];
    const uint8_t signs = kKsignsIq2xs[b.qs[k] >> 9];
    for (int j = 0; j < 8; ++j)
      y[8 * k + j] = db * static_cast<float>(grid_byte(grid, j)) * sign_of(signs, j);
  }
}

void deq_iq2_s(const uint8_t* p, float* y) {
  const auto b = load<BlockIQ2_S>(p);
  const float d = fp16_to_f32(b.d);
  const uint8_t* signs = b.qs + kQK_K / 8;
  for (int k = 0; k < 32; ++k) {
    const int s = (b.scales[k / 4] >> (4 * ((k / 2) % 2))) & 0xF;
    const float db = d * (0.5f + static_cast<float>(s)) * 0.25f;
    const int idx = b.qs[k] | (((b.qh[k / 4] >> (2 * (k % 4))) & 3) << 8);
    const uint64_t grid = kIq2sGrid[idx];
    for (int j = 0; j < 8; ++j)
      y[8 * k + j] = db * static_cast<float>(grid_byte(grid, j)) * sign_of(signs[k], j);
  }
}

void deq_iq3_xxs(const uint8_t* p, float* y) {
  const auto b = load<BlockIQ3_XXS>(p);
  const float d = fp16_to_f32(b.d);
  const uint8_t* ss = b.qs + kQK_K / 4;
  for (int ib = 0; ib < 8; ++ib) {
    const uint32_t aux = le32(ss + 4 * ib);
    const float db = d * (0.5f + static_cast<float>(aux >> 28)) * 0.5f;
    for (int l = 0; l < 4; ++l) {
      const uint8_t signs = kKsignsIq2xs[(aux >> (7 * l)) & 127];
      const uint32_t g1 = kIq3xxsGrid[b.qs[8 * ib + 2 * l]];
      const uint32_t g2 = kIq3xxsGrid[b.qs[8 * ib + 2 * l + 1]];
      float* o = y + 32 * ib + 8 * l;
      for (int j = 0; j < 4; ++j) {
        o[j] = db * static_cast<float>(grid_byte32(g1, j)) * sign_of(signs, j);
        o[j + 4] = db * static_cast<float>(grid_byte32(g2, j)) * sign_of(signs, j + 4);
      }
    }
  }
}

void deq_iq3_s(const uint8_t* p, float* y) {
  const auto b = load<BlockIQ3_S>(p);
  const float d = fp16_to_f32(b.d);
  for (int k = 0; k < 64; ++k) {  // 4 elements per grid index; a scale per 32 elements
    const int g = k / 8;
    const int s = (b.scales[g / 2] >> (4 * (g % 2))) & 0xF;
    const float db = d * static_cast<float>(1 + 2 * s);
    const int idx = b.qs[k] | (((b.qh[k / 8] >> (k % 8)) & 1) << 8);
    const uint32_t grid = kIq3sGrid[idx];
    for (int j = 0; j < 4; ++j) {
      const int e = 4 * k + j;
      const uint8_t sb = b.signs[e / 8];
      y[e] = db * static_cast<float>(grid_byte32(grid, j)) * sign_of(sb, e % 8);
    }
  }
}

void deq_iq1_s(const uint8_t* p, float* y) {
  const auto b = load<BlockIQ1_S>(p);
  const float d = fp16_to_f32(b.d);
  for (int ib = 0; ib < 8; ++ib) {
    const uint16_t qh = b.qh[ib];
    const float dl = d * static_cast<float>(2 * ((qh >> 12) & 7) + 1);
    const float delta = (qh & 0x8000) ? -kIq1sDelta : kIq1sDelta;
    for (int l = 0; l < 4; ++l) {
      const int idx = b.qs[4 * ib + l] | (((qh >> (3 * l)) & 7) << 8);
      const uint64_t grid = kIq1sGrid[idx];
      for (int j = 0; j < 8; ++j) {
        const auto gv = static_cast<int8_t>(grid_byte(grid, j));
        y[32 * ib + 8 * l + j] = dl * (static_cast<float>(gv) + delta);
      }
    }
  }
}

void deq_iq1_m(const uint8_t* p, float* y) {
  const auto b = load<BlockIQ1_M>(p);
  const float d = fp16_to_f32(iq1m_scale_bits(b.scales));
  for (int k = 0; k < 32; ++k) {  // 8 elements per grid index; a 3-bit scale per 16 elements
    const int i = k / 2;
    const int sw = b.scales[2 * (i / 4)] | (b.scales[2 * (i / 4) + 1] << 8);
    const int s = (sw >> (3 * (i % 4))) & 7;
    const float dl = d * static_cast<float>(2 * s + 1);
    const int h = (b.qh[k / 2] >> (4 * (k % 2))) & 0xF;
    const int idx = b.qs[k] | ((h & 7) << 8);
    const float delta = (h & 8) ? -kIq1sDelta : kIq1sDelta;
    const uint64_t grid = kIq1sGrid[idx];
    for (int j = 0; j < 8; ++j) {
      const auto gv = static_cast<int8_t>(grid_byte(grid, j));
      y[8 * k + j] = dl * (static_cast<float>(gv) + delta);
    }
  }
}

void deq_iq4_xs(const uint8_t* p, float* y) {
  const auto b = load<BlockIQ4_XS>(p);
  const float d = fp16_to_f32(b.d);
  for (int ib = 0; ib < 8; ++ib) {
    const int lo = (b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF;
    const int hi = (b.scales_h >> (2 * ib)) & 3;
    const float dl = d * static_cast<float>((lo | (hi << 4)) - 32);
    const uint8_t* q = b.qs + 16 * ib;
    for (int j = 0; j < 16; ++j) {
      y[32 * ib + j] = dl * static_cast<float>(kKvaluesIq4nl[q[j] & 0xF]);
      y[32 * ib + j + 16] = dl * static_cast<float>(kKvaluesIq4nl[q[j] >> 4]);
    }
  }
}

void deq_f32(const uint8_t* p, float* y) { std::memcpy(y, p, 4); }
void deq_f16(const uint8_t* p, float* y) {
  *y = fp16_to_f32(static_cast<uint16_t>(p[0] | (p[1] << 8)));
}
void deq_bf16(const uint8_t* p, float* y) {
  *y = bf16_to_f32(static_cast<uint16_t>(p[0] | (p[1] << 8)));
}
void deq_i32(const uint8_t* p, float* y) {
  int32_t v;
  std::memcpy(&v, p, 4);
  *y = static_cast<float>(v);
}

using DeqFn = void (*)(const uint8_t*, float*);

DeqFn dequant_fn(QType t) {
  switch (t) {
    case QType::kF32: return deq_f32;
    case QType::kF16: return deq_f16;
    case QType::kBF16: return deq_bf16;
    case QType::kI32: return deq_i32;
    case QType::kQ8_0: return deq_q8_0;
    case QType::kQ2_K: return deq_q2_K;
    case QType::kQ3_K: return deq_q3_K;
    case QType::kQ4_K: return deq_q4_K;
    case QType::kQ5_K: return deq_q5_K;
    case QType::kQ6_K: return deq_q6_K;
    case QType::kIQ2_XXS: return deq_iq2_xxs;
    case QType::kIQ2_XS: return deq_iq2_xs;
    case QType::kIQ2_S: return deq_iq2_s;
    case QType::kIQ3_XXS: return deq_iq3_xxs;
    case QType::kIQ3_S: return deq_iq3_s;
    case QType::kIQ1_S: return deq_iq1_s;
    case QType::kIQ1_M: return deq_iq1_m;
    case QType::kIQ4_NL: return deq_iq4_nl;
    case QType::kIQ4_XS: return deq_iq4_xs;
    case QType::kMXFP4: return deq_mxfp4;
    case QType::kQ2_0: return deq_q2_0;
    case QType::kF8_E4M3_B128: return deq_f8_b128;
  }
  return nullptr;
}

}  // namespace

Status check_row_args(QType type, int64_t n, const QTypeInfo** info_out);

Status dequantize_row(QType type, const void* src, float* dst, int64_t n) {
  const QTypeInfo* info = nullptr;
  DSV4_RETURN_IF_ERROR(check_row_args(type, n, &info));
  const DeqFn fn = dequant_fn(type);
  DSV4_CHECK(fn != nullptr);
  const auto* p = static_cast<const uint8_t*>(src);
  const int64_t nb = n / info->block_size;
  for (int64_t i = 0; i < nb; ++i)
    fn(p + static_cast<size_t>(i) * info->type_size, dst + i * info->block_size);
  return Status::ok();
}

}  // namespace dsv4::quant
