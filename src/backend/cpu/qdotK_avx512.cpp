// dsv4 backend/cpu: AVX-512 (F/BW/VL) integer dots of q2_K / q4_K / iq2_xxs weights with q8_K
// activations, and the q8_K quantizer (qdot.h, "weights × q8_K activations"; the avx512 level's
// fill_qdotK_avx512). A second copy of the dot kernels is compiled with AVX512-VNNI
// (vpdpbusd / vpdpwssd) and chosen at fill time when the CPU has it; both copies produce the
// same int32 lanes, hence the same bits.
//
// This file includes itself once per variant (namespaces base / vnni, the part under
// DSV4_QDOTK_AVX512_BODY), so the VNNI copy is compiled with that target and the base copy
// never contains a VNNI instruction.
//
// Lane layout (per (weight row, activation row) pair, per 256-block): four 64-element chunks;
// int32 lane l of the block's integer vector holds Σ over the 4 chunks of the scaled products of
// elements 64c + 4l .. 64c + 4l + 3 (q2_K, q4_K: the min term Σ m·bsums in lanes 0..7 of a
// second vector). Float order: per lane, acc = fma(d_w·d_x, f32(isum), acc) and, K-quants,
// acc = fma(−(dmin_w·d_x), f32(msum), acc) (zero lanes leave acc unchanged), blocks in
// increasing order; then a fixed horizontal sum (lanes 8..15 onto 0..7, 4..7 onto 0..3, 2..3,
// 1). iq2_xxs has its own float order (block totals, see iq2_xxs_row) shared with its panel
// GEMM. A pair's value never depends on nr, nt, position or the kernel that computed it.
//
// Learned from upstream llama.cpp ggml/src/ggml-cpu/arch/x86/quants.c (ggml_vec_dot_q2_K_q8_K,
// ggml_vec_dot_q4_K_q8_K, ggml_vec_dot_iq2_xxs_q8_K, AVX2 paths): maddubs of unsigned weights
// with signed activations, signs applied to the activations, bsums for the min terms.
// Differences: q2_K multiplies its 2-bit values by the 4-bit scale first (≤ 45, still a u8), so
// the VNNI copy needs one vpdpbusd per chunk; iq2_xxs builds its grid rows from scalar loads
// (faster than vpgatherdq on Zen 4, measured) and computes its sign bytes (7 bits + parity) in
// vector registers instead of table lookups.
#ifndef DSV4_QDOTK_AVX512_BODY
#include "qdot.h"

#if defined(__x86_64__)
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on their own _mm512_undefined_* helpers
// (GCC PR 105593); the warnings are about the header, not this code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <cstring>
#include <utility>

#include "dsv4/quant/act_quant.h"
#include "dsv4/quant/blocks.h"
#include "dsv4/quant/iq_tables.h"
#include "simd_target.h"

