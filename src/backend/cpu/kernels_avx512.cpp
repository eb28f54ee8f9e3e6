// dsv4 backend/cpu: AVX-512 (F/BW/VL) kernels (the kAvx512 level): 512-bit dot products and
// axpy; the dequantizers are the AVX2 level's (bit-identical to quant::dequantize_row anyway).
#include "kernels.h"

#if defined(__x86_64__)
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on their own _mm512_undefined_* helpers
// and _mm512_castps256_ps512 (GCC PR 105593); the warnings are about the header, not this code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
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

DSV4_TARGET_BEGIN("avx512f,avx512bw,avx512vl,avx2,fma,f16c")

inline __m256 i8x8_to_ps(__m128i v8) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v8)); }
inline __m256 sign_mask8(uint8_t signs) {
  const __m256i bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256i s = _mm256_and_si256(_mm256_set1_epi32(signs), bits);
  const __m256i neg = _mm256_cmpeq_epi32(s, bits);
  return _mm256_castsi256_ps(_mm256_slli_epi32(neg, 31));
}

// 64 lanes (4 accumulators of 16); element c → accumulator (c / 16) mod 4.
// The horizontal steps of hsum, on s = (a0 + a1) + (a2 + a3).
inline float hsum_s(__m512 s) {
  const __m512 hi = _mm512_shuffle_f32x4(s, s, 0xEE);  // lanes 8..15 to 0..7
  const __m256 h8 = _mm256_add_ps(_mm512_castps512_ps256(s), _mm512_castps512_ps256(hi));
  const __m128 h = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
  const __m128 q = _mm_add_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
}
inline float hsum(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
  return hsum_s(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

template <int NR>
void dot_rows_t(const float* w, int64_t ldw, const float* x, int64_t n, float* out) {
  __m512 acc[NR][4];
  for (int r = 0; r < NR; ++r)
    for (int j = 0; j < 4; ++j) acc[r][j] = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 64 <= n; c += 64) {
    const __m512 x0 = _mm512_loadu_ps(x + c), x1 = _mm512_loadu_ps(x + c + 16);
    const __m512 x2 = _mm512_loadu_ps(x + c + 32), x3 = _mm512_loadu_ps(x + c + 48);
    for (int r = 0; r < NR; ++r) {
      const float* wr = w + r * ldw + c;
      acc[r][0] = _mm512_fmadd_ps(_mm512_loadu_ps(wr), x0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(_mm512_loadu_ps(wr + 16), x1, acc[r][1]);
      acc[r][2] = _mm512_fmadd_ps(_mm512_loadu_ps(wr + 32), x2, acc[r][2]);
      acc[r][3] = _mm512_fmadd_ps(_mm512_loadu_ps(wr + 48), x3, acc[r][3]);
    }
  }
  for (int j = 0; c < n; c += 16, ++j) {
    const int64_t rem = n - c;
    const __mmask16 m = rem >= 16 ? static_cast<__mmask16>(0xFFFF)
                                  : static_cast<__mmask16>((1u << rem) - 1u);
    const __m512 xv = _mm512_maskz_loadu_ps(m, x + c);
    for (int r = 0; r < NR; ++r)
      acc[r][j] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + r * ldw + c), xv, acc[r][j]);
  }
  for (int r = 0; r < NR; ++r) out[r] = hsum(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
}

float dot_avx512(const float* a, const float* b, int64_t n) {
  float o;
  dot_rows_t<1>(a, 0, b, n, &o);
  return o;
}

void dot_rows_avx512(const float* w, int64_t ldw, int nr, const float* x, int64_t n, float* out) {
  switch (nr) {
    case 4: dot_rows_t<4>(w, ldw, x, n, out); return;
    case 3: dot_rows_t<3>(w, ldw, x, n, out); return;
    case 2: dot_rows_t<2>(w, ldw, x, n, out); return;
    default: dot_rows_t<1>(w, ldw, x, n, out); return;
  }
}

// Prefill micro-kernel: R rows × T tokens. Accumulator j (elements c with (c / 16) mod 4 == j)
// of every pair is computed in turn, visiting c = 16j, 16j + 64, ... in increasing order with the
// same full / masked loads as dot_rows_t, then the four are reduced by the same hsum: per pair,
// the exact operation sequence of dot_rows_t<1>. 4 × 6 = 24 accumulators + 4 weight vectors + 1
// activation vector stay in the 32 registers: 10 loads per 24 FMAs.
// Pass J of a tile: the R·T accumulators of lane group J (registers), folded into the partial
// buffers as hsum's tree does: s01 = a0 + a1, s23 = a2 + a3, s = s01 + s23 (into s01).
template <int R, int T, int J>
void tile_pass(const float* w, int64_t ldw, const float* const* xp, int64_t n,
               float (*s01)[16], float (*a2)[16]) {
  __m512 acc[R * T];
  const int j = J;
  DSV4_UNROLL
  for (int i = 0; i < R * T; ++i) acc[i] = _mm512_setzero_ps();
  // One loop: full chunks load everything, the last partial one (if any) loads masked, as
  // dot_rows_t does; a full mask load is a plain load.
  for (int64_t c = 16 * j; c < n; c += 64) {
    const __mmask16 m = n - c >= 16 ? static_cast<__mmask16>(0xFFFF)
                                    : static_cast<__mmask16>((1u << (n - c)) - 1u);
    __m512 wv[R];
    DSV4_UNROLL
    for (int r = 0; r < R; ++r) wv[r] = _mm512_maskz_loadu_ps(m, w + r * ldw + c);
    DSV4_UNROLL
    for (int t = 0; t < T; ++t) {
      const __m512 xv = _mm512_maskz_loadu_ps(m, xp[t] + c);
      DSV4_UNROLL
      for (int r = 0; r < R; ++r) acc[r * T + t] = _mm512_fmadd_ps(wv[r], xv, acc[r * T + t]);
    }
  }
  DSV4_UNROLL
  for (int i = 0; i < R * T; ++i) {
    if constexpr (J == 0) {
      _mm512_store_ps(s01[i], acc[i]);
    } else if constexpr (J == 1) {
      _mm512_store_ps(s01[i], _mm512_add_ps(_mm512_load_ps(s01[i]), acc[i]));
    } else if constexpr (J == 2) {
      _mm512_store_ps(a2[i], acc[i]);
    } else {
      _mm512_store_ps(s01[i], _mm512_add_ps(_mm512_load_ps(s01[i]), _mm512_add_ps(_mm512_load_ps(a2[i]), acc[i])));
    }
  }
}

template <int R, int T>
void dot_tile_t(const float* w, int64_t ldw, const float* const* x, int64_t n, float* out,
                int64_t ldo) {
  alignas(64) float s01[R * T][16];
  alignas(64) float a2[R * T][16];
  const float* xp[T];
  for (int t = 0; t < T; ++t) xp[t] = x[t];
  tile_pass<R, T, 0>(w, ldw, xp, n, s01, a2);
  tile_pass<R, T, 1>(w, ldw, xp, n, s01, a2);
  tile_pass<R, T, 2>(w, ldw, xp, n, s01, a2);
  tile_pass<R, T, 3>(w, ldw, xp, n, s01, a2);
  for (int r = 0; r < R; ++r)
    for (int t = 0; t < T; ++t) out[t * ldo + r] = hsum_s(_mm512_load_ps(s01[r * T + t]));
}

template <int R>
void dot_tile_r(const float* w, int64_t ldw, const float* const* x, int nt, int64_t n, float* out,
                int64_t ldo) {
  switch (nt) {
    case 6: dot_tile_t<R, 6>(w, ldw, x, n, out, ldo); return;
    case 5: dot_tile_t<R, 5>(w, ldw, x, n, out, ldo); return;
    case 4: dot_tile_t<R, 4>(w, ldw, x, n, out, ldo); return;
    case 3: dot_tile_t<R, 3>(w, ldw, x, n, out, ldo); return;
    case 2: dot_tile_t<R, 2>(w, ldw, x, n, out, ldo); return;
    default: dot_tile_t<R, 1>(w, ldw, x, n, out, ldo); return;
  }
}

void dot_tile_avx512(const float* w, int64_t ldw, int nr, const float* const* x, int nt, int64_t n,
                     float* out, int64_t ldo) {
  switch (nr) {
    case 4: dot_tile_r<4>(w, ldw, x, nt, n, out, ldo); return;
    case 3: dot_tile_r<3>(w, ldw, x, nt, n, out, ldo); return;
    case 2: dot_tile_r<2>(w, ldw, x, nt, n, out, ldo); return;
    default: dot_tile_r<1>(w, ldw, x, nt, n, out, ldo); return;
  }
}

void axpy_avx512(float a, const float* x, float* y, int64_t n) {
  const __m512 av = _mm512_set1_ps(a);
  int64_t c = 0;
  for (; c + 16 <= n; c += 16)
    _mm512_storeu_ps(y + c, _mm512_add_ps(_mm512_loadu_ps(y + c), _mm512_mul_ps(av, _mm512_loadu_ps(x + c))));
  for (; c < n; ++c) y[c] += a * x[c];
}

// Attention / indexer tiles, 16 heads = one vector (kernels.h): per (row, head) one FMA chain in
// increasing d (qk16) or k (pv16), so a value never depends on the block it was computed in.
// qk16: R rows at a time (R pointers stay in registers; 9 loads per 8 FMAs at R = 8, the row
// element as an embedded broadcast).
template <int R>
void qk16_block(const float* qt, const float* const* x, int64_t n, float* out) {
  __m512 acc[R];
  const float* xr[R];
  DSV4_UNROLL
  for (int r = 0; r < R; ++r) {
    acc[r] = _mm512_setzero_ps();
    xr[r] = x[r];
  }
  for (int64_t d = 0; d < n; ++d) {
    const __m512 q = _mm512_loadu_ps(qt + d * 16);
    DSV4_UNROLL
    for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(xr[r][d]), q, acc[r]);
  }
  DSV4_UNROLL
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(out + r * 16, acc[r]);
}

