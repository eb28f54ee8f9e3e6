// dsv4 backend/cpu: AVX2 (+ FMA, F16C) q8_0-activation integer dots of qdot.h — quantize_q8_0
// and the tile functions for q8_0, mxfp4, iq4_nl weights. Runs on any AVX2 CPU (no VNNI).
//
// quantize_q8_0: per block, amax by max_ps, d = amax/127 and id = 1/d in scalar float32 as
// quant's q_q8_0, q = x·id rounded half away from zero as a = |q|, f = floor(a),
// f + (a − f ≥ 0.5) (exact; = roundf), so the bytes equal quant::quantize_row(kQ8_0).
//
// Tiles. The k axis is walked in groups of 4 blocks (a tail group of 1..3 blocks is zero-padded),
// each as two steps of 2 blocks. A step's 64 int8 values go into two ymm, "lo" = elements 0..15
// and "hi" = elements 16..31 of each block, block j of the step in 128-bit lane j (the nibble
// split of mxfp4 / iq4_nl; two 16-byte loads per block for q8_0). Weights and activations use the
// same layout, so int32 lane l (0..7) sums products of block l/4 of the step only:
//   S = madd(maddubs(|w|, sign(x, w)), 1) for lo and hi, added
// (|w| ≤ 128 as u8 — a q8_0 weight −128 included — and |x| ≤ 127, so the int16 pair sums stay
// ≤ 32512: no saturation; the activation −128 never comes out of quantize_q8_0.)
// Then per (row i, token t), fixed order over groups:
//   p   = dw[4] · dx[4]                                  (float32, one product per block)
//   acc = fma(float(S_step0), p of blocks 0,1 expanded to 4 lanes each, acc)
//   acc = fma(float(S_step1), p of blocks 2,3 expanded, acc)          (8 float lanes)
// out[t·ldo + i] = hsum8(acc) (fixed tree: 128-bit halves, then pairs). Every (i, t) runs this
// same sequence whatever nr, nt and its place in the tile → bit-identical outputs.
// MXFP4 integers are the e2m1 values doubled, block scale 2^(e−128) = quant::e8m0_to_f32_half
// (bits built in SIMD: subnormal for e < 2, 2^127 at e = 255, as the dequantizer).
// Learned from upstream ggml-cpu arch/x86/quants.c: ggml_vec_dot_{q8_0,mxfp4,iq4_nl}_q8_0
// (pshufb table lookup, maddubs sign trick, per-block fma of the int sums) and quantize_row_q8_0.
#include "qdot.h"

#if defined(__x86_64__)
#include <immintrin.h>

#include <cstring>

#include "dsv4/core/dtypes.h"
#include "dsv4/quant/blocks.h"
#include "dsv4/quant/iq_tables.h"
#include "simd_target.h"

namespace dsv4::backend::cpu {
namespace {

constexpr size_t kQ8Bytes = sizeof(quant::BlockQ8_0);

inline uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

DSV4_TARGET_BEGIN("avx2,fma,f16c")

// ---- quantize_q8_0 -------------------------------------------------------------------------------
// upstream ggml-cpu's x86 quantize_row_q8_0, byte for byte (quant::quantize_act_q8_0)

void quantize_q8_0(const float* x, void* dst, int64_t k) {
  auto* out = static_cast<uint8_t*>(dst);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t b = 0; b < k / 32; ++b, x += 32, out += kQ8Bytes) {
    __m256 v[4];
    for (int j = 0; j < 4; ++j) v[j] = _mm256_loadu_ps(x + 8 * j);
    const __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                                   _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    const float amax = _mm_cvtss_f32(h);
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;  // upstream's x86 quantizer (act_quant.h)
    const uint16_t dh = f32_to_fp16(d);
    std::memcpy(out, &dh, 2);
    const __m256 s = _mm256_set1_ps(id);
    __m256i q[4];
    for (int j = 0; j < 4; ++j)
      q[j] = _mm256_cvtps_epi32(
          _mm256_round_ps(_mm256_mul_ps(v[j], s), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    // int32 → int8 (saturating): packs interleave 128-bit lanes, the permute restores the order.
    const __m256i p16 = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    const __m256i p8 = _mm256_permutevar8x32_epi32(p16, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 2), p8);
  }
}

// ---- loads -------------------------------------------------------------------------------------
// 16 bytes at p + j·stride into 128-bit lane j, j < n (0 ≤ n ≤ 2); lanes ≥ n are zero.
inline __m256i load2x16(const uint8_t* p, size_t stride, int n) {
  if (n >= 2) {
    return _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + stride)), 1);
  }
  if (n == 1) return _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_setzero_si256();
}
// fp16 at p + j·stride → float lane j (j < n ≤ 4; lanes ≥ n are 0).
inline __m128 fp16x4(const uint8_t* p, size_t stride, int n) {
  if (n == 4)
    return _mm_cvtph_ps(_mm_setr_epi16(static_cast<short>(rd16(p)), static_cast<short>(rd16(p + stride)),
                                       static_cast<short>(rd16(p + 2 * stride)),
                                       static_cast<short>(rd16(p + 3 * stride)), 0, 0, 0, 0));
  alignas(16) uint16_t h[8] = {};
  for (int j = 0; j < n && j < 4; ++j) h[j] = rd16(p + static_cast<size_t>(j) * stride);
  return _mm_cvtph_ps(_mm_load_si128(reinterpret_cast<const __m128i*>(h)));
}

