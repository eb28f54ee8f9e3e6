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
inline float hsum(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
  const __m512 s = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
  const __m512 hi = _mm512_shuffle_f32x4(s, s, 0xEE);  // lanes 8..15 to 0..7
  const __m256 h8 = _mm256_add_ps(_mm512_castps512_ps256(s), _mm512_castps512_ps256(hi));
  const __m128 h = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
  const __m128 q = _mm_add_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
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

void axpy_avx512(float a, const float* x, float* y, int64_t n) {
  const __m512 av = _mm512_set1_ps(a);
  int64_t c = 0;
  for (; c + 16 <= n; c += 16)
    _mm512_storeu_ps(y + c, _mm512_add_ps(_mm512_loadu_ps(y + c), _mm512_mul_ps(av, _mm512_loadu_ps(x + c))));
  for (; c < n; ++c) y[c] += a * x[c];
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

bool has_fused_avx512(QType type, int64_t n) { return n % 32 == 0 && fused_for(type) != nullptr; }

DSV4_TARGET_END()

}  // namespace

const Kernels* kernels_avx512() {
  static const Kernels k = {kernels_avx2()->dequant, dot_avx512, dot_rows_avx512, axpy_avx512,
                            dot_fused_impl, has_fused_avx512};
  return &k;
}

}  // namespace dsv4::backend::cpu

#else  // not x86-64

namespace dsv4::backend::cpu {
const Kernels* kernels_avx512() { return nullptr; }
}  // namespace dsv4::backend::cpu

#endif