namespace dsv4::backend::cpu {
namespace {

using quant::BlockQ8_K;
using quant::kQK_K;

inline uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

DSV4_TARGET_BEGIN("avx512f,avx512bw,avx512vl,avx2,fma,f16c")

// ---- q8_K quantizer (bytes identical to quant::quantize_act_q8_K) ------------------------------
void quantize_q8_K(const float* x, void* dst, int64_t k) {
  auto* y = static_cast<BlockQ8_K*>(dst);
  const __m512 magic = _mm512_set1_ps(12582912.f);
  const __m512i mant = _mm512_set1_epi32(0x007fffff), bias = _mm512_set1_epi32(0x00400000);
  const __m512i c127 = _mm512_set1_epi32(127);
  for (int64_t b = 0; b < k / kQK_K; ++b, x += kQK_K) {
    BlockQ8_K& o = y[b];
    __m512 m = _mm512_setzero_ps();
    for (int j = 0; j < kQK_K; j += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + j)));
    const float amax = _mm512_reduce_max_ps(m);
    if (amax == 0.0f) {
      std::memset(&o, 0, sizeof o);
      continue;
    }
    int first = 0;  // the first element of largest |x|
    const __m512 am = _mm512_set1_ps(amax);
    for (int j = 0; j < kQK_K; j += 16) {
      const __mmask16 e =
          _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + j)), am, _CMP_EQ_OQ);
      if (e) {
        first = j + __builtin_ctz(e);
        break;
      }
    }
    const float iscale = -127.f / x[first];
    const __m512 is = _mm512_set1_ps(iscale);
    for (int g = 0; g < 16; ++g) {
      const __m512 v = _mm512_add_ps(_mm512_mul_ps(is, _mm512_loadu_ps(x + 16 * g)), magic);
      __m512i q = _mm512_sub_epi32(_mm512_and_si512(_mm512_castps_si512(v), mant), bias);
      q = _mm512_min_epi32(q, c127);
      const __m128i q8 = _mm512_cvtepi32_epi8(q);  // truncating, as the reference's int8 store
      _mm_storeu_si128(reinterpret_cast<__m128i*>(o.qs + 16 * g), q8);
      o.bsums[g] = static_cast<int16_t>(_mm512_reduce_add_epi32(_mm512_cvtepi8_epi32(q8)));
    }
    o.d = 1.0f / iscale;
  }
}

// Fixed horizontal sum of 16 lanes.
inline float hsum16(__m512 s) {
  const __m512 hi = _mm512_shuffle_f32x4(s, s, 0xEE);
  const __m256 h8 = _mm256_add_ps(_mm512_castps512_ps256(s), _mm512_castps512_ps256(hi));
  const __m128 h = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
  const __m128 q = _mm_add_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
}

DSV4_TARGET_END()

#define DSV4_QDOTK_AVX512_BODY 1
DSV4_TARGET_BEGIN("avx512f,avx512bw,avx512vl,avx2,fma,f16c")
namespace base {
constexpr bool kVnni = false;
#include "qdotK_avx512.cpp"  // NOLINT(bugprone-suspicious-include)
}  // namespace base
DSV4_TARGET_END()
DSV4_TARGET_BEGIN("avx512f,avx512bw,avx512vl,avx2,fma,f16c,avx512vnni")
namespace vnni {
constexpr bool kVnni = true;
#include "qdotK_avx512.cpp"  // NOLINT(bugprone-suspicious-include)
}  // namespace vnni
DSV4_TARGET_END()
#undef DSV4_QDOTK_AVX512_BODY

}  // namespace

void fill_qdotK_avx512(QDotKernels& k) {
  k.quantize_q8_K = quantize_q8_K;
  if (__builtin_cpu_supports("avx512vnni")) {
    k.q2_K = vnni::kQ2K;
    k.q4_K = vnni::kQ4K;
    k.iq2_xxs = vnni::kIQ2XXS;
    k.iq2_xxs_panel_bytes = vnni::iq2_xxs_panel_bytes;
    k.iq2_xxs_pack = vnni::iq2_xxs_pack;
    k.iq2_xxs_panel = vnni::iq2_xxs_panel;
  } else {
    k.q2_K = base::kQ2K;
    k.q4_K = base::kQ4K;
    k.iq2_xxs = base::kIQ2XXS;
    k.iq2_xxs_panel_bytes = base::iq2_xxs_panel_bytes;
    k.iq2_xxs_pack = base::iq2_xxs_pack;
    k.iq2_xxs_panel = base::iq2_xxs_panel;
  }
}

}  // namespace dsv4::backend::cpu

#else  // !__x86_64__
namespace dsv4::backend::cpu {
void fill_qdotK_avx512(QDotKernels&) {}
}  // namespace dsv4::backend::cpu
#endif

#else  // DSV4_QDOTK_AVX512_BODY: the dot kernels, compiled once per variant ---------------------

