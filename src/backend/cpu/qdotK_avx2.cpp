// dsv4 backend/cpu: AVX2 (+FMA, F16C) integer dots of q2_K / q4_K / iq2_xxs weights with q8_K
// activations (qdot.h, "weights × q8_K activations"; the avx2 level's fill_qdotK_avx2). The q8_K
// quantizer of this level is the scalar reference itself (it runs once per activation row).
//
// Lane layout (per (weight row, activation row) pair, per 256-block): eight 32-element chunks;
// int32 lane l of the block's integer vector holds Σ over the chunks of the scaled products of
// elements 32c + 4l .. 32c + 4l + 3 (q2_K, q4_K: the min term Σ m·bsums in a second vector).
// Float order: per lane, acc = fma(d_w·d_x, f32(isum), acc) and, K-quants,
// acc = fma(−(dmin_w·d_x), f32(msum), acc), blocks in increasing order; then a fixed horizontal
// sum (lanes 4..7 onto 0..3, 2..3 onto 0..1, 1 onto 0); iq2_xxs multiplies that by 0.125. A
// pair's value never depends on nr, nt or its position in the tile.
//
// Learned from upstream llama.cpp ggml/src/ggml-cpu/arch/x86/quants.c (ggml_vec_dot_q2_K_q8_K,
// ggml_vec_dot_q4_K_q8_K, ggml_vec_dot_iq2_xxs_q8_K, AVX2 paths): maddubs of unsigned weights
// with signed activations, _mm256_sign_epi8 for the iq2_xxs signs, bsums for the min terms.
// Differences: q2_K multiplies its 2-bit values by the 4-bit scale first (≤ 45, still a u8);
// iq2_xxs computes its sign bytes (7 bits + parity) in vector registers, not from a table.
#include "qdot.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include <cstring>

#include "dsv4/quant/act_quant.h"
#include "dsv4/quant/blocks.h"
#include "dsv4/quant/iq_tables.h"
#include "simd_target.h"

namespace dsv4::backend::cpu {
namespace {

using quant::BlockQ8_K;
using quant::kQK_K;

inline uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

void quantize_q8_K(const float* x, void* dst, int64_t k) {
  quant::quantize_act_q8_K(x, static_cast<BlockQ8_K*>(dst), k);
}

DSV4_TARGET_BEGIN("avx2,fma,f16c")

// Fixed horizontal sum of 8 lanes.
inline float hsum8(__m256 s) {
  const __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  const __m128 q = _mm_add_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
}

inline void accumulate(__m256& acc, float a, __m256i isum) {
  acc = _mm256_fmadd_ps(_mm256_set1_ps(a), _mm256_cvtepi32_ps(isum), acc);
}
inline void accumulate_min(__m256& acc, float m, __m256i msum) {
  acc = _mm256_fmadd_ps(_mm256_set1_ps(-m), _mm256_cvtepi32_ps(msum), acc);
}

// q2_K: chunk c = the 32 bytes of half c/4 shifted by 2·(c%4) (elements 32c .. 32c+31, groups
// 2c and 2c+1); its values are multiplied by their group's 4-bit scale (≤ 45) once per row.
template <int NT>
void q2_K_row(const uint8_t* w, const BlockQ8_K* const* x, int64_t nb, float* out, int64_t ldo) {
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  const __m256i m3 = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
  const __m128i m4 = _mm_set1_epi8(0xF);
  __m256i sctl[8];  // word w of chunk c → scale byte of group 2c + w/8, zero-extended
  for (int c = 0; c < 8; ++c) {
    alignas(32) int8_t ctl[32];
    for (int j = 0; j < 32; ++j) ctl[j] = (j % 2) ? static_cast<int8_t>(-128)
                                                  : static_cast<int8_t>(2 * c + j / 16);
    sctl[c] = _mm256_load_si256(reinterpret_cast<const __m256i*>(ctl));
  }
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* p = w + b * static_cast<int64_t>(sizeof(quant::BlockQ2_K));
    const __m128i S = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m256i sc8 = _mm256_broadcastsi128_si256(_mm_and_si128(S, m4));
    const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(S, 4), m4));
    __m256i V[8];
    for (int h = 0; h < 2; ++h) {
      const __m256i Q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16 + 32 * h));
      for (int s = 0; s < 4; ++s) {
        const int c = 4 * h + s;
        const __m256i q = _mm256_and_si256(_mm256_srli_epi16(Q, 2 * s), m3);
        V[c] = _mm256_mullo_epi16(q, _mm256_shuffle_epi8(sc8, sctl[c]));
      }
    }
    const float dw = _cvtsh_ss(rd16(p + 80)), dmw = _cvtsh_ss(rd16(p + 82));
    for (int t = 0; t < NT; ++t) {
      const BlockQ8_K& X = x[t][b];
      __m256i isum = _mm256_setzero_si256();
      for (int c = 0; c < 8; c += 2) {  // two chunks summed in int16: ≤ 2·2·45·127 = 22860
        const __m256i p0 = _mm256_maddubs_epi16(
            V[c], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(X.qs + 32 * c)));
        const __m256i p1 = _mm256_maddubs_epi16(
            V[c + 1], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(X.qs + 32 * c + 32)));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_add_epi16(p0, p1), ones));
      }
      const __m256i msum = _mm256_madd_epi16(
          mn16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(X.bsums)));
      accumulate(acc[t], X.d * dw, isum);
      accumulate_min(acc[t], X.d * dmw, msum);
    }
  }
  for (int t = 0; t < NT; ++t) out[t * ldo] = hsum8(acc[t]);
}

