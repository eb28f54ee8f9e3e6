// dsv4 backend/cpu: AVX-512 (F/BW/VL) q8_0-activation integer dots of qdot.h — quantize_q8_0 and
// the tile functions for q8_0, mxfp4, iq4_nl weights; with AVX512-VNNI (vpdpbusd) when the CPU
// has it (chosen in fill_qdot32_avx512).
//
// quantize_q8_0: per block, amax by max_ps, d = amax/127 and id = 1/d in scalar float32 as
// quant's q_q8_0, q = x·id rounded half away from zero as a = |q|, f = floor(a),
// f + (a − f ≥ 0.5) (exact; = roundf), so the bytes equal quant::quantize_row(kQ8_0).
//
// Tiles. The k axis is walked in groups of 4 blocks (a tail group of 1..3 blocks is zero-padded).
// A group's 128 int8 values go into two zmm, "lo" = elements 0..15 and "hi" = elements 16..31 of
// each block, block j in 128-bit lane j — the natural nibble split of mxfp4 / iq4_nl, and two
// 16-byte loads per block for q8_0. Weights and activations use the same layout, so int32 lane l
// (l = 0..15) sums products of block l/4 only:
//   VNNI:  S = dpbusd(dpbusd(−128·Σx, w+128, x_lo), w+128, x_hi)  (w+128 as u8: exact for every
//          int8 weight, −128 included; −128·Σx per lane comes from dpbusd(0x80, x) per token)
//   else:  S = madd(maddubs(|w|, sign(x, w)), 1) for lo and hi, added (|w| ≤ 128 as u8 and
//          |x| ≤ 127, so the int16 pair sums stay ≤ 32512: no saturation)
// Scales: per span of 16 blocks, one zmm of the 16 block scales per row (dw) and per token (dx);
// per group each is expanded to 4 lanes per block (vpermps). Then per (row i, token t), fixed
// order over groups g:
//   p   = dw_g · dx_g                                 (float32, one product per block)
//   acc = fma(float(S), p, acc)                       (16 float lanes)
// out[t·ldo + i] = hsum16(acc) (fixed tree: 256-bit halves, 128-bit halves, pairs). Every (i, t)
// runs this same sequence whatever nr, nt and its place in the tile → bit-identical outputs.
// MXFP4 integers are the e2m1 values doubled, block scale 2^(e−128) = quant::e8m0_to_f32_half
// (bits built in SIMD: subnormal for e < 2, 2^127 at e = 255, as the dequantizer).
// The activation −128 never comes out of quantize_q8_0 (|q| ≤ 127); the non-VNNI sign trick
// assumes it (it would negate −128 to −128).
// Learned from upstream ggml-cpu arch/x86/quants.c: ggml_vec_dot_{q8_0,mxfp4,iq4_nl}_q8_0
// (table lookup by pshufb, maddubs sign trick, per-block fma of the int sums) and
// quantize_row_q8_0; the 4-blocks-per-accumulator layout and the VNNI +128 bias are ours.
//
// The kernels are compiled twice from this file (it includes itself): once for AVX-512 F/BW/VL,
// once with VNNI added, so no non-VNNI function is ever compiled with VNNI enabled.
#if !defined(DSV4_QDOT32_AVX512_PASS)

#include "qdot.h"

#if defined(__x86_64__)
// GCC 12's AVX-512 headers trip -Wmaybe-uninitialized on their own _mm512_undefined_* helpers
// (GCC PR 105593); the warnings are about the header, not this code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "dsv4/core/dtypes.h"
#include "dsv4/quant/blocks.h"
#include "dsv4/quant/iq_tables.h"
#include "simd_target.h"

#define DSV4_QDOT32_AVX512_PASS 1
#include "qdot32_avx512.cpp"  // NOLINT(bugprone-suspicious-include): AVX-512 F/BW/VL kernels
#undef DSV4_QDOT32_AVX512_PASS
#define DSV4_QDOT32_AVX512_PASS 2
#include "qdot32_avx512.cpp"  // NOLINT(bugprone-suspicious-include): the same with VNNI
#undef DSV4_QDOT32_AVX512_PASS