void qk16_avx512(const float* qt, const float* const* x, int64_t nr, int64_t n, float* out) {
  int64_t r = 0;
  for (; r + 8 <= nr; r += 8) qk16_block<8>(qt, x + r, n, out + r * 16);
  if (nr - r >= 4) {
    qk16_block<4>(qt, x + r, n, out + r * 16);
    r += 4;
  }
  if (nr - r >= 2) {
    qk16_block<2>(qt, x + r, n, out + r * 16);
    r += 2;
  }
  if (nr - r >= 1) qk16_block<1>(qt, x + r, n, out + r * 16);
}

// pv16: C output columns at a time (C accumulators of 16 heads; per row one weight vector load
// and C broadcast FMAs).
template <int C>
void pv16_block(const float* p, const float* const* x, int64_t nk, int64_t c0, float* ot) {
  __m512 acc[C];
  DSV4_UNROLL
  for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
  for (int64_t k = 0; k < nk; ++k) {
    const __m512 pv = _mm512_loadu_ps(p + k * 16);
    const float* xk = x[k] + c0;
    DSV4_UNROLL
    for (int c = 0; c < C; ++c) acc[c] = _mm512_fmadd_ps(_mm512_set1_ps(xk[c]), pv, acc[c]);
  }
  DSV4_UNROLL
  for (int c = 0; c < C; ++c) _mm512_storeu_ps(ot + (c0 + c) * 16, acc[c]);
}