// isum += Σ_{4 elements} u8·s8 (vpdpbusd), or its AVX-512BW equivalent; |s8| ≤ 127 and
// u8 ≤ 107 here (q2_K: ≤ 45, iq2_xxs panel: 64 ± grid), so the int16 pair sums of the
// maddubs form (≤ 2·107·127 = 27178) cannot saturate.
inline __m512i dot_u8s8(__m512i acc, __m512i u, __m512i s) {
  if constexpr (kVnni) {
    return _mm512_dpbusd_epi32(acc, u, s);
  } else {
    return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)));
  }
}
// isum += Σ_{2 words} p·sc (vpdpwssd) or madd + add.
inline __m512i dot_i16(__m512i acc, __m512i p, __m512i sc) {
  if constexpr (kVnni) {
    return _mm512_dpwssd_epi32(acc, p, sc);
  } else {
    return _mm512_add_epi32(acc, _mm512_madd_epi16(p, sc));
  }
}

inline void accumulate(__m512& acc, float a, __m512i isum) {
  acc = _mm512_fmadd_ps(_mm512_set1_ps(a), _mm512_cvtepi32_ps(isum), acc);
}
inline void accumulate_min(__m512& acc, float m, __m256i msum) {
  acc = _mm512_fmadd_ps(_mm512_set1_ps(-m), _mm512_cvtepi32_ps(_mm512_zextsi256_si512(msum)), acc);
}

// Word index vector for vpermw: word w → word stride·(base + w / per).
inline __m512i word_index(int base, int per, int stride = 1) {
  alignas(64) int16_t idx[32];
  for (int w = 0; w < 32; ++w) idx[w] = static_cast<int16_t>(stride * (base + w / per));
  return _mm512_load_si512(idx);
}

// q2_K, one weight row against NT activation rows. Chunk c holds elements 64c .. 64c+63:
// qs[32h + l] >> 2s is element 128h + 32s + l, so chunk c = 32 bytes of half c/2 shifted by
// 4(c%2) (low 256 bits) and 4(c%2)+2 (high 256 bits).
template <int NT>
void q2_K_row(const uint8_t* w, const BlockQ8_K* const* x, int64_t nb, float* out, int64_t ldo) {
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  const __m512i m3 = _mm512_set1_epi8(3);
  const __m128i m4 = _mm_set1_epi8(0xF);
  const __m512i cnt[2] = {_mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1),
                          _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1)};
  __m512i sidx[4];
  for (int c = 0; c < 4; ++c) sidx[c] = word_index(4 * c, 8);  // word w → group 4c + w/8
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* p = w + b * static_cast<int64_t>(sizeof(quant::BlockQ2_K));
    const __m128i S = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m512i sc16 = _mm512_zextsi256_si512(_mm256_cvtepu8_epi16(_mm_and_si128(S, m4)));
    const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(S, 4), m4));
    __m512i V[4];
    for (int h = 0; h < 2; ++h) {
      const __m512i B = _mm512_broadcast_i64x4(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16 + 32 * h)));
      for (int s = 0; s < 2; ++s) {
        const int c = 2 * h + s;
        const __m512i q = _mm512_and_si512(_mm512_srlv_epi16(B, cnt[s]), m3);
        // q·sc ≤ 45: a u8; the words' low and high bytes share the group, no carry between them
        V[c] = _mm512_mullo_epi16(q, _mm512_permutexvar_epi16(sidx[c], sc16));
      }
    }
    const float dw = _cvtsh_ss(rd16(p + 80)), dmw = _cvtsh_ss(rd16(p + 82));
    for (int t = 0; t < NT; ++t) {
      const BlockQ8_K& X = x[t][b];
      __m512i isum = _mm512_setzero_si512();
      for (int c = 0; c < 4; ++c) isum = dot_u8s8(isum, V[c], _mm512_loadu_si512(X.qs + 64 * c));
      const __m256i msum = _mm256_madd_epi16(
          mn16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(X.bsums)));
      accumulate(acc[t], X.d * dw, isum);
      accumulate_min(acc[t], X.d * dmw, msum);
    }
  }
  for (int t = 0; t < NT; ++t) out[t * ldo] = hsum16(acc[t]);
}