namespace dsv4::backend::cpu {

void fill_qdot32_avx512(QDotKernels& k) {
  const bool vnni = __builtin_cpu_supports("avx512vnni");
  k.quantize_q8_0 = q32_avx512::quantize_q8_0;
  k.q8_0 = vnni ? q32_avx512_vnni::tile<q32_avx512_vnni::WQ8_0> : q32_avx512::tile<q32_avx512::WQ8_0>;
  k.mxfp4 = vnni ? q32_avx512_vnni::tile<q32_avx512_vnni::WMxfp4>
                 : q32_avx512::tile<q32_avx512::WMxfp4>;
  k.iq4_nl = vnni ? q32_avx512_vnni::tile<q32_avx512_vnni::WIq4nl>
                  : q32_avx512::tile<q32_avx512::WIq4nl>;
}

}  // namespace dsv4::backend::cpu

#else  // not x86-64

namespace dsv4::backend::cpu {
void fill_qdot32_avx512(QDotKernels&) {}
}  // namespace dsv4::backend::cpu

#endif  // x86-64

#else  // ---- one compilation pass of the kernels (DSV4_QDOT32_AVX512_PASS 1: base, 2: VNNI) ----

#if DSV4_QDOT32_AVX512_PASS == 1
#define DSV4_Q32_NS q32_avx512
#define DSV4_Q32_VNNI false
#else
#define DSV4_Q32_NS q32_avx512_vnni
#define DSV4_Q32_VNNI true
#endif

namespace dsv4::backend::cpu {
namespace {
namespace DSV4_Q32_NS {

constexpr bool kVnni = DSV4_Q32_VNNI;
constexpr size_t kQ8Bytes = sizeof(quant::BlockQ8_0);

inline uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

// Helpers are forced inline: a call would pass the zmm values through memory.
#define DSV4_Q32_INLINE inline __attribute__((always_inline))

#if DSV4_QDOT32_AVX512_PASS == 1
DSV4_TARGET_BEGIN("avx512f,avx512bw,avx512vl,avx2,fma,f16c")
#else
DSV4_TARGET_BEGIN("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")
#endif

#if DSV4_QDOT32_AVX512_PASS == 1  // (VNNI adds nothing to it)
// ---- quantize_q8_0 -------------------------------------------------------------------------------
// upstream ggml-cpu's x86 quantize_row_q8_0, byte for byte (quant::quantize_act_q8_0)
void quantize_q8_0(const float* x, void* dst, int64_t k) {
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t b = 0; b < k / 32; ++b, x += 32, out += kQ8Bytes) {
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    __m512 m = _mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1));
    m = _mm512_max_ps(m, _mm512_shuffle_f32x4(m, m, 0xEE));
    __m128 h = _mm_max_ps(_mm512_castps512_ps128(m), _mm512_castps512_ps128(_mm512_shuffle_f32x4(m, m, 0x55)));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    const float amax = _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));  // max is order-free
    const float d = amax / 127.0f;
    const float id = amax != 0.0f ? 127.0f / amax : 0.0f;  // upstream's x86 quantizer (act_quant.h)
    const uint16_t dh = f32_to_fp16(d);
    std::memcpy(out, &dh, 2);
    const __m512 s = _mm512_set1_ps(id);
    constexpr int kRne = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
    const __m512i q0 = _mm512_cvtps_epi32(_mm512_roundscale_ps(_mm512_mul_ps(v0, s), kRne));
    const __m512i q1 = _mm512_cvtps_epi32(_mm512_roundscale_ps(_mm512_mul_ps(v1, s), kRne));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 2), _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + 18), _mm512_cvtsepi32_epi8(q1));
  }
}

#endif