void pv16_avx512(const float* p, const float* const* x, int64_t nk, int64_t n, float* ot) {
  int64_t c = 0;
  for (; c + 16 <= n; c += 16) pv16_block<16>(p, x, nk, c, ot);
  if (n - c >= 8) {
    pv16_block<8>(p, x, nk, c, ot);
    c += 8;
  }
  if (n - c >= 4) {
    pv16_block<4>(p, x, nk, c, ot);
    c += 4;
  }
  if (n - c >= 2) {
    pv16_block<2>(p, x, nk, c, ot);
    c += 2;
  }
  if (n - c >= 1) pv16_block<1>(p, x, nk, c, ot);
}

// Fused dequantize-and-dot (fused_dot.inc) in this level's lane layout: element c → accumulator
// (c / 16) mod 4; the 8-float halves of each 16 are paired before the FMA.
struct Acc {
  __m512 a[4];
  __m256 lo;
  Acc() {
    for (auto& v : a) v = _mm512_setzero_ps();
    lo = _mm256_setzero_ps();
  }
  inline void add(int64_t c, __m256 v, const float* x) {
    if ((c & 8) == 0) {
      lo = v;
      return;
    }
    const int64_t c0 = c - 8;
    const __m512 w = _mm512_castpd_ps(
        _mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(v), 1));
    const int j = static_cast<int>((c0 >> 4) & 3);
    a[j] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + c0), a[j]);
  }
  float sum() const { return hsum(a[0], a[1], a[2], a[3]); }
};
#include "fused_dot.inc"

