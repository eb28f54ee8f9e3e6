// dsv4 backend/cpu: bf16 weights × bf16 activations with AVX512-BF16 (vdpbf16ps) — the
// act_quant = q8 path for BF16 weights (qdot.h QDotKernels::bf16) on CPUs that have it (Zen 4,
// Sapphire Rapids and later): upstream llama.cpp's CPU backend rounds the activation row to bf16
// (its vec_dot_type for bf16) and takes ggml_vec_dot_bf16, which on such CPUs is vdpbf16ps. This
// kernel computes what that function computes, in its order, for every (row, token):
//   chunks of 64 elements: c1 = dpbf16(c1, w[i .. i+31], x[i .. i+31]),
//                          c2 = dpbf16(c2, w[i+32 .. i+63], x[i+32 .. i+63]);
//   sum (double) = reduce(c1) + reduce(c2), then each remaining element's float product added
//   in double; out = (float) sum.
// reduce() is _mm512_reduce_add_ps's tree (256-bit halves, 128-bit halves, pairs). vdpbf16ps
// treats bf16 subnormals as zero and flushes subnormal results (its definition, on every CPU that
// has it); within one CPU every tile shape gives the same bits (ops.h determinism).
// The activation row is its bf16 rounding (round to nearest even, dtypes.h f32_to_bf16: the
// bytes of quant::act_round_trip(kBF16)), packed: 2 bytes per element.
// A decode GEMV with it reads the weight row once with two vdpbf16ps per 128 bytes, where the
// float path (widen to f32 + FMA) took six instructions; on 2 Zen 4 cores that is ~44 vs ~36
// GB/s at times the memory gives 50 (a 1 GB BF16 output head).
#include "qdot.h"

#if defined(__x86_64__)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <cstring>

#include "dsv4/core/dtypes.h"
#include "simd_target.h"

namespace dsv4::backend::cpu {
namespace {

DSV4_TARGET_BEGIN("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma")

void quantize_bf16(const float* x, void* dst, int64_t k) {
  auto* y = static_cast<uint16_t*>(dst);
  const __m512i lsb = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff);
  const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
  int64_t i = 0;
  for (; i + 16 <= k; i += 16) {
    const __m512i u = _mm512_loadu_si512(x + i);
    __m512i r = _mm512_srli_epi32(
        _mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(u, 16), lsb))), 16);
    // NaN: the high half with the quiet bit set, as f32_to_bf16
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs_mask), inf);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(0x0040)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), _mm512_cvtepi32_epi16(r));
  }
  for (; i < k; ++i) y[i] = f32_to_bf16(x[i]);
}

// _mm512_reduce_add_ps's order, written out (so it is fixed whatever the compiler's header does)
inline float reduce16(__m512 v) {
  const __m256 h8 = _mm256_add_ps(_mm512_castps512_ps256(v),
                                  _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
  const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
  return _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
}

// element j of a bf16 row at any byte address (weight rows need not be 2-byte aligned)
inline float bf16f(const void* row, int64_t j) {
  uint16_t h;
  std::memcpy(&h, static_cast<const uint8_t*>(row) + 2 * j, 2);
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// NR rows × NT tokens, every (row, token) in the order above.
template <int NR, int NT>
void tile_t(const uint8_t* w, size_t row_bytes, const void* const* xq, int64_t k, float* out, int64_t ldo) {
  __m512 c1[NR][NT], c2[NR][NT];
  DSV4_UNROLL for (int i = 0; i < NR; ++i) {
    DSV4_UNROLL for (int t = 0; t < NT; ++t) c1[i][t] = c2[i][t] = _mm512_setzero_ps();
  }
  const uint16_t* x[NT];
  DSV4_UNROLL for (int t = 0; t < NT; ++t) x[t] = static_cast<const uint16_t*>(xq[t]);
  int64_t c = 0;
  for (; c + 64 <= k; c += 64) {
    __m512bh xa[NT], xb[NT];
    DSV4_UNROLL for (int t = 0; t < NT; ++t) {
      xa[t] = (__m512bh)_mm512_loadu_si512(x[t] + c);
      xb[t] = (__m512bh)_mm512_loadu_si512(x[t] + c + 32);
    }
    DSV4_UNROLL for (int i = 0; i < NR; ++i) {
      const uint8_t* wr = w + static_cast<size_t>(i) * row_bytes;
      const __m512bh wa = (__m512bh)_mm512_loadu_si512(wr + 2 * c);
      const __m512bh wb = (__m512bh)_mm512_loadu_si512(wr + 2 * c + 64);
      DSV4_UNROLL for (int t = 0; t < NT; ++t) {
        c1[i][t] = _mm512_dpbf16_ps(c1[i][t], wa, xa[t]);
        c2[i][t] = _mm512_dpbf16_ps(c2[i][t], wb, xb[t]);
      }
    }
  }
  DSV4_UNROLL for (int i = 0; i < NR; ++i) {
    const uint8_t* wr = w + static_cast<size_t>(i) * row_bytes;
    DSV4_UNROLL for (int t = 0; t < NT; ++t) {
      double sum = static_cast<double>(reduce16(c1[i][t]));
      sum += static_cast<double>(reduce16(c2[i][t]));
      for (int64_t j = c; j < k; ++j) sum += static_cast<double>(bf16f(wr, j) * bf16f(x[t], j));
      out[static_cast<int64_t>(t) * ldo + i] = static_cast<float>(sum);
    }
  }
}

// 4 × 4 tiles in two passes of 2 rows (64 accumulators would not fit the 32 registers).
template <int NT>
void tile_rows(const uint8_t* w, size_t row_bytes, int nr, const void* const* xq, int64_t k, float* out,
               int64_t ldo) {
  int i = 0;
  for (; i + 2 <= nr; i += 2) tile_t<2, NT>(w + static_cast<size_t>(i) * row_bytes, row_bytes, xq, k, out + i, ldo);
  if (i < nr) tile_t<1, NT>(w + static_cast<size_t>(i) * row_bytes, row_bytes, xq, k, out + i, ldo);
}

void tile(const uint8_t* w, size_t row_bytes, int nr, const void* const* xq, int nt, int64_t k, float* out,
          int64_t ldo) {
  switch (nt) {
    case 1: return tile_rows<1>(w, row_bytes, nr, xq, k, out, ldo);
    case 2: return tile_rows<2>(w, row_bytes, nr, xq, k, out, ldo);
    case 3: return tile_rows<3>(w, row_bytes, nr, xq, k, out, ldo);
    default: return tile_rows<4>(w, row_bytes, nr, xq, k, out, ldo);
  }
}

DSV4_TARGET_END()

}  // namespace

void fill_qdot_bf16_avx512(QDotKernels& k) {
  if (!__builtin_cpu_supports("avx512bf16") || !__builtin_cpu_supports("avx512bw") ||
      !__builtin_cpu_supports("avx512vl"))
    return;
  k.quantize_bf16 = quantize_bf16;
  k.bf16 = tile;
}

}  // namespace dsv4::backend::cpu

#else  // not x86-64

namespace dsv4::backend::cpu {
void fill_qdot_bf16_avx512(QDotKernels&) {}
}  // namespace dsv4::backend::cpu

#endif