// ---- loads -------------------------------------------------------------------------------------
// 16 bytes at p + j·stride into 128-bit lane j, j < n (1 ≤ n ≤ 4); lanes ≥ n are zero.
DSV4_Q32_INLINE __m512i load4x16(const uint8_t* p, size_t stride, int n) {
  if (n == 4) {
    __m512i v = _mm512_castsi128_si512(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + stride)), 1);
    v = _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * stride)), 2);
    return _mm512_inserti32x4(v, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 3 * stride)),
                              3);
  }
  alignas(64) uint8_t buf[64] = {};
  for (int j = 0; j < n && j < 4; ++j) std::memcpy(buf + 16 * j, p + static_cast<size_t>(j) * stride, 16);
  return _mm512_load_si512(buf);
}
// The 4 bytes at p + j·stride in int32 lane j, j < n (1 ≤ n ≤ 16); lanes ≥ n are 0. Callers
// read a scale at the start of a block, so the 4 bytes stay inside block j.
DSV4_Q32_INLINE __m512i gather16(const uint8_t* p, size_t stride, int n) {
  alignas(64) uint32_t v[16] = {};
  for (int j = 0; j < n && j < 16; ++j) std::memcpy(&v[j], p + static_cast<size_t>(j) * stride, 4);
  return _mm512_load_si512(v);
}
// fp16 at p + j·stride → float lane j (j < n ≤ 16; lanes ≥ n are 0).
DSV4_Q32_INLINE __m512 fp16x16(const uint8_t* p, size_t stride, int n) {
  return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(gather16(p, stride, n)));
}

// ---- weight formats: two zmm of values (VNNI: w + 128 as u8; else int8 w) and 4 float scales ----
struct WQ8_0 {
  static constexpr size_t kBytes = kQ8Bytes;
  static __m512i table() { return _mm512_setzero_si512(); }  // unused
  DSV4_Q32_INLINE static void load(const uint8_t* b, int n, __m512i, __m512i& lo, __m512i& hi) {
    lo = load4x16(b + 2, kBytes, n);
    hi = load4x16(b + 18, kBytes, n);
    if constexpr (kVnni) {
      lo = _mm512_xor_si512(lo, _mm512_set1_epi8(static_cast<char>(0x80)));
      hi = _mm512_xor_si512(hi, _mm512_set1_epi8(static_cast<char>(0x80)));
    }
  }
  DSV4_Q32_INLINE static __m512 scales(const uint8_t* b, int n) { return fp16x16(b, kBytes, n); }
};
// 16-entry table (VNNI: entries + 128) in every 128-bit lane.
DSV4_Q32_INLINE __m512i nibble_table(const int8_t* t) {
  __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(t));
  if constexpr (kVnni) v = _mm_xor_si128(v, _mm_set1_epi8(static_cast<char>(0x80)));
  return _mm512_broadcast_i32x4(v);
}
// qs of 16 bytes at p + j·stride: low nibbles → lo, high nibbles → hi, through the table.
DSV4_Q32_INLINE void nibble_load(const uint8_t* p, size_t stride, int n, __m512i tbl, __m512i& lo,
                        __m512i& hi) {
  const __m512i q = load4x16(p, stride, n);
  const __m512i m = _mm512_set1_epi8(0x0F);
  lo = _mm512_shuffle_epi8(tbl, _mm512_and_si512(q, m));
  hi = _mm512_shuffle_epi8(tbl, _mm512_and_si512(_mm512_srli_epi16(q, 4), m));
}
struct WMxfp4 {
  static constexpr size_t kBytes = sizeof(quant::BlockMXFP4);
  static __m512i table() { return nibble_table(quant::kKvaluesMxfp4); }
  DSV4_Q32_INLINE static void load(const uint8_t* b, int n, __m512i tbl, __m512i& lo, __m512i& hi) {
    nibble_load(b + 1, kBytes, n, tbl, lo, hi);
  }
  // e8m0_to_f32_half: e < 2 → bits 0x00200000 << e, else (e − 1) << 23; lanes ≥ n are 0.
  DSV4_Q32_INLINE static __m512 scales(const uint8_t* b, int n) {
    const __m512i g = gather16(b, kBytes, n);
    const __m512i e = _mm512_and_si512(g, _mm512_set1_epi32(0xFF));
    const __m512i normal = _mm512_slli_epi32(_mm512_sub_epi32(e, _mm512_set1_epi32(1)), 23);
    const __m512i sub = _mm512_sllv_epi32(_mm512_set1_epi32(0x00200000), e);
    const __mmask16 small = _mm512_cmplt_epi32_mask(e, _mm512_set1_epi32(2));
    const __mmask16 live = n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
    return _mm512_castsi512_ps(_mm512_maskz_mov_epi32(live, _mm512_mask_mov_epi32(normal, small, sub)));
  }
};
struct WIq4nl {
  static constexpr size_t kBytes = sizeof(quant::BlockIQ4_NL);
  static __m512i table() { return nibble_table(quant::kKvaluesIq4nl); }
  DSV4_Q32_INLINE static void load(const uint8_t* b, int n, __m512i tbl, __m512i& lo, __m512i& hi) {
    nibble_load(b + 2, kBytes, n, tbl, lo, hi);
  }
  DSV4_Q32_INLINE static __m512 scales(const uint8_t* b, int n) { return fp16x16(b, kBytes, n); }
};