// q4_K: chunk c = 32 bytes qs[32c ..] (low nibbles: sub-block 2c in the low 256 bits, high
// nibbles: sub-block 2c+1 in the high 256 bits); 6-bit scales and mins unpacked as upstream.
template <int NT>
void q4_K_row(const uint8_t* w, const BlockQ8_K* const* x, int64_t nb, float* out, int64_t ldo) {
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0xF);
  const __m512i cnt = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
  __m512i sidx[4];
  for (int c = 0; c < 4; ++c) sidx[c] = word_index(2 * c, 16);  // word w → sub-block 2c + w/16
  alignas(32) int16_t midx_a[16];
  for (int g = 0; g < 16; ++g) midx_a[g] = static_cast<int16_t>(8 + g / 2);  // group g → min g/2
  const __m256i midx = _mm256_load_si256(reinterpret_cast<const __m256i*>(midx_a));
  constexpr uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* p = w + b * static_cast<int64_t>(sizeof(quant::BlockQ4_K));
    uint32_t u[4];
    std::memcpy(u, p + 4, 12);
    u[3] = ((u[2] >> 4) & kmask2) | (((u[1] >> 6) & kmask3) << 4);
    const uint32_t mins_lo = u[1] & kmask1;
    u[1] = (u[2] & kmask2) | (((u[0] >> 6) & kmask3) << 4);
    u[2] = mins_lo;
    u[0] &= kmask1;  // bytes 0..7: scales of sub-blocks 0..7, bytes 8..15: mins
    const __m256i sm16 = _mm256_cvtepu8_epi16(
        _mm_set_epi32(static_cast<int>(u[3]), static_cast<int>(u[2]), static_cast<int>(u[1]),
                      static_cast<int>(u[0])));
    const __m512i sm = _mm512_zextsi256_si512(sm16);
    const __m256i mn16 = _mm256_permutexvar_epi16(midx, sm16);
    __m512i V[4], SC[4];
    for (int c = 0; c < 4; ++c) {
      const __m512i B = _mm512_broadcast_i64x4(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16 + 32 * c)));
      V[c] = _mm512_and_si512(_mm512_srlv_epi16(B, cnt), m4);
      SC[c] = _mm512_permutexvar_epi16(sidx[c], sm);
    }
    const float dw = _cvtsh_ss(rd16(p)), dmw = _cvtsh_ss(rd16(p + 2));
    for (int t = 0; t < NT; ++t) {
      const BlockQ8_K& X = x[t][b];
      __m512i isum = _mm512_setzero_si512();
      for (int c = 0; c < 4; ++c)  // maddubs ≤ 2·15·127: no saturation
        isum = dot_i16(isum, _mm512_maddubs_epi16(V[c], _mm512_loadu_si512(X.qs + 64 * c)), SC[c]);
      const __m256i msum = _mm256_madd_epi16(
          mn16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(X.bsums)));
      accumulate(acc[t], X.d * dw, isum);
      accumulate_min(acc[t], X.d * dmw, msum);
    }
  }
  for (int t = 0; t < NT; ++t) out[t * ldo] = hsum16(acc[t]);
}