// ---- weight formats: int8 values (lo, hi) of a 2-block step and the 4 float scales of a group ---
struct WQ8_0 {
  static constexpr size_t kBytes = kQ8Bytes;
  static __m256i table() { return _mm256_setzero_si256(); }  // unused
  static void load(const uint8_t* b, int n, __m256i, __m256i& lo, __m256i& hi) {
    lo = load2x16(b + 2, kBytes, n);
    hi = load2x16(b + 18, kBytes, n);
  }
  static __m128 scales(const uint8_t* b, int n) { return fp16x4(b, kBytes, n); }
};
inline __m256i nibble_table(const int8_t* t) {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t)));
}
inline void nibble_load(const uint8_t* p, size_t stride, int n, __m256i tbl, __m256i& lo, __m256i& hi) {
  const __m256i q = load2x16(p, stride, n);
  const __m256i m = _mm256_set1_epi8(0x0F);
  lo = _mm256_shuffle_epi8(tbl, _mm256_and_si256(q, m));
  hi = _mm256_shuffle_epi8(tbl, _mm256_and_si256(_mm256_srli_epi16(q, 4), m));
}
struct WMxfp4 {
  static constexpr size_t kBytes = sizeof(quant::BlockMXFP4);
  static __m256i table() { return nibble_table(quant::kKvaluesMxfp4); }
  static void load(const uint8_t* b, int n, __m256i tbl, __m256i& lo, __m256i& hi) {
    nibble_load(b + 1, kBytes, n, tbl, lo, hi);
  }
  // e8m0_to_f32_half: e < 2 → bits 0x00200000 << e, else (e − 1) << 23; lanes ≥ n are 0.
  static __m128 scales(const uint8_t* b, int n) {
    const __m128i e = _mm_setr_epi32(b[0], n > 1 ? b[kBytes] : 0, n > 2 ? b[2 * kBytes] : 0,
                                     n > 3 ? b[3 * kBytes] : 0);
    const __m128i normal = _mm_slli_epi32(_mm_sub_epi32(e, _mm_set1_epi32(1)), 23);
    const __m128i sub = _mm_sllv_epi32(_mm_set1_epi32(0x00200000), e);
    const __m128i small = _mm_cmpgt_epi32(_mm_set1_epi32(2), e);
    const __m128i bits = _mm_blendv_epi8(normal, sub, small);
    const __m128i live = _mm_cmpgt_epi32(_mm_set1_epi32(n), _mm_setr_epi32(0, 1, 2, 3));
    return _mm_castsi128_ps(_mm_and_si128(bits, live));
  }
};
struct WIq4nl {
  static constexpr size_t kBytes = sizeof(quant::BlockIQ4_NL);
  static __m256i table() { return nibble_table(quant::kKvaluesIq4nl); }
  static void load(const uint8_t* b, int n, __m256i tbl, __m256i& lo, __m256i& hi) {
    nibble_load(b + 2, kBytes, n, tbl, lo, hi);
  }
  static __m128 scales(const uint8_t* b, int n) { return fp16x4(b, kBytes, n); }
};

// int32 lane sums of a 2-block step: |w| (u8) · sign(x, w) (s8), lo and hi halves.
inline __m256i step_sum(__m256i alo, __m256i ahi, __m256i wlo, __m256i whi, __m256i xlo, __m256i xhi) {
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i plo = _mm256_madd_epi16(_mm256_maddubs_epi16(alo, _mm256_sign_epi8(xlo, wlo)), ones);
  const __m256i phi = _mm256_madd_epi16(_mm256_maddubs_epi16(ahi, _mm256_sign_epi8(xhi, whi)), ones);
  return _mm256_add_epi32(plo, phi);
}

inline float hsum8(__m256 v) {
  const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
  return _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
}

constexpr size_t kPrefetch = 1024;