// ---- one group of 4 blocks of an activation row, and the per-pair integer sums ----------------
struct Act {
  __m512i lo, hi;
  __m512i nc;  // VNNI: −128·Σx per lane (cancels the +128 of the weights)
};
DSV4_Q32_INLINE Act load_act(const uint8_t* xb, int n) {
  Act a;
  a.lo = load4x16(xb + 2, kQ8Bytes, n);
  a.hi = load4x16(xb + 18, kQ8Bytes, n);
  if constexpr (kVnni) {
    const __m512i b80 = _mm512_set1_epi8(static_cast<char>(0x80));
    const __m512i c = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), b80, a.lo), b80, a.hi);
    a.nc = _mm512_sub_epi32(_mm512_setzero_si512(), c);
  } else {
    a.nc = _mm512_setzero_si512();
  }
  return a;
}

struct Row {
  __m512i lo, hi;          // VNNI: w + 128; else |w|
  __mmask64 mlo = 0, mhi = 0;  // else: w < 0
};
DSV4_Q32_INLINE __m512i sign_by(__m512i x, __mmask64 neg) {
  return _mm512_mask_sub_epi8(x, neg, _mm512_setzero_si512(), x);
}
DSV4_Q32_INLINE __m512i pair_sum(const Row& r, const Act& a) {
  if constexpr (kVnni) {
    return _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(a.nc, r.lo, a.lo), r.hi, a.hi);
  } else {
    const __m512i ones = _mm512_set1_epi16(1);
    const __m512i plo = _mm512_madd_epi16(_mm512_maddubs_epi16(r.lo, sign_by(a.lo, r.mlo)), ones);
    const __m512i phi = _mm512_madd_epi16(_mm512_maddubs_epi16(r.hi, sign_by(a.hi, r.mhi)), ones);
    return _mm512_add_epi32(plo, phi);
  }
}

DSV4_Q32_INLINE float hsum16(__m512 v) {
  const __m512 hi = _mm512_shuffle_f32x4(v, v, 0xEE);  // lanes 8..15 to 0..7
  const __m256 h8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_castps512_ps256(hi));
  const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
  const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
  return _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
}

// Software prefetch distance for the weight rows (bytes ahead of the current group).
constexpr size_t kPrefetch = 1024;