// iq2_xxs float order (every iq2_xxs kernel of this level, so that the per-token kernels and
// the panel GEMM give the same bits): per 256-block b the exact integer total
// T_b = Σ_s (2·ls_s + 1)·Σ_l ±grid·x; lane (b mod 16) of a float accumulator takes
// fma(d_w·d_x, f32(T_b), lane), blocks in increasing order; then hsum16 and × 0.125.
//
// Block decode: sub-block s (32 elements) = qs dwords 2s (4 grid indices) and 2s+1 (4 × 7 sign
// bits, scale in the top nibble). Chunk c = sub-blocks 2c, 2c+1: G[c] = its 64 grid bytes
// (element order, scalar loads), K[c] = its 64 sign bits (ksigns: 7 bits plus the parity bit),
// L = 2·ls + 1 in word 0 of qword s.
struct Iq2xxsBlock {
  __m512i G[4];
  __mmask64 K[4];
  __m512i L;
  float d;
};
inline void iq2_xxs_decode(const uint8_t* p, Iq2xxsBlock& o) {
  const __m512i k28 = _mm512_set1_epi64(0x0FFFFFFF);
  const __m512i b7 = _mm512_set1_epi64(0x7F), b7_1 = _mm512_set1_epi64(0x7F00);
  const __m512i b7_2 = _mm512_set1_epi64(0x7F0000), b7_3 = _mm512_set1_epi64(0x7F000000);
  const __m512i ones8 = _mm512_set1_epi64(0x01010101), one = _mm512_set1_epi64(1);
  const auto* grid = reinterpret_cast<const long long*>(quant::kIq2xxsGrid);
  const __m512i Q = _mm512_loadu_si512(p + 2);  // qword s = (aux_s << 32) | grid indices_s
  // sign bytes: 4 × 7 bits of aux spread to bytes, bit 7 = parity of the 7
  const __m512i t = _mm512_and_si512(_mm512_srli_epi64(Q, 32), k28);
  __m512i v = _mm512_or_si512(
      _mm512_or_si512(_mm512_and_si512(t, b7), _mm512_and_si512(_mm512_slli_epi64(t, 1), b7_1)),
      _mm512_or_si512(_mm512_and_si512(_mm512_slli_epi64(t, 2), b7_2),
                      _mm512_and_si512(_mm512_slli_epi64(t, 3), b7_3)));
  __m512i par = _mm512_xor_si512(v, _mm512_srli_epi64(v, 4));
  par = _mm512_xor_si512(par, _mm512_srli_epi64(par, 2));
  par = _mm512_xor_si512(par, _mm512_srli_epi64(par, 1));
  v = _mm512_or_si512(v, _mm512_slli_epi64(_mm512_and_si512(par, ones8), 7));
  alignas(32) uint64_t sgn[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(sgn), _mm512_cvtepi64_epi32(v));
  o.L = _mm512_add_epi64(_mm512_slli_epi64(_mm512_srli_epi64(Q, 60), 1), one);
  for (int c = 0; c < 4; ++c) {
    const uint8_t* gi = p + 2 + 16 * c;  // indices: bytes 0..3 and 8..11
    const __m256i lo = _mm256_set_epi64x(grid[gi[3]], grid[gi[2]], grid[gi[1]], grid[gi[0]]);
    const __m256i hi = _mm256_set_epi64x(grid[gi[11]], grid[gi[10]], grid[gi[9]], grid[gi[8]]);
    o.G[c] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    o.K[c] = _cvtu64_mask64(sgn[c]);
  }
  o.d = _cvtsh_ss(rd16(p));
}

// v[0..15] (16 int32 lanes each) → lane j = Σ lanes of v[j] (exact; a fixed transposition).
inline __m512i reduce16x16(const __m512i* v) {
  __m512i s1[8], s2[4], s3[2];
  for (int i = 0; i < 8; ++i)  // per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3]
    s1[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]),
                             _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
  for (int i = 0; i < 4; ++i)  // per 128-bit lane L: element e = Σ lane L of v[4i + e]
    s2[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(s1[2 * i], s1[2 * i + 1]),
                             _mm512_unpackhi_epi64(s1[2 * i], s1[2 * i + 1]));
  for (int i = 0; i < 2; ++i)
    s3[i] = _mm512_add_epi32(_mm512_shuffle_i32x4(s2[2 * i], s2[2 * i + 1], 0x88),
                             _mm512_shuffle_i32x4(s2[2 * i], s2[2 * i + 1], 0xDD));
  return _mm512_add_epi32(_mm512_shuffle_i32x4(s3[0], s3[1], 0x88),
                          _mm512_shuffle_i32x4(s3[0], s3[1], 0xDD));
}