// 16-bit float rows (the BF16 / F16 output head and router): 16 elements per conversion, four
// independent accumulators, no software prefetch (the hardware prefetcher does better on these
// sequential rows: 30-33 vs 25-28 GB/s on 2 Zen 4 cores). Element c goes to accumulator
// (c / 16) mod 4 in increasing c, as Acc does (Acc builds the same 16 floats from two halves):
// bit-identical to fdot_bf16 / fdot_f16 and to dot(dequant(row), x).
inline __m512 bf16x16_to_ps(const uint8_t* p) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}
inline __m512 f16x16_to_ps(const uint8_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

template <bool kBf16>
inline __m512 h16x16_to_ps(const uint8_t* p) {
  if constexpr (kBf16) {
    return bf16x16_to_ps(p);
  } else {
    return f16x16_to_ps(p);
  }
}

template <bool kBf16>
float fdot16_512(const uint8_t* p, const float* x, int64_t n) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  int64_t c = 0;
  for (; c + 64 <= n; c += 64) {
    a0 = _mm512_fmadd_ps(h16x16_to_ps<kBf16>(p + 2 * c), _mm512_loadu_ps(x + c), a0);
    a1 = _mm512_fmadd_ps(h16x16_to_ps<kBf16>(p + 2 * c + 32), _mm512_loadu_ps(x + c + 16), a1);
    a2 = _mm512_fmadd_ps(h16x16_to_ps<kBf16>(p + 2 * c + 64), _mm512_loadu_ps(x + c + 32), a2);
    a3 = _mm512_fmadd_ps(h16x16_to_ps<kBf16>(p + 2 * c + 96), _mm512_loadu_ps(x + c + 48), a3);
  }
  // n % 32 == 0 (has_fused): at most two more chunks of 16, to accumulators 0 and 1
  if (c < n) {
    a0 = _mm512_fmadd_ps(h16x16_to_ps<kBf16>(p + 2 * c), _mm512_loadu_ps(x + c), a0);
    a1 = _mm512_fmadd_ps(h16x16_to_ps<kBf16>(p + 2 * c + 32), _mm512_loadu_ps(x + c + 16), a1);
  }
  return hsum(a0, a1, a2, a3);
}

FusedFn fused_for_512(QType type) {
  switch (type) {
    case QType::kBF16: return fdot16_512<true>;
    case QType::kF16: return fdot16_512<false>;
    default: return fused_for(type);
  }
}

bool dot_fused_avx512(QType type, const uint8_t* row, const float* x, int64_t n, float* out) {
  if (type != QType::kBF16 && type != QType::kF16) return dot_fused_impl(type, row, x, n, out);
  if (n % 32 != 0) return false;
  *out = fused_for_512(type)(row, x, n);
  return true;
}

bool has_fused_avx512(QType type, int64_t n) { return n % 32 == 0 && fused_for_512(type) != nullptr; }

DSV4_TARGET_END()

}  // namespace

const Kernels* kernels_avx512() {
  static const Kernels k = {kernels_avx2()->dequant, dot_avx512, dot_rows_avx512, dot_tile_avx512, axpy_avx512,
                            dot_fused_avx512, has_fused_avx512, qk16_avx512, pv16_avx512};
  return &k;
}

}  // namespace dsv4::backend::cpu

#else  // not x86-64

namespace dsv4::backend::cpu {
const Kernels* kernels_avx512() { return nullptr; }
}  // namespace dsv4::backend::cpu

#endif
