// dsv4 backend/cpu: AVX2 + FMA + F16C kernels (the kAvx2 level). Dequantizers follow
// src/quant/dequant.cpp operation by operation (same float32 products and differences, no FMA:
// the library is built with -ffp-contract=off), so they are bit-identical to it; types without a
// SIMD dequantizer here use quant::dequantize_row itself.
#include "kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include <cstring>

#include "dsv4/core/dtypes.h"
#include "dsv4/quant/blocks.h"
#include "dsv4/quant/iq_tables.h"
#include "simd_target.h"

namespace dsv4::backend::cpu {
namespace {

using quant::QType;

inline uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t rd32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// e4m3fn code → float32, all 256 codes (exact values; built once).
struct E4m3Lut {
  float v[256];
  E4m3Lut() {
    for (int i = 0; i < 256; ++i) v[i] = e4m3fn_to_f32(static_cast<uint8_t>(i));
  }
};
const E4m3Lut& e4m3_lut() {
  static const E4m3Lut lut;
  return lut;
}

DSV4_TARGET_BEGIN("avx2,fma,f16c")

// 8 signed bytes → 8 floats.
inline __m256 i8x8_to_ps(__m128i v8) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v8)); }

void deq_f16(const uint8_t* p, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i))));
  for (; i < n; ++i) y[i] = fp16_to_f32(rd16(p + 2 * i));
}

void deq_bf16(const uint8_t* p, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i)));
    _mm256_storeu_ps(y + i, _mm256_castsi256_ps(_mm256_slli_epi32(v, 16)));
  }
  for (; i < n; ++i) y[i] = bf16_to_f32(rd16(p + 2 * i));
}

void deq_q8_0(const uint8_t* p, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, p += sizeof(quant::BlockQ8_0), y += 32) {
    const __m256 d = _mm256_set1_ps(fp16_to_f32(rd16(p)));
    for (int j = 0; j < 4; ++j) {
      const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 2 + 8 * j));
      _mm256_storeu_ps(y + 8 * j, _mm256_mul_ps(i8x8_to_ps(q), d));
    }
  }
}

// 16 code bytes → 32 values d·table[nibble]: element j from the low nibble of byte j, j+16 from
// its high nibble.
inline void nibble_table32(const uint8_t* qs, __m128i table, __m256 d, float* y) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m128i m = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_shuffle_epi8(table, _mm_and_si128(q, m));
  const __m128i hi = _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(q, 4), m));
  _mm256_storeu_ps(y + 0, _mm256_mul_ps(d, i8x8_to_ps(lo)));
  _mm256_storeu_ps(y + 8, _mm256_mul_ps(d, i8x8_to_ps(_mm_srli_si128(lo, 8))));
  _mm256_storeu_ps(y + 16, _mm256_mul_ps(d, i8x8_to_ps(hi)));
  _mm256_storeu_ps(y + 24, _mm256_mul_ps(d, i8x8_to_ps(_mm_srli_si128(hi, 8))));
}

void deq_mxfp4(const uint8_t* p, float* y, int64_t nb) {
  const __m128i table = _mm_loadu_si128(reinterpret_cast<const __m128i*>(quant::kKvaluesMxfp4));
  for (int64_t b = 0; b < nb; ++b, p += sizeof(quant::BlockMXFP4), y += 32)
    nibble_table32(p + 1, table, _mm256_set1_ps(quant::e8m0_to_f32_half(p[0])), y);
}

void deq_iq4_nl(const uint8_t* p, float* y, int64_t nb) {
  const __m128i table = _mm_loadu_si128(reinterpret_cast<const __m128i*>(quant::kKvaluesIq4nl));
  for (int64_t b = 0; b < nb; ++b, p += sizeof(quant::BlockIQ4_NL), y += 32)
    nibble_table32(p + 2, table, _mm256_set1_ps(fp16_to_f32(rd16(p))), y);
}

void deq_f8_b128(const uint8_t* p, float* y, int64_t nb) {
  const float* lut = e4m3_lut().v;
  for (int64_t b = 0; b < nb; ++b, p += sizeof(quant::BlockF8E4M3B128), y += 128) {
    const __m256 d = _mm256_set1_ps(e8m0_to_f32(p[0]));
    for (int j = 0; j < 16; ++j) {
      const __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 1 + 8 * j)));
      _mm256_storeu_ps(y + 8 * j, _mm256_mul_ps(_mm256_i32gather_ps(lut, idx, 4), d));
    }
  }
}