// One weight row against NT activation rows: per (block, token) the integer lanes of the
// signed-activation dot (maddubs of the grid bytes, signs applied to x, × 2·ls+1 by vpdpwssd);
// every 16 blocks reduce16x16 turns them into the block totals T_b of the float order above.
template <int NT>
void iq2_xxs_row(const uint8_t* w, const BlockQ8_K* const* x, int64_t nb, float* out,
                 int64_t ldo) {
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  __m512i sidx[4];
  for (int c = 0; c < 4; ++c) sidx[c] = word_index(2 * c, 16, 4);  // word 0 of qword 2c + w/16
  const __m512i zero = _mm512_setzero_si512();
  __m512i lanes[NT][16];
  alignas(64) float dd[NT][16];
  Iq2xxsBlock B;
  for (int64_t b0 = 0; b0 < nb; b0 += 16) {
    const int m = static_cast<int>(std::min<int64_t>(16, nb - b0));
    for (int j = 0; j < m; ++j) {
      iq2_xxs_decode(w + (b0 + j) * static_cast<int64_t>(sizeof(quant::BlockIQ2_XXS)), B);
      __m512i SC[4];
      for (int c = 0; c < 4; ++c) SC[c] = _mm512_permutexvar_epi16(sidx[c], B.L);
      for (int tt = 0; tt < NT; ++tt) {
        const BlockQ8_K& X = x[tt][b0 + j];
        __m512i isum = _mm512_setzero_si512();
        for (int c = 0; c < 4; ++c) {
          const __m512i xq = _mm512_loadu_si512(X.qs + 64 * c);
          const __m512i xs = _mm512_mask_sub_epi8(xq, B.K[c], zero, xq);  // q8 ≥ −127: no overflow
          isum = dot_i16(isum, _mm512_maddubs_epi16(B.G[c], xs), SC[c]);   // ≤ 2·43·127 per word
        }
        lanes[tt][j] = isum;
        dd[tt][j] = B.d * X.d;
      }
    }
    for (int tt = 0; tt < NT; ++tt) {
      for (int j = m; j < 16; ++j) lanes[tt][j] = zero;
      const __m512 T = _mm512_cvtepi32_ps(reduce16x16(lanes[tt]));
      const __mmask16 mk = static_cast<__mmask16>((1u << m) - 1u);
      acc[tt] = _mm512_mask3_fmadd_ps(_mm512_load_ps(dd[tt]), T, acc[tt], mk);
    }
  }
  for (int t = 0; t < NT; ++t) out[t * ldo] = 0.125f * hsum16(acc[t]);
}

using RowFn = void (*)(const uint8_t*, const BlockQ8_K* const*, int64_t, float*, int64_t);

// Rows one after the other, each against all nt activation rows.
template <RowFn R1, RowFn R2, RowFn R3, RowFn R4>
void tile_impl(const uint8_t* w, size_t row_bytes, int nr, const void* const* xq, int nt,
               int64_t k, float* out, int64_t ldo) {
  const BlockQ8_K* x[4] = {};
  for (int t = 0; t < nt; ++t) x[t] = static_cast<const BlockQ8_K*>(xq[t]);
  const int64_t nb = k / kQK_K;
  for (int i = 0; i < nr; ++i) {
    const uint8_t* wi = w + static_cast<size_t>(i) * row_bytes;
    switch (nt) {
      case 1: R1(wi, x, nb, out + i, ldo); break;
      case 2: R2(wi, x, nb, out + i, ldo); break;
      case 3: R3(wi, x, nb, out + i, ldo); break;
      default: R4(wi, x, nb, out + i, ldo); break;
    }
  }
}