// q4_K: chunk c = sub-block c: nibble c%2 of qs[32·(c/2) ..]; 6-bit scales / mins as upstream.
template <int NT>
void q4_K_row(const uint8_t* w, const BlockQ8_K* const* x, int64_t nb, float* out, int64_t ldo) {
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(0xF);
  const __m128i mctl = _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
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
    uint8_t sc[16];
    std::memcpy(sc, u, 16);
    const __m128i sm = _mm_loadu_si128(reinterpret_cast<const __m128i*>(sc));
    const __m256i mn16 = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(sm, mctl));  // group g → min g/2
    __m256i V[8];
    for (int j = 0; j < 4; ++j) {
      const __m256i Q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16 + 32 * j));
      V[2 * j] = _mm256_and_si256(Q, m4);
      V[2 * j + 1] = _mm256_and_si256(_mm256_srli_epi16(Q, 4), m4);
    }
    const float dw = _cvtsh_ss(rd16(p)), dmw = _cvtsh_ss(rd16(p + 2));
    for (int t = 0; t < NT; ++t) {
      const BlockQ8_K& X = x[t][b];
      __m256i isum = _mm256_setzero_si256();
      for (int c = 0; c < 8; ++c) {  // maddubs ≤ 2·15·127: no saturation
        const __m256i pr = _mm256_maddubs_epi16(
            V[c], _mm256_loadu_si256(reinterpret_cast<const __m256i*>(X.qs + 32 * c)));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(pr, _mm256_set1_epi16(sc[c])));
      }
      const __m256i msum = _mm256_madd_epi16(
          mn16, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(X.bsums)));
      accumulate(acc[t], X.d * dw, isum);
      accumulate_min(acc[t], X.d * dmw, msum);
    }
  }
  for (int t = 0; t < NT; ++t) out[t * ldo] = hsum8(acc[t]);
}

// The 4 sign bytes (ksigns: 7 bits of aux + their parity as bit 7) of the 4 sub-blocks whose
// qwords (aux << 32 | grid indices) are in Q, in the low dword of each qword.
inline __m256i sign_bytes(__m256i Q) {
  const __m256i t = _mm256_and_si256(_mm256_srli_epi64(Q, 32), _mm256_set1_epi64x(0x0FFFFFFF));
  __m256i v = _mm256_or_si256(
      _mm256_or_si256(_mm256_and_si256(t, _mm256_set1_epi64x(0x7F)),
                      _mm256_and_si256(_mm256_slli_epi64(t, 1), _mm256_set1_epi64x(0x7F00))),
      _mm256_or_si256(_mm256_and_si256(_mm256_slli_epi64(t, 2), _mm256_set1_epi64x(0x7F0000)),
                      _mm256_and_si256(_mm256_slli_epi64(t, 3), _mm256_set1_epi64x(0x7F000000))));
  __m256i par = _mm256_xor_si256(v, _mm256_srli_epi64(v, 4));
  par = _mm256_xor_si256(par, _mm256_srli_epi64(par, 2));
  par = _mm256_xor_si256(par, _mm256_srli_epi64(par, 1));
  return _mm256_or_si256(
      v, _mm256_slli_epi64(_mm256_and_si256(par, _mm256_set1_epi64x(0x01010101)), 7));
}