// A span of nblk (1..16) blocks from block b: scales of all its blocks in one zmm per row and
// per token (lane j = block b + j), then its groups of 4 blocks: acc[i][t] += the group's terms.
template <class W, int NR, int NT>
DSV4_Q32_INLINE void span(const uint8_t* w, size_t row_bytes, const uint8_t* const* x, int64_t b,
                          int nblk, __m512i tbl, __m512 (&acc)[NR][NT]) {
  const __m512i expand = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
  __m512 dx[NT], dw[NR];
  DSV4_UNROLL for (int t = 0; t < NT; ++t) dx[t] = fp16x16(x[t] + static_cast<size_t>(b) * kQ8Bytes, kQ8Bytes, nblk);
  DSV4_UNROLL for (int i = 0; i < NR; ++i)
    dw[i] = W::scales(w + static_cast<size_t>(i) * row_bytes + static_cast<size_t>(b) * W::kBytes, nblk);
  DSV4_UNROLL for (int g = 0; g < 4; ++g) {
    if (4 * g >= nblk) break;
    const int n = nblk - 4 * g >= 4 ? 4 : nblk - 4 * g;
    const int64_t bg = b + 4 * g;
    const __m512i sel = _mm512_add_epi32(expand, _mm512_set1_epi32(4 * g));  // block scale → 4 lanes
    Act a[NT];
    __m512 dxe[NT];
    DSV4_UNROLL for (int t = 0; t < NT; ++t) {
      a[t] = load_act(x[t] + static_cast<size_t>(bg) * kQ8Bytes, n);
      dxe[t] = _mm512_permutexvar_ps(sel, dx[t]);
    }
    DSV4_UNROLL for (int i = 0; i < NR; ++i) {
      const uint8_t* wb = w + static_cast<size_t>(i) * row_bytes + static_cast<size_t>(bg) * W::kBytes;
      _mm_prefetch(reinterpret_cast<const char*>(wb + kPrefetch), _MM_HINT_T0);
      if constexpr (4 * W::kBytes > 64)
        _mm_prefetch(reinterpret_cast<const char*>(wb + kPrefetch + 64), _MM_HINT_T0);
      if constexpr (4 * W::kBytes > 128)
        _mm_prefetch(reinterpret_cast<const char*>(wb + kPrefetch + 128), _MM_HINT_T0);
      Row r;
      W::load(wb, n, tbl, r.lo, r.hi);
      if constexpr (!kVnni) {
        r.mlo = _mm512_movepi8_mask(r.lo);
        r.mhi = _mm512_movepi8_mask(r.hi);
        r.lo = _mm512_abs_epi8(r.lo);
        r.hi = _mm512_abs_epi8(r.hi);
      }
      const __m512 dwe = _mm512_permutexvar_ps(sel, dw[i]);
      DSV4_UNROLL for (int t = 0; t < NT; ++t) {
        const __m512i s = pair_sum(r, a[t]);
        acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dwe, dxe[t]), acc[i][t]);
      }
    }
  }
}

template <class W, int NR, int NT>
void tile_t(const uint8_t* w, size_t row_bytes, const void* const* xq, int64_t k, float* out,
            int64_t ldo) {
  const int64_t nb = k / 32;
  const __m512i tbl = W::table();
  const uint8_t* x[NT];
  DSV4_UNROLL for (int t = 0; t < NT; ++t) x[t] = static_cast<const uint8_t*>(xq[t]);
  __m512 acc[NR][NT];
  DSV4_UNROLL for (int i = 0; i < NR; ++i) {
    DSV4_UNROLL for (int t = 0; t < NT; ++t) acc[i][t] = _mm512_setzero_ps();
  }
  int64_t b = 0;
  for (; b + 16 <= nb; b += 16) span<W, NR, NT>(w, row_bytes, x, b, 16, tbl, acc);
  if (b < nb) span<W, NR, NT>(w, row_bytes, x, b, static_cast<int>(nb - b), tbl, acc);
  DSV4_UNROLL for (int i = 0; i < NR; ++i) {
    DSV4_UNROLL for (int t = 0; t < NT; ++t) out[static_cast<int64_t>(t) * ldo + i] = hsum16(acc[i][t]);
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

}  // namespace DSV4_Q32_NS
}  // namespace
}  // namespace dsv4::backend::cpu

#undef DSV4_Q32_NS
#undef DSV4_Q32_INLINE
#undef DSV4_Q32_VNNI

#endif  // DSV4_QDOT32_AVX512_PASS