const QDotTileFn kQ2K = tile_impl<q2_K_row<1>, q2_K_row<2>, q2_K_row<3>, q2_K_row<4>>;
const QDotTileFn kQ4K = tile_impl<q4_K_row<1>, q4_K_row<2>, q4_K_row<3>, q4_K_row<4>>;
const QDotTileFn kIQ2XXS =
    tile_impl<iq2_xxs_row<1>, iq2_xxs_row<2>, iq2_xxs_row<3>, iq2_xxs_row<4>>;

// ---- iq2_xxs panel GEMM (qdot.h iq2_xxs_panel) ------------------------------------------------
// Panel of kQPanelTokens q8_K rows, per 256-block (kPanelBlockBytes):
//   qs   [64 groups][16 tokens][4]  int8: elements 4g .. 4g+3 of token t
//   corr [8 sub-blocks][16 tokens]  int32: −64 · Σ_{sub-block} x (from bsums)
//   d    [16 tokens]                float: the token's q8_K scale
// (tokens ≥ nt all zero). A weight block is unpacked to u8 bytes 64 ± grid (21 … 107), so one
// vpdpbusd over a group gives Σ (64 ± g)·x for 16 tokens; starting each sub-block from corr
// leaves Σ ±g·x exactly, × (2·ls + 1) summed over sub-blocks = the block total T_b; the float
// steps are those of iq2_xxs_row, lane by lane, hence the same bits.
constexpr int64_t kPanelQs = 64 * kQPanelTokens * 4, kPanelCorr = 8 * kQPanelTokens * 4;
constexpr int64_t kPanelBlockBytes = kPanelQs + kPanelCorr + kQPanelTokens * 4;

size_t iq2_xxs_panel_bytes(int64_t k) { return static_cast<size_t>(k / kQK_K * kPanelBlockBytes); }

void iq2_xxs_pack(const void* const* xq, int nt, int64_t k, void* panel) {
  auto* P = static_cast<uint8_t*>(panel);
  if (nt < kQPanelTokens) std::memset(P, 0, iq2_xxs_panel_bytes(k));  // full panels: all written
  for (int64_t b = 0; b < k / kQK_K; ++b) {
    uint8_t* pb = P + b * kPanelBlockBytes;
    auto* corr = reinterpret_cast<int32_t*>(pb + kPanelQs);
    auto* d = reinterpret_cast<float*>(pb + kPanelQs + kPanelCorr);
    for (int t = 0; t < nt; ++t) {
      const BlockQ8_K& X = static_cast<const BlockQ8_K*>(xq[t])[b];
      for (int g = 0; g < 64; ++g) std::memcpy(pb + (g * kQPanelTokens + t) * 4, X.qs + 4 * g, 4);
      for (int s = 0; s < 8; ++s) corr[s * kQPanelTokens + t] = -64 * (X.bsums[2 * s] + X.bsums[2 * s + 1]);
      d[t] = X.d;
    }
  }
}