// iq2_xxs: chunk c = sub-block c (32 elements): 4 grid rows, 4 sign bytes, scale 2·ls + 1.
template <int NT>
void iq2_xxs_row(const uint8_t* w, const BlockQ8_K* const* x, int64_t nb, float* out,
                 int64_t ldo) {
  __m256 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm256_setzero_ps();
  // byte e of a sub-block → sign byte e/8 (the 4 bytes are broadcast to both 128-bit lanes)
  const __m256i bctl = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,  //
                                        2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i bits = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ull));
  const __m256i one8 = _mm256_set1_epi8(1);
  const uint64_t* grid = quant::kIq2xxsGrid;
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* p = w + b * static_cast<int64_t>(sizeof(quant::BlockIQ2_XXS));
    const uint8_t* q = p + 2;
    alignas(32) uint64_t sg[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(sg),
                       sign_bytes(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q))));
    _mm256_store_si256(reinterpret_cast<__m256i*>(sg + 4),
                       sign_bytes(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32))));
    __m256i G[8], SG[8], SC[8];
    for (int c = 0; c < 8; ++c) {
      uint32_t idx, aux;
      std::memcpy(&idx, q + 8 * c, 4);
      std::memcpy(&aux, q + 8 * c + 4, 4);
      G[c] = _mm256_set_epi64x(static_cast<long long>(grid[idx >> 24]),
                               static_cast<long long>(grid[(idx >> 16) & 0xFF]),
                               static_cast<long long>(grid[(idx >> 8) & 0xFF]),
                               static_cast<long long>(grid[idx & 0xFF]));
      const __m256i e = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(sg[c])), bctl);
      const __m256i neg = _mm256_cmpeq_epi8(_mm256_and_si256(e, bits), bits);
      SG[c] = _mm256_or_si256(neg, one8);  // −1 or +1
      SC[c] = _mm256_set1_epi16(static_cast<int16_t>(2 * (aux >> 28) + 1));
    }
    const float dw = _cvtsh_ss(rd16(p));
    for (int t = 0; t < NT; ++t) {
      const BlockQ8_K& X = x[t][b];
      __m256i isum = _mm256_setzero_si256();
      for (int c = 0; c < 8; ++c) {
        const __m256i xs = _mm256_sign_epi8(
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(X.qs + 32 * c)), SG[c]);
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(_mm256_maddubs_epi16(G[c], xs), SC[c]));
      }
      accumulate(acc[t], dw * X.d, isum);
    }
  }
  for (int t = 0; t < NT; ++t) out[t * ldo] = 0.125f * hsum8(acc[t]);
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

DSV4_TARGET_END()

}  // namespace

void fill_qdotK_avx2(QDotKernels& k) {
  k.quantize_q8_K = quantize_q8_K;
  k.q2_K = tile_impl<q2_K_row<1>, q2_K_row<2>, q2_K_row<3>, q2_K_row<4>>;
  k.q4_K = tile_impl<q4_K_row<1>, q4_K_row<2>, q4_K_row<3>, q4_K_row<4>>;
  k.iq2_xxs = tile_impl<iq2_xxs_row<1>, iq2_xxs_row<2>, iq2_xxs_row<3>, iq2_xxs_row<4>>;
}

}  // namespace dsv4::backend::cpu

#else  // !__x86_64__
namespace dsv4::backend::cpu {
void fill_qdotK_avx2(QDotKernels&) {}
}  // namespace dsv4::backend::cpu
#endif