// 16 2-bit codes (bits `shift` of 16 bytes) → 16 values dl·q − ml.
inline void q2_16(const uint8_t* q, int shift, __m256 dl, __m256 ml, float* y) {
  const __m128i v = _mm_and_si128(_mm_srl_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q)),
                                                _mm_cvtsi32_si128(shift)),
                                  _mm_set1_epi8(3));
  const __m256 a = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
  const __m256 b = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(v, 8)));
  _mm256_storeu_ps(y, _mm256_sub_ps(_mm256_mul_ps(dl, a), ml));
  _mm256_storeu_ps(y + 8, _mm256_sub_ps(_mm256_mul_ps(dl, b), ml));
}

void deq_q2_K(const uint8_t* p, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, p += sizeof(quant::BlockQ2_K), y += 256) {
    const uint8_t* scales = p;
    const uint8_t* qs = p + 16;
    const float d = fp16_to_f32(rd16(p + 80));
    const float dmin = fp16_to_f32(rd16(p + 82));
    for (int g = 0; g < 16; ++g) {
      const float dl = d * static_cast<float>(scales[g] & 0xF);
      const float ml = dmin * static_cast<float>(scales[g] >> 4);
      q2_16(qs + 32 * (g / 8) + 16 * (g % 2), 2 * ((g % 8) / 2), _mm256_set1_ps(dl),
            _mm256_set1_ps(ml), y + 16 * g);
    }
  }
}

void deq_q4_K(const uint8_t* p, float* y, int64_t nb) {
  const __m128i m4 = _mm_set1_epi8(0x0F);
  for (int64_t b = 0; b < nb; ++b, p += sizeof(quant::BlockQ4_K), y += 256) {
    const float d = fp16_to_f32(rd16(p));
    const float dmin = fp16_to_f32(rd16(p + 2));
    const uint8_t* scales = p + 4;
    const uint8_t* qs = p + 16;
    for (int j = 0; j < 8; ++j) {
      uint8_t sc, m;
      quant::get_scale_min_k4(j, scales, &sc, &m);
      const __m256 dd = _mm256_set1_ps(d * static_cast<float>(sc));
      const __m256 dm = _mm256_set1_ps(dmin * static_cast<float>(m));
      const uint8_t* q = qs + 32 * (j / 2);
      for (int h = 0; h < 2; ++h) {
        __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16 * h));
        v = (j % 2) ? _mm_and_si128(_mm_srli_epi16(v, 4), m4) : _mm_and_si128(v, m4);
        const __m256 a = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
        const __m256 c = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(v, 8)));
        float* o = y + 32 * j + 16 * h;
        _mm256_storeu_ps(o, _mm256_sub_ps(_mm256_mul_ps(dd, a), dm));
        _mm256_storeu_ps(o + 8, _mm256_sub_ps(_mm256_mul_ps(dd, c), dm));
      }
    }
  }
}

// Sign mask (bit 31 per lane) of the 8 sign bits of `signs`.
inline __m256 sign_mask8(uint8_t signs) {
  const __m256i bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256i s = _mm256_and_si256(_mm256_set1_epi32(signs), bits);
  const __m256i neg = _mm256_cmpeq_epi32(s, bits);
  return _mm256_castsi256_ps(_mm256_slli_epi32(neg, 31));
}

void deq_iq2_xxs(const uint8_t* p, float* y, int64_t nb) {
  for (int64_t b = 0; b < nb; ++b, p += sizeof(quant::BlockIQ2_XXS), y += 256) {
    const float d = fp16_to_f32(rd16(p));
    const uint8_t* qs = p + 2;
    for (int ib = 0; ib < 8; ++ib) {
      const uint32_t aux0 = rd32(qs + 8 * ib);
      const uint32_t aux1 = rd32(qs + 8 * ib + 4);
      const __m256 db = _mm256_set1_ps(d * (0.5f + static_cast<float>(aux1 >> 28)) * 0.25f);
      for (int l = 0; l < 4; ++l) {
        const uint64_t grid = quant::kIq2xxsGrid[(aux0 >> (8 * l)) & 0xFF];
        const uint8_t signs = quant::kKsignsIq2xs[(aux1 >> (7 * l)) & 127];
        const __m256 g = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<int64_t>(grid))));
        _mm256_storeu_ps(y + 32 * ib + 8 * l, _mm256_xor_ps(_mm256_mul_ps(db, g), sign_mask8(signs)));
      }
    }
  }
}