// NR weight rows (row i at w + i·row_bytes) against one panel; A[i][j] the float lanes.
template <int NR>
void iq2_xxs_panel_rows(const uint8_t* w, size_t row_bytes, const uint8_t* panel, int64_t nb,
                        int nt, float* out, int64_t ldo) {
  __m512 A[NR][16];
  for (int i = 0; i < NR; ++i)
    for (int j = 0; j < 16; ++j) A[i][j] = _mm512_setzero_ps();
  const __m512i c64 = _mm512_set1_epi8(64);
  alignas(64) uint8_t wb[NR][kQK_K];
  alignas(64) int32_t sc[NR][8];
  float dw[NR];
  Iq2xxsBlock B;
  for (int64_t b = 0; b < nb; ++b) {
    for (int i = 0; i < NR; ++i) {
      const uint8_t* p = w + static_cast<size_t>(i) * row_bytes +
                         b * static_cast<int64_t>(sizeof(quant::BlockIQ2_XXS));
      iq2_xxs_decode(p, B);
      for (int c = 0; c < 4; ++c)
        _mm512_store_si512(wb[i] + 64 * c,
                           _mm512_mask_sub_epi8(_mm512_add_epi8(B.G[c], c64), B.K[c], c64, B.G[c]));
      _mm256_store_si256(reinterpret_cast<__m256i*>(sc[i]), _mm512_cvtepi64_epi32(B.L));
      dw[i] = B.d;
    }
    const uint8_t* pb = panel + b * kPanelBlockBytes;
    const auto* corr = reinterpret_cast<const int32_t*>(pb + kPanelQs);
    __m512i tot[NR];
    for (int i = 0; i < NR; ++i) tot[i] = _mm512_setzero_si512();
    for (int s = 0; s < 8; ++s) {
      const __m512i cr = _mm512_loadu_si512(corr + s * kQPanelTokens);
      __m512i a[NR];
      for (int i = 0; i < NR; ++i) a[i] = cr;
      for (int g = 8 * s; g < 8 * s + 8; ++g) {
        const __m512i X = _mm512_loadu_si512(pb + g * kQPanelTokens * 4);
        for (int i = 0; i < NR; ++i) {
          int32_t wv;
          std::memcpy(&wv, wb[i] + 4 * g, 4);
          a[i] = dot_u8s8(a[i], _mm512_set1_epi32(wv), X);  // ≤ 2·107·127 per word: no saturation
        }
      }
      for (int i = 0; i < NR; ++i)
        tot[i] = _mm512_add_epi32(tot[i], _mm512_mullo_epi32(a[i], _mm512_set1_epi32(sc[i][s])));
    }
    const __m512 dx = _mm512_loadu_ps(reinterpret_cast<const float*>(pb + kPanelQs + kPanelCorr));
    const int j = static_cast<int>(b % 16);
    for (int i = 0; i < NR; ++i)
      A[i][j] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(dw[i]), dx),
                                _mm512_cvtepi32_ps(tot[i]), A[i][j]);
  }
  // hsum16's tree, lane-wise over the tokens: (j, j+8), (j, j+4), (0, 2) (1, 3), (0, 1)
  const __m512 eighth = _mm512_set1_ps(0.125f);
  for (int i = 0; i < NR; ++i) {
    __m512 h8[8], h4[4];
    for (int j = 0; j < 8; ++j) h8[j] = _mm512_add_ps(A[i][j], A[i][j + 8]);
    for (int j = 0; j < 4; ++j) h4[j] = _mm512_add_ps(h8[j], h8[j + 4]);
    const __m512 r = _mm512_add_ps(_mm512_add_ps(h4[0], h4[2]), _mm512_add_ps(h4[1], h4[3]));
    alignas(64) float o[kQPanelTokens];
    _mm512_store_ps(o, _mm512_mul_ps(eighth, r));
    for (int t = 0; t < nt; ++t) out[t * ldo + i] = o[t];
  }
}

void iq2_xxs_panel(const uint8_t* w, size_t row_bytes, int nr, const void* panel, int nt,
                   int64_t k, float* out, int64_t ldo) {
  const auto* P = static_cast<const uint8_t*>(panel);
  const int64_t nb = k / kQK_K;
  int i = 0;
  for (; i + 4 <= nr; i += 4)
    iq2_xxs_panel_rows<4>(w + static_cast<size_t>(i) * row_bytes, row_bytes, P, nb, nt, out + i, ldo);
  for (; i < nr; ++i)
    iq2_xxs_panel_rows<1>(w + static_cast<size_t>(i) * row_bytes, row_bytes, P, nb, nt, out + i, ldo);
}

#endif  // DSV4_QDOTK_AVX512_BODY