template <class W, int NR, int NT>
void tile_t(const uint8_t* w, size_t row_bytes, const void* const* xq, int64_t k, float* out,
            int64_t ldo) {
  const int64_t nb = k / 32;
  const __m256i tbl = W::table();
  const __m256i e01 = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
  const __m256i e23 = _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3);
  const uint8_t* x[NT];
  DSV4_UNROLL for (int t = 0; t < NT; ++t) x[t] = static_cast<const uint8_t*>(xq[t]);
  __m256 acc[NR][NT];
  DSV4_UNROLL for (int i = 0; i < NR; ++i) {
    DSV4_UNROLL for (int t = 0; t < NT; ++t) acc[i][t] = _mm256_setzero_ps();
  }
  for (int64_t b = 0; b < nb; b += 4) {
    const int n = nb - b >= 4 ? 4 : static_cast<int>(nb - b);
    const int n1 = n > 2 ? n - 2 : 0;  // blocks in step 1
    __m256i xlo0[NT], xhi0[NT], xlo1[NT], xhi1[NT];
    __m128 dx[NT];
    DSV4_UNROLL for (int t = 0; t < NT; ++t) {
      const uint8_t* xb = x[t] + static_cast<size_t>(b) * kQ8Bytes;
      xlo0[t] = load2x16(xb + 2, kQ8Bytes, n);
      xhi0[t] = load2x16(xb + 18, kQ8Bytes, n);
      xlo1[t] = load2x16(xb + 2 * kQ8Bytes + 2, kQ8Bytes, n1);
      xhi1[t] = load2x16(xb + 2 * kQ8Bytes + 18, kQ8Bytes, n1);
      dx[t] = fp16x4(xb, kQ8Bytes, n);
    }
    DSV4_UNROLL for (int i = 0; i < NR; ++i) {
      const uint8_t* wb = w + static_cast<size_t>(i) * row_bytes + static_cast<size_t>(b) * W::kBytes;
      _mm_prefetch(reinterpret_cast<const char*>(wb + kPrefetch), _MM_HINT_T0);
      if constexpr (4 * W::kBytes > 64)
        _mm_prefetch(reinterpret_cast<const char*>(wb + kPrefetch + 64), _MM_HINT_T0);
      if constexpr (4 * W::kBytes > 128)
        _mm_prefetch(reinterpret_cast<const char*>(wb + kPrefetch + 128), _MM_HINT_T0);
      __m256i wlo0, whi0, wlo1, whi1;
      W::load(wb, n, tbl, wlo0, whi0);
      W::load(wb + 2 * W::kBytes, n1, tbl, wlo1, whi1);
      const __m256i alo0 = _mm256_abs_epi8(wlo0), ahi0 = _mm256_abs_epi8(whi0);
      const __m256i alo1 = _mm256_abs_epi8(wlo1), ahi1 = _mm256_abs_epi8(whi1);
      const __m128 dw = W::scales(wb, n);
      DSV4_UNROLL for (int t = 0; t < NT; ++t) {
        const __m256i s0 = step_sum(alo0, ahi0, wlo0, whi0, xlo0[t], xhi0[t]);
        const __m256i s1 = step_sum(alo1, ahi1, wlo1, whi1, xlo1[t], xhi1[t]);
        const __m256 p = _mm256_castps128_ps256(_mm_mul_ps(dw, dx[t]));
        acc[i][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), _mm256_permutevar8x32_ps(p, e01), acc[i][t]);
        acc[i][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1), _mm256_permutevar8x32_ps(p, e23), acc[i][t]);
      }
    }
  }
  DSV4_UNROLL for (int i = 0; i < NR; ++i) {
    DSV4_UNROLL for (int t = 0; t < NT; ++t) out[static_cast<int64_t>(t) * ldo + i] = hsum8(acc[i][t]);
  }
}

template <class W, int NR>
void tile_r(const uint8_t* w, size_t row_bytes, const void* const* xq, int nt, int64_t k,
            float* out, int64_t ldo) {
  switch (nt) {
    case 1: return tile_t<W, NR, 1>(w, row_bytes, xq, k, out, ldo);
    case 2: return tile_t<W, NR, 2>(w, row_bytes, xq, k, out, ldo);
    case 3: return tile_t<W, NR, 3>(w, row_bytes, xq, k, out, ldo);
    default: return tile_t<W, NR, 4>(w, row_bytes, xq, k, out, ldo);
  }
}

template <class W>
void tile(const uint8_t* w, size_t row_bytes, int nr, const void* const* xq, int nt, int64_t k,
          float* out, int64_t ldo) {
  switch (nr) {
    case 1: return tile_r<W, 1>(w, row_bytes, xq, nt, k, out, ldo);
    case 2: return tile_r<W, 2>(w, row_bytes, xq, nt, k, out, ldo);
    case 3: return tile_r<W, 3>(w, row_bytes, xq, nt, k, out, ldo);
    default: return tile_r<W, 4>(w, row_bytes, xq, nt, k, out, ldo);
  }
}

DSV4_TARGET_END()

}  // namespace

void fill_qdot32_avx2(QDotKernels& k) {
  k.quantize_q8_0 = quantize_q8_0;
  k.q8_0 = tile<WQ8_0>;
  k.mxfp4 = tile<WMxfp4>;
  k.iq4_nl = tile<WIq4nl>;
}

}  // namespace dsv4::backend::cpu

#else  // not x86-64

namespace dsv4::backend::cpu {
void fill_qdot32_avx2(QDotKernels&) {}
}  // namespace dsv4::backend::cpu

#endif