bool dequant_avx2(QType type, const uint8_t* src, float* dst, int64_t n) {
  switch (type) {
    case QType::kF32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); return true;
    case QType::kF16: deq_f16(src, dst, n); return true;
    case QType::kBF16: deq_bf16(src, dst, n); return true;
    case QType::kQ8_0: deq_q8_0(src, dst, n / 32); return true;
    case QType::kMXFP4: deq_mxfp4(src, dst, n / 32); return true;
    case QType::kIQ4_NL: deq_iq4_nl(src, dst, n / 32); return true;
    case QType::kF8_E4M3_B128: deq_f8_b128(src, dst, n / 128); return true;
    case QType::kQ2_K: deq_q2_K(src, dst, n / 256); return true;
    case QType::kQ4_K: deq_q4_K(src, dst, n / 256); return true;
    case QType::kIQ2_XXS: deq_iq2_xxs(src, dst, n / 256); return true;
    default: return static_cast<bool>(quant::dequantize_row(type, src, dst, n));
  }
}

// ---- dots: 32 lanes (4 accumulators of 8); element c → accumulator (c / 8) mod 4 ----------

inline __m256i tail_mask(int64_t r) {  // first r (1..7) lanes
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(r)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// The horizontal steps of hsum, on s = (a0 + a1) + (a2 + a3).
inline float hsum_s(__m256 s) {
  const __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  const __m128 q = _mm_add_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
}
inline float hsum(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  return hsum_s(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}

template <int NR>
void dot_rows_t(const float* w, int64_t ldw, const float* x, int64_t n, float* out) {
  __m256 acc[NR][4];
  for (int r = 0; r < NR; ++r)
    for (int j = 0; j < 4; ++j) acc[r][j] = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 32 <= n; c += 32) {
    const __m256 x0 = _mm256_loadu_ps(x + c), x1 = _mm256_loadu_ps(x + c + 8);
    const __m256 x2 = _mm256_loadu_ps(x + c + 16), x3 = _mm256_loadu_ps(x + c + 24);
    for (int r = 0; r < NR; ++r) {
      const float* wr = w + r * ldw + c;
      acc[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(wr), x0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(_mm256_loadu_ps(wr + 8), x1, acc[r][1]);
      acc[r][2] = _mm256_fmadd_ps(_mm256_loadu_ps(wr + 16), x2, acc[r][2]);
      acc[r][3] = _mm256_fmadd_ps(_mm256_loadu_ps(wr + 24), x3, acc[r][3]);
    }
  }
  for (int j = 0; c < n; c += 8, ++j) {
    const int64_t rem = n - c;
    if (rem >= 8) {
      const __m256 xv = _mm256_loadu_ps(x + c);
      for (int r = 0; r < NR; ++r)
        acc[r][j] = _mm256_fmadd_ps(_mm256_loadu_ps(w + r * ldw + c), xv, acc[r][j]);
    } else {
      const __m256i m = tail_mask(rem);
      const __m256 xv = _mm256_maskload_ps(x + c, m);
      for (int r = 0; r < NR; ++r)
        acc[r][j] = _mm256_fmadd_ps(_mm256_maskload_ps(w + r * ldw + c, m), xv, acc[r][j]);
    }
  }
  for (int r = 0; r < NR; ++r) out[r] = hsum(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
}

float dot_avx2(const float* a, const float* b, int64_t n) {
  float o;
  dot_rows_t<1>(a, 0, b, n, &o);
  return o;
}

void dot_rows_avx2(const float* w, int64_t ldw, int nr, const float* x, int64_t n, float* out) {
  switch (nr) {
    case 4: dot_rows_t<4>(w, ldw, x, n, out); return;
    case 3: dot_rows_t<3>(w, ldw, x, n, out); return;
    case 2: dot_rows_t<2>(w, ldw, x, n, out); return;
    default: dot_rows_t<1>(w, ldw, x, n, out); return;
  }
}

// Prefill micro-kernel: R rows × T tokens. Accumulator j (elements c with (c / 8) mod 4 == j) of
// every pair is computed in turn, visiting c = 8j, 8j + 32, ... in increasing order with the same
// full / masked loads as dot_rows_t, then the four are reduced by the same hsum: per pair, the
// exact operation sequence of dot_rows_t<1>.
// Pass J of a tile: the R·T accumulators of lane group J (registers), folded into the partial
// buffers as hsum's tree does: s01 = a0 + a1, s23 = a2 + a3, s = s01 + s23 (into s01).
template <int R, int T, int J>
void tile_pass(const float* w, int64_t ldw, const float* const* xp, int64_t n,
               float (*s01)[8], float (*a2)[8]) {
  __m256 acc[R * T];
  const int j = J;
  DSV4_UNROLL
  for (int i = 0; i < R * T; ++i) acc[i] = _mm256_setzero_ps();
  int64_t c = 8 * j;
  for (; c + 8 <= n; c += 32) {
    __m256 wv[R];
    DSV4_UNROLL
    for (int r = 0; r < R; ++r) wv[r] = _mm256_loadu_ps(w + r * ldw + c);
    DSV4_UNROLL
    for (int t = 0; t < T; ++t) {
      const __m256 xv = _mm256_loadu_ps(xp[t] + c);
      DSV4_UNROLL
      for (int r = 0; r < R; ++r) acc[r * T + t] = _mm256_fmadd_ps(wv[r], xv, acc[r * T + t]);
    }
  }
  if (c < n) {
    const __m256i m = tail_mask(n - c);
    __m256 wv[R];
    DSV4_UNROLL
    for (int r = 0; r < R; ++r) wv[r] = _mm256_maskload_ps(w + r * ldw + c, m);
    DSV4_UNROLL
    for (int t = 0; t < T; ++t) {
      const __m256 xv = _mm256_maskload_ps(xp[t] + c, m);
      DSV4_UNROLL
      for (int r = 0; r < R; ++r) acc[r * T + t] = _mm256_fmadd_ps(wv[r], xv, acc[r * T + t]);
    }
  }
  DSV4_UNROLL
  for (int i = 0; i < R * T; ++i) {
    if constexpr (J == 0) {
      _mm256_store_ps(s01[i], acc[i]);
    } else if constexpr (J == 1) {
      _mm256_store_ps(s01[i], _mm256_add_ps(_mm256_load_ps(s01[i]), acc[i]));
    } else if constexpr (J == 2) {
      _mm256_store_ps(a2[i], acc[i]);
    } else {
      _mm256_store_ps(s01[i], _mm256_add_ps(_mm256_load_ps(s01[i]), _mm256_add_ps(_mm256_load_ps(a2[i]), acc[i])));
    }
  }
}

template <int R, int T>
void dot_tile_t(const float* w, int64_t ldw, const float* const* x, int64_t n, float* out,
                int64_t ldo) {
  alignas(64) float s01[R * T][8];
  alignas(64) float a2[R * T][8];
  const float* xp[T];
  for (int t = 0; t < T; ++t) xp[t] = x[t];
  tile_pass<R, T, 0>(w, ldw, xp, n, s01, a2);
  tile_pass<R, T, 1>(w, ldw, xp, n, s01, a2);
  tile_pass<R, T, 2>(w, ldw, xp, n, s01, a2);
  tile_pass<R, T, 3>(w, ldw, xp, n, s01, a2);
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) out[t * ldo + r] = hsum_s(_mm256_load_ps(s01[r * T + t]));
}

template <int R>
void dot_tile_r(const float* w, int64_t ldw, const float* const* x, int nt, int64_t n, float* out,
                int64_t ldo) {
  int t = 0;
  for (; t + 2 <= nt; t += 2) dot_tile_t<R, 2>(w, ldw, x + t, n, out + t * ldo, ldo);
  if (t < nt) dot_tile_t<R, 1>(w, ldw, x + t, n, out + t * ldo, ldo);
}

void dot_tile_avx2(const float* w, int64_t ldw, int nr, const float* const* x, int nt, int64_t n,
                   float* out, int64_t ldo) {
  switch (nr) {
    case 4: dot_tile_r<4>(w, ldw, x, nt, n, out, ldo); return;
    case 3: dot_tile_r<3>(w, ldw, x, nt, n, out, ldo); return;
    case 2: dot_tile_r<2>(w, ldw, x, nt, n, out, ldo); return;
    default: dot_tile_r<1>(w, ldw, x, nt, n, out, ldo); return;
  }
}

void axpy_avx2(float a, const float* x, float* y, int64_t n) {
  const __m256 av = _mm256_set1_ps(a);
  int64_t c = 0;
  for (; c + 8 <= n; c += 8)
    _mm256_storeu_ps(y + c, _mm256_add_ps(_mm256_loadu_ps(y + c), _mm256_mul_ps(av, _mm256_loadu_ps(x + c))));
  for (; c < n; ++c) y[c] += a * x[c];
}

// Attention / indexer tiles, 16 heads = two vectors (kernels.h): per (row, head) one FMA chain
// in increasing d (qk16) or k (pv16). qk16: R rows × 2 vectors of accumulators, each row element
// broadcast once for both; pv16: C columns × 2 vectors.
template <int R>
void qk16_block(const float* qt, const float* const* x, int64_t n, float* out) {
  __m256 lo[R], hi[R];
  const float* xr[R];
  DSV4_UNROLL
  for (int r = 0; r < R; ++r) {
    lo[r] = _mm256_setzero_ps();
    hi[r] = _mm256_setzero_ps();
    xr[r] = x[r];
  }
  for (int64_t d = 0; d < n; ++d) {
    const __m256 q0 = _mm256_loadu_ps(qt + d * 16), q1 = _mm256_loadu_ps(qt + d * 16 + 8);
    DSV4_UNROLL
    for (int r = 0; r < R; ++r) {
      const __m256 xv = _mm256_broadcast_ss(xr[r] + d);
      lo[r] = _mm256_fmadd_ps(xv, q0, lo[r]);
      hi[r] = _mm256_fmadd_ps(xv, q1, hi[r]);
    }
  }
  DSV4_UNROLL
  for (int r = 0; r < R; ++r) {
    _mm256_storeu_ps(out + r * 16, lo[r]);
    _mm256_storeu_ps(out + r * 16 + 8, hi[r]);
  }
}

void qk16_avx2(const float* qt, const float* const* x, int64_t nr, int64_t n, float* out) {
  int64_t r = 0;
  for (; r + 6 <= nr; r += 6) qk16_block<6>(qt, x + r, n, out + r * 16);
  for (; r + 2 <= nr; r += 2) qk16_block<2>(qt, x + r, n, out + r * 16);
  if (r < nr) qk16_block<1>(qt, x + r, n, out + r * 16);
}

template <int C>
void pv16_block(const float* p, const float* const* x, int64_t nk, int64_t c0, float* ot) {
  __m256 lo[C], hi[C];
  DSV4_UNROLL
  for (int c = 0; c < C; ++c) {
    lo[c] = _mm256_setzero_ps();
    hi[c] = _mm256_setzero_ps();
  }
  for (int64_t k = 0; k < nk; ++k) {
    const __m256 p0 = _mm256_loadu_ps(p + k * 16), p1 = _mm256_loadu_ps(p + k * 16 + 8);
    const float* xk = x[k] + c0;
    DSV4_UNROLL
    for (int c = 0; c < C; ++c) {
      const __m256 xv = _mm256_broadcast_ss(xk + c);
      lo[c] = _mm256_fmadd_ps(xv, p0, lo[c]);
      hi[c] = _mm256_fmadd_ps(xv, p1, hi[c]);
    }
  }
  DSV4_UNROLL
  for (int c = 0; c < C; ++c) {
    _mm256_storeu_ps(ot + (c0 + c) * 16, lo[c]);
    _mm256_storeu_ps(ot + (c0 + c) * 16 + 8, hi[c]);
  }
}

void pv16_avx2(const float* p, const float* const* x, int64_t nk, int64_t n, float* ot) {
  int64_t c = 0;
  for (; c + 6 <= n; c += 6) pv16_block<6>(p, x, nk, c, ot);
  for (; c + 2 <= n; c += 2) pv16_block<2>(p, x, nk, c, ot);
  if (c < n) pv16_block<1>(p, x, nk, c, ot);
}

// ---- fused dequantize-and-dot (decode): see fused_dot.inc. Lane layout of dot_rows_t:
// element c → accumulator (c / 8) mod 4, increasing c per accumulator.

struct Acc4 {
  __m256 a[4];
  Acc4() {
    for (auto& v : a) v = _mm256_setzero_ps();
  }
  // v holds elements c..c+7 of the row (c a multiple of 8)
  inline void add(int64_t c, __m256 v, const float* x) {
    const int j = static_cast<int>((c >> 3) & 3);
    a[j] = _mm256_fmadd_ps(v, _mm256_loadu_ps(x + c), a[j]);
  }
  float sum() const { return hsum(a[0], a[1], a[2], a[3]); }
};
using Acc = Acc4;
#include "fused_dot.inc"

bool dot_fused_avx2(QType type, const uint8_t* row, const float* x, int64_t n, float* out) {
  return dot_fused_impl(type, row, x, n, out);
}

bool has_fused_avx2(QType type, int64_t n) { return n % 32 == 0 && fused_for(type) != nullptr; }

DSV4_TARGET_END()

const Kernels kAvx2Kernels = {dequant_avx2, dot_avx2, dot_rows_avx2, dot_tile_avx2, axpy_avx2, dot_fused_avx2,
                              has_fused_avx2, qk16_avx2, pv16_avx2};

}  // namespace

const Kernels* kernels_avx2() { return &kAvx2Kernels; }

}  // namespace dsv4::backend::cpu

#else  // not x86-64

namespace dsv4::backend::cpu {
const Kernels* kernels_avx2() { return nullptr; }
}  // namespace dsv4::backend::cpu

#endif
