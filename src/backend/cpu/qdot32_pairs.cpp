// dsv4 backend/cpu: AVX-512 VNNI integer dots of q8_0 activations with q8_0 / mxfp4 / iq4_nl
// weights, two blocks per zmm over *prepared* activations (qdot.h PrepareActFn) — the decode GEMV
// and the prefill tiles of the avx512 level on CPUs with AVX512-VNNI (Zen 4, Ice Lake and later).
//
// Why prepared activations: the activation row is the same for every weight row of a matmul, so
// everything about it that does not depend on the weights is done once per op call (prepare):
// its int8 values are laid out in the lane order the weight loads produce, the −128·Σx term that
// cancels the +128 bias of the unsigned weights (vpdpbusd multiplies u8 × s8) is precomputed per
// block, and its block scales are expanded to lanes. The inner loop then only loads and unpacks
// weights: per pair of blocks and (row, token) one vpdpbusd, one int→float conversion, one
// multiply of the two scale vectors and one FMA.
//
// Layout of one block pair p (blocks b = 2p, b1 = 2p + 1; a missing b1 at an odd tail is zero):
//   natural order (q8_0 weights): 128-bit lanes [b 0..15 | b 16..31 | b1 0..15 | b1 16..31];
//   split order (mxfp4, iq4_nl: low nibbles are elements 0..15, high nibbles 16..31):
//                                 [b 0..15 | b1 0..15 | b 16..31 | b1 16..31].
// A prepared pair is 192 bytes: the 64 int8 values in that order, 16 int32 "nc" (−128·Σ of the
// 4 values of that int32 lane, so each lane's integer sum is exactly its 4 products Σ w·x, small
// enough that the per-lane float conversion and scaling round only that), and 16 float scales
// (d of the block that owns each int32 lane).
//
// Numerics, per (row i, token t), pairs in increasing order, one float accumulator of 16 lanes:
//   S   = vpdpbusd(nc, w + 128, x)          (int32 lanes, exact: Σ_4 (w+128)·x − 128·Σ_4 x = Σ_4 w·x)
//   acc = fma(float(S), dw · dx, acc)       (dw, dx: the lane's weight and activation block scales)
//   out = hsum16(acc)                       (fixed tree: 256-bit halves, 128-bit halves, pairs)
// The same sequence for every (i, t) whatever nr, nt and the place in the tile: bit-identical
// outputs (ops.h determinism), decode and prefill alike. MXFP4: the integers are the e2m1 values
// doubled and the block scale is 2^(e−128) = quant::e8m0_to_f32_half (subnormal for e < 2).
//
// Learned from upstream ggml-cpu arch/x86/quants.c (ggml_vec_dot_{q8_0,mxfp4,iq4_nl}_q8_0: table
// lookup by pshufb, per-block scale products); the prepared pair layout and the bias are ours.
#include "qdot.h"

#if defined(__x86_64__)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "dsv4/core/dtypes.h"
#include "dsv4/quant/act_quant.h"
#include "dsv4/quant/blocks.h"
#include "dsv4/quant/iq_tables.h"
#include "simd_target.h"

namespace dsv4::backend::cpu {
namespace {

using quant::QType;

constexpr size_t kPairBytes = 192;  // 64 int8 + 16 int32 nc + 16 float scales
constexpr size_t kQ8 = sizeof(quant::BlockQ8_0);

bool split_order(QType t) { return t == QType::kMXFP4 || t == QType::kIQ4_NL; }

size_t prepared_bytes(QType wtype, int64_t k) {
  if (wtype != QType::kQ8_0 && !split_order(wtype)) return 0;
  return static_cast<size_t>((k / 32 + 1) / 2) * kPairBytes;
}
// With MXFP4 quads (see "MXFP4 quads" below): 256 bytes per 4 blocks for mxfp4.
constexpr size_t kQuadBytes = 256;  // 64 + 64 int8, 16 int32 nc, 16 float scales
size_t prepared_bytes_quads(QType wtype, int64_t k) {
  if (wtype == QType::kMXFP4) return static_cast<size_t>((k / 32 + 3) / 4) * kQuadBytes;
  return prepared_bytes(wtype, k);
}

// Scalar (runs once per activation row per op call).
void prepare(QType wtype, const void* xq, int64_t k, void* dst) {
  const auto* xb = static_cast<const uint8_t*>(xq);
  auto* out = static_cast<uint8_t*>(dst);
  const int64_t nb = k / 32, np = (nb + 1) / 2;
  const bool split = split_order(wtype);
  for (int64_t p = 0; p < np; ++p, out += kPairBytes) {
    int8_t qs[64] = {};
    int32_t nc[16] = {};
    float sc[16] = {};
    for (int h = 0; h < 2; ++h) {
      const int64_t b = 2 * p + h;
      if (b >= nb) break;
      quant::BlockQ8_0 blk;
      std::memcpy(&blk, xb + static_cast<size_t>(b) * kQ8, kQ8);
      const float d = fp16_to_f32(blk.d);
      // 128-bit lanes of this block: natural [2h, 2h+1], split [h, h+2]
      const int l0 = split ? h : 2 * h, l1 = split ? h + 2 : 2 * h + 1;
      for (int j = 0; j < 16; ++j) {
        qs[16 * l0 + j] = blk.qs[j];
        qs[16 * l1 + j] = blk.qs[16 + j];
      }
      for (int j = 0; j < 4; ++j) sc[4 * l0 + j] = sc[4 * l1 + j] = d;
    }
    // each int32 lane's own bias term, so every lane holds exactly Σ of its 4 products w·x
    for (int l = 0; l < 16; ++l) nc[l] = -128 * (qs[4 * l] + qs[4 * l + 1] + qs[4 * l + 2] + qs[4 * l + 3]);
    std::memcpy(out, qs, 64);
    std::memcpy(out + 64, nc, 64);
    std::memcpy(out + 128, sc, 64);
  }
}

// Scalar, MXFP4 quads: per quad q (blocks 4q .. 4q+3; missing blocks zero) XA = elements 0..15
// of block 4q+g in 128-bit lane g, XB = elements 16..31; nc lane l = −128 · (Σ of XA's and XB's
// 4 values in lane l); scale lane l = d of block 4q + l/4. Other types: prepare().
void prepare_quads(QType wtype, const void* xq, int64_t k, void* dst) {
  if (wtype != QType::kMXFP4) return prepare(wtype, xq, k, dst);
  const auto* xb = static_cast<const uint8_t*>(xq);
  auto* out = static_cast<uint8_t*>(dst);
  const int64_t nb = k / 32, nq = (nb + 3) / 4;
  for (int64_t q = 0; q < nq; ++q, out += kQuadBytes) {
    int8_t xa[64] = {}, xbv[64] = {};
    int32_t nc[16] = {};
    float sc[16] = {};
    for (int g = 0; g < 4; ++g) {
      const int64_t b = 4 * q + g;
      if (b >= nb) break;
      quant::BlockQ8_0 blk;
      std::memcpy(&blk, xb + static_cast<size_t>(b) * kQ8, kQ8);
      for (int j = 0; j < 16; ++j) {
        xa[16 * g + j] = blk.qs[j];
        xbv[16 * g + j] = blk.qs[16 + j];
      }
      for (int j = 0; j < 4; ++j) sc[4 * g + j] = fp16_to_f32(blk.d);
    }
    for (int l = 0; l < 16; ++l) {
      int32_t sum = 0;
      for (int j = 0; j < 4; ++j) sum += xa[4 * l + j] + xbv[4 * l + j];
      nc[l] = -128 * sum;
    }
    std::memcpy(out, xa, 64);
    std::memcpy(out + 64, xbv, 64);
    std::memcpy(out + 128, nc, 64);
    std::memcpy(out + 192, sc, 64);
  }
}

inline uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

DSV4_TARGET_BEGIN("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")

// ---- weight pairs: 64 values + 128 as u8 in the pair's lane order, and the 16 lane scales ------

struct PQ8_0 {
  static constexpr size_t kBytes = kQ8;
  static constexpr bool kSplit = false;
  static __m512i load(const uint8_t* b, __m512i) {
    __m512i v = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2)));
    v = _mm512_inserti64x4(v, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + kBytes + 2)), 1);
    return _mm512_xor_si512(v, _mm512_set1_epi8(static_cast<char>(0x80)));
  }
  // lanes 0..7: block b, 8..15: block b1
  static __m512 scales(const uint8_t* b) {
    const __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(rd16(b) | (static_cast<uint32_t>(rd16(b + kBytes)) << 16))));
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
                                 _mm512_castps128_ps512(f));
  }
};

// nibble types: qs of block b and b1 → [lo_b | lo_b1 | hi_b | hi_b1] through the (+128) table.
// Shuffle-port light (Zen 4 runs 512-bit shuffles at half rate): two 128-bit broadcast loads, a
// blend, a masked shift of the upper half and one pshufb.
template <size_t kOff>
inline __m512i nibble_pair(const uint8_t* b, size_t bytes, __m512i tbl) {
  const __m512i qb = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + kOff)));
  const __m512i qb1 = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + bytes + kOff)));
  __m512i z = _mm512_mask_mov_epi64(qb, 0xCC, qb1);                          // [b | b1 | b | b1]
  z = _mm512_mask_srli_epi16(z, static_cast<__mmask32>(0xFFFF0000u), z, 4);  // upper half: high nibbles
  return _mm512_shuffle_epi8(tbl, _mm512_and_si512(z, _mm512_set1_epi8(0x0F)));
}
// split order scales: lanes 0..3, 8..11: block b; 4..7, 12..15: block b1
inline __m512 split_scales(__m128 f) {
  return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1),
                               _mm512_castps128_ps512(f));
}
// 2^(e−128) for every E8M0 byte (quant::e8m0_to_f32_half), so a scale is one broadcast load
struct E8m0Half {
  alignas(64) float v[256];
  E8m0Half() {
    for (int e = 0; e < 256; ++e) v[e] = quant::e8m0_to_f32_half(static_cast<uint8_t>(e));
  }
};
const E8m0Half kE8m0Half;

struct PMxfp4 {
  static constexpr size_t kBytes = sizeof(quant::BlockMXFP4);
  static constexpr bool kSplit = true;
  static __m512i load(const uint8_t* b, __m512i tbl) { return nibble_pair<1>(b, kBytes, tbl); }
  static __m512 scales(const uint8_t* b) {
    return _mm512_mask_mov_ps(_mm512_set1_ps(kE8m0Half.v[b[0]]), 0xF0F0, _mm512_set1_ps(kE8m0Half.v[b[kBytes]]));
  }
};

struct PIq4nl {
  static constexpr size_t kBytes = sizeof(quant::BlockIQ4_NL);
  static constexpr bool kSplit = true;
  static __m512i load(const uint8_t* b, __m512i tbl) { return nibble_pair<2>(b, kBytes, tbl); }
  static __m512 scales(const uint8_t* b) {
    return split_scales(_mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(rd16(b) | (static_cast<uint32_t>(rd16(b + kBytes)) << 16)))));
  }
};

// prepare() in SIMD (bytes identical to it): per pair the two blocks' 64 values (split order: the
// 128-bit lanes permuted), nc = −128 · (Σ of each int32 lane's 4 values, by vpdpbusd with ones),
// the lane scales from the two fp16 d.
void prepare_avx512(QType wtype, const void* xq, int64_t k, void* dst) {
  const auto* xb = static_cast<const uint8_t*>(xq);
  auto* out = static_cast<uint8_t*>(dst);
  const int64_t nb = k / 32, np = (nb + 1) / 2;
  const bool split = split_order(wtype);
  const __m512i ones = _mm512_set1_epi8(1);
  for (int64_t p = 0; p < np; ++p, out += kPairBytes) {
    const uint8_t* b0 = xb + static_cast<size_t>(2 * p) * kQ8;
    const bool two = 2 * p + 1 < nb;
    __m512i v = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0 + 2)));
    v = _mm512_inserti64x4(v, two ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b0 + kQ8 + 2))
                                  : _mm256_setzero_si256(), 1);
    if (split) v = _mm512_shuffle_i64x2(v, v, _MM_SHUFFLE(3, 1, 2, 0));
    const __m512i sum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, v);
    const __m512i nc = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sum, 7));
    const float d0 = _cvtsh_ss(rd16(b0)), d1 = two ? _cvtsh_ss(rd16(b0 + kQ8)) : 0.0f;
    const __m512 sc = _mm512_mask_mov_ps(_mm512_set1_ps(d0), split ? 0xF0F0 : 0xFF00, _mm512_set1_ps(d1));
    _mm512_storeu_si512(out, v);
    _mm512_storeu_si512(out + 64, nc);
    _mm512_storeu_ps(reinterpret_cast<float*>(out + 128), sc);
  }
}

inline __m512i table_plus128(const int8_t* t) {
  return _mm512_broadcast_i32x4(
      _mm_xor_si128(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t)), _mm_set1_epi8(static_cast<char>(0x80))));
}
template <class W>
__m512i table_of() {
  if constexpr (std::is_same_v<W, PMxfp4>) return table_plus128(quant::kKvaluesMxfp4);
  else if constexpr (std::is_same_v<W, PIq4nl>) return table_plus128(quant::kKvaluesIq4nl);
  else return _mm512_setzero_si512();
}

inline float hsum16(__m512 v) {
  const __m512 hi = _mm512_shuffle_f32x4(v, v, 0xEE);
  const __m256 h8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_castps512_ps256(hi));
  const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
  const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
  return _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
}

// One pair of NR rows × NT tokens: w points at block 2p of row 0 (a full pair: both blocks there).
// The tokens' prepared values are loaded once per pair (registers), the rows' one at a time: the
// 4 × 4 prefill tile is otherwise bound by loads (3 activation loads per row × token).
template <class W, int NR, int NT>
inline __attribute__((always_inline)) void pair_step(const uint8_t* w, size_t row_bytes,
                                                     const uint8_t* const* x, size_t xoff, __m512i tbl,
                                                     __m512 (&acc)[NR][NT]) {
  __m512i xv[NT], nc[NT];
  __m512 dx[NT];
  DSV4_UNROLL for (int t = 0; t < NT; ++t) {
    const uint8_t* xp = x[t] + xoff;
    xv[t] = _mm512_loadu_si512(xp);
    nc[t] = _mm512_loadu_si512(xp + 64);
    dx[t] = _mm512_loadu_ps(reinterpret_cast<const float*>(xp + 128));
  }
  DSV4_UNROLL for (int i = 0; i < NR; ++i) {
    const uint8_t* wb = w + static_cast<size_t>(i) * row_bytes;
    const __m512i wv = W::load(wb, tbl);
    const __m512 dw = W::scales(wb);
    DSV4_UNROLL for (int t = 0; t < NT; ++t) {
      const __m512i s = _mm512_dpbusd_epi32(nc[t], wv, xv[t]);
      acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, dx[t]), acc[i][t]);
    }
  }
}

template <class W, int NR, int NT>
void tile_t(const uint8_t* w, size_t row_bytes, const void* const* xq, int64_t k, float* out, int64_t ldo) {
  const int64_t nb = k / 32, full = nb / 2;
  const __m512i tbl = table_of<W>();
  const uint8_t* x[NT];
  DSV4_UNROLL for (int t = 0; t < NT; ++t) x[t] = static_cast<const uint8_t*>(xq[t]);
  __m512 acc[NR][NT];
  DSV4_UNROLL for (int i = 0; i < NR; ++i) {
    DSV4_UNROLL for (int t = 0; t < NT; ++t) acc[i][t] = _mm512_setzero_ps();
  }
  for (int64_t p = 0; p < full; ++p)
    pair_step<W, NR, NT>(w + static_cast<size_t>(2 * p) * W::kBytes, row_bytes, x,
                         static_cast<size_t>(p) * kPairBytes, tbl, acc);
  if (nb % 2 != 0) {  // odd tail: block nb−1 and a zero block (its prepared values are zero)
    alignas(64) uint8_t pad[NR][2 * W::kBytes + 16];
    std::memset(pad, 0, sizeof pad);
    DSV4_UNROLL for (int i = 0; i < NR; ++i)
      std::memcpy(pad[i], w + static_cast<size_t>(i) * row_bytes + static_cast<size_t>(nb - 1) * W::kBytes, W::kBytes);
    pair_step<W, NR, NT>(&pad[0][0], sizeof pad[0], x, static_cast<size_t>(full) * kPairBytes, tbl, acc);
  }
  DSV4_UNROLL for (int i = 0; i < NR; ++i) {
    DSV4_UNROLL for (int t = 0; t < NT; ++t) out[static_cast<int64_t>(t) * ldo + i] = hsum16(acc[i][t]);
  }
}

template <class W, int NR>
void tile_r(const uint8_t* w, size_t row_bytes, const void* const* xq, int nt, int64_t k, float* out,
            int64_t ldo) {
  switch (nt) {
    case 1: return tile_t<W, NR, 1>(w, row_bytes, xq, k, out, ldo);
    case 2: return tile_t<W, NR, 2>(w, row_bytes, xq, k, out, ldo);
    case 3: return tile_t<W, NR, 3>(w, row_bytes, xq, k, out, ldo);
    default: return tile_t<W, NR, 4>(w, row_bytes, xq, k, out, ldo);
  }
}

template <class W>
void tile(const uint8_t* w, size_t row_bytes, int nr, const void* const* xq, int nt, int64_t k, float* out,
          int64_t ldo) {
  switch (nr) {
    case 1: return tile_r<W, 1>(w, row_bytes, xq, nt, k, out, ldo);
    case 2: return tile_r<W, 2>(w, row_bytes, xq, nt, k, out, ldo);
    case 3: return tile_r<W, 3>(w, row_bytes, xq, nt, k, out, ldo);
    default: return tile_r<W, 4>(w, row_bytes, xq, nt, k, out, ldo);
  }
}

DSV4_TARGET_END()

// ---- MXFP4 quads (CPUs with AVX512-VBMI as well) -----------------------------------------------
// Four blocks per step instead of two: one 64-byte load (+ a 4-byte masked one) holds blocks
// 4q .. 4q+3 of a row (17 bytes each: e, 16 nibble bytes); vpermt2b gathers their 64 nibble
// bytes, two pshufb give XA-order low and XB-order high values (+128), and vpermb puts each
// block's exponent e in the int32 lanes it owns. Per (row, token) and quad: two vpdpbusd into one
// accumulator, one conversion, one vscalefps and one FMA — half the float work and about half the
// unpacking of the block pairs per weight byte.
// Numerics (all kernels of a table with mxfp4_quads): per quad, lane l (block 4q + l/4, elements
// 4(l%4) .. +3 and 16 + 4(l%4) .. +3) S = Σ of its 8 products w·x, exact (nc cancels the +128
// bias); acc = fma(float(S), scalef(dx, e − 128), acc) (= dx · 2^(e−128) = dx · e8m0_to_f32_half(e),
// one rounding); quads in increasing order; out = hsum16(acc).
DSV4_TARGET_BEGIN("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi,avx2,fma,f16c")

void prepare_quads_avx512(QType wtype, const void* xq, int64_t k, void* dst) {
  if (wtype != QType::kMXFP4) return prepare_avx512(wtype, xq, k, dst);
  const auto* xb = static_cast<const uint8_t*>(xq);
  auto* out = static_cast<uint8_t*>(dst);
  const int64_t nb = k / 32, nq = (nb + 3) / 4;
  const __m512i ones = _mm512_set1_epi8(1);
  for (int64_t q = 0; q < nq; ++q, out += kQuadBytes) {
    __m128i a[4], b[4];
    alignas(64) float sc[16];
    for (int g = 0; g < 4; ++g) {
      const int64_t blk = 4 * q + g;
      const uint8_t* p = xb + static_cast<size_t>(blk) * kQ8;
      const bool has = blk < nb;
      a[g] = has ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2)) : _mm_setzero_si128();
      b[g] = has ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 18)) : _mm_setzero_si128();
      const float d = has ? _cvtsh_ss(rd16(p)) : 0.0f;
      for (int j = 0; j < 4; ++j) sc[4 * g + j] = d;
    }
    // (immediate lane numbers: -O1 builds do not unroll a loop into them)
    __m512i XA = _mm512_castsi128_si512(a[0]), XB = _mm512_castsi128_si512(b[0]);
    XA = _mm512_inserti32x4(_mm512_inserti32x4(_mm512_inserti32x4(XA, a[1], 1), a[2], 2), a[3], 3);
    XB = _mm512_inserti32x4(_mm512_inserti32x4(_mm512_inserti32x4(XB, b[1], 1), b[2], 2), b[3], 3);
    const __m512i sum = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, XA), ones, XB);
    _mm512_storeu_si512(out, XA);
    _mm512_storeu_si512(out + 64, XB);
    _mm512_storeu_si512(out + 128, _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(sum, 7)));
    _mm512_storeu_ps(reinterpret_cast<float*>(out + 192), _mm512_load_ps(sc));
  }
}

struct QuadConsts {
  __m512i tbl, qidx, eidx, m4;
  __m512 bias;
};
inline QuadConsts quad_consts() {
  alignas(64) uint8_t qi[64], ei[64];
  for (int i = 0; i < 64; ++i) {
    qi[i] = static_cast<uint8_t>(17 * (i / 16) + 1 + i % 16);  // < 68: bit 6 picks the 2nd source
    ei[i] = static_cast<uint8_t>(17 * (i / 16));               // byte 0 of lane l ← e of block l/4
  }
  return {table_plus128(quant::kKvaluesMxfp4), _mm512_load_si512(qi), _mm512_load_si512(ei),
          _mm512_set1_epi8(0x0F), _mm512_set1_ps(-128.0f)};
}

// One quad of NR rows × NT tokens; w at block 4q of row 0, 68 readable bytes per row.
template <int NR, int NT>
inline __attribute__((always_inline)) void quad_step(const uint8_t* w, size_t row_bytes,
                                                     const uint8_t* const* x, size_t xoff,
                                                     const QuadConsts& c, __m512 (&acc)[NR][NT]) {
  __m512i xa[NT], xbv[NT], nc[NT];
  __m512 dx[NT];
  DSV4_UNROLL for (int t = 0; t < NT; ++t) {
    const uint8_t* xp = x[t] + xoff;
    xa[t] = _mm512_loadu_si512(xp);
    xbv[t] = _mm512_loadu_si512(xp + 64);
    nc[t] = _mm512_loadu_si512(xp + 128);
    dx[t] = _mm512_loadu_ps(reinterpret_cast<const float*>(xp + 192));
  }
  DSV4_UNROLL for (int i = 0; i < NR; ++i) {
    const uint8_t* wb = w + static_cast<size_t>(i) * row_bytes;
    const __m512i v0 = _mm512_loadu_si512(wb);
    const __m512i v1 = _mm512_maskz_loadu_epi8(0xF, wb + 64);
    const __m512i qs = _mm512_permutex2var_epi8(v0, c.qidx, v1);
    const __m512i lo = _mm512_shuffle_epi8(c.tbl, _mm512_and_si512(qs, c.m4));
    const __m512i hi = _mm512_shuffle_epi8(c.tbl, _mm512_and_si512(_mm512_srli_epi16(qs, 4), c.m4));
    const __m512 ex = _mm512_add_ps(
        _mm512_cvtepi32_ps(_mm512_maskz_permutexvar_epi8(0x1111111111111111ull, c.eidx, v0)), c.bias);
    DSV4_UNROLL for (int t = 0; t < NT; ++t) {
      const __m512i s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(nc[t], lo, xa[t]), hi, xbv[t]);
      acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_scalef_ps(dx[t], ex), acc[i][t]);
    }
  }
}

template <int NR, int NT>
void quad_tile_t(const uint8_t* w, size_t row_bytes, const void* const* xq, int64_t k, float* out, int64_t ldo) {
  constexpr size_t kB = sizeof(quant::BlockMXFP4);
  const int64_t nb = k / 32, full = nb / 4;
  const QuadConsts c = quad_consts();
  const uint8_t* x[NT];
  DSV4_UNROLL for (int t = 0; t < NT; ++t) x[t] = static_cast<const uint8_t*>(xq[t]);
  __m512 acc[NR][NT];
  DSV4_UNROLL for (int i = 0; i < NR; ++i) {
    DSV4_UNROLL for (int t = 0; t < NT; ++t) acc[i][t] = _mm512_setzero_ps();
  }
  for (int64_t q = 0; q < full; ++q)
    quad_step<NR, NT>(w + static_cast<size_t>(4 * q) * kB, row_bytes, x, static_cast<size_t>(q) * kQuadBytes, c, acc);
  if (nb % 4 != 0) {  // tail: the last 1-3 blocks and zero blocks (their prepared values are zero)
    alignas(64) uint8_t pad[NR][4 * kB + 60];
    std::memset(pad, 0, sizeof pad);
    const size_t tail = static_cast<size_t>(nb % 4) * kB;
    DSV4_UNROLL for (int i = 0; i < NR; ++i)
      std::memcpy(pad[i], w + static_cast<size_t>(i) * row_bytes + static_cast<size_t>(4 * full) * kB, tail);
    quad_step<NR, NT>(&pad[0][0], sizeof pad[0], x, static_cast<size_t>(full) * kQuadBytes, c, acc);
  }
  DSV4_UNROLL for (int i = 0; i < NR; ++i) {
    DSV4_UNROLL for (int t = 0; t < NT; ++t) out[static_cast<int64_t>(t) * ldo + i] = hsum16(acc[i][t]);
  }
}

template <int NR>
void quad_tile_r(const uint8_t* w, size_t row_bytes, const void* const* xq, int nt, int64_t k, float* out,
                 int64_t ldo) {
  switch (nt) {
    case 1: return quad_tile_t<NR, 1>(w, row_bytes, xq, k, out, ldo);
    case 2: return quad_tile_t<NR, 2>(w, row_bytes, xq, k, out, ldo);
    case 3: return quad_tile_t<NR, 3>(w, row_bytes, xq, k, out, ldo);
    default: return quad_tile_t<NR, 4>(w, row_bytes, xq, k, out, ldo);
  }
}

void mxfp4_quad_tile(const uint8_t* w, size_t row_bytes, int nr, const void* const* xq, int nt, int64_t k,
                     float* out, int64_t ldo) {
  switch (nr) {
    case 1: return quad_tile_r<1>(w, row_bytes, xq, nt, k, out, ldo);
    case 2: return quad_tile_r<2>(w, row_bytes, xq, nt, k, out, ldo);
    case 3: return quad_tile_r<3>(w, row_bytes, xq, nt, k, out, ldo);
    default: return quad_tile_r<4>(w, row_bytes, xq, nt, k, out, ldo);
  }
}

DSV4_TARGET_END()

}  // namespace

PrepareActFn qdot32_pairs_prepare_reference(bool mxfp4_quads) { return mxfp4_quads ? prepare_quads : prepare; }

void fill_qdot32_pairs_avx512(QDotKernels& k, bool mxfp4_quads) {
  if (!__builtin_cpu_supports("avx512vnni") || !__builtin_cpu_supports("avx512bw") ||
      !__builtin_cpu_supports("avx512vl"))
    return;
  k.q8_0 = tile<PQ8_0>;
  k.mxfp4 = tile<PMxfp4>;
  k.iq4_nl = tile<PIq4nl>;
  k.prepare = prepare_avx512;
  k.prepared_bytes = prepared_bytes;
  k.mxfp4_quads = false;
  if (mxfp4_quads && __builtin_cpu_supports("avx512vbmi")) {
    k.mxfp4 = mxfp4_quad_tile;
    k.prepare = prepare_quads_avx512;
    k.prepared_bytes = prepared_bytes_quads;
    k.mxfp4_quads = true;
  }
}

}  // namespace dsv4::backend::cpu

#else  // not x86-64

namespace dsv4::backend::cpu {
void fill_qdot32_pairs_avx512(QDotKernels&, bool) {}
PrepareActFn qdot32_pairs_prepare_reference(bool) { return nullptr; }
}  // namespace dsv4::backend::cpu

#endif

// ---- bf16 / f16 rounding of activation rows (ActQuant::kQ8 for 16-bit weights) -------------------
#if defined(__x86_64__)
#include "kernels.h"
namespace dsv4::backend::cpu {
namespace {
DSV4_TARGET_BEGIN("avx512f,avx512bw,avx512vl,avx2,fma,f16c")
// y = bf16(x) or f16(x) widened back, round to nearest even — bit-identical to
// quant::act_round_trip (dtypes.h f32_to_bf16 / f32_to_fp16 for every input, NaN stays NaN).
void round16_avx512(bool bf16, const float* x, float* y, int64_t n) {
  int64_t i = 0;
  if (bf16) {
    const __m512i lsb = _mm512_set1_epi32(1), bias = _mm512_set1_epi32(0x7fff);
    const __m512i hi = _mm512_set1_epi32(static_cast<int>(0xffff0000u));
    const __m512i abs_mask = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000);
    for (; i + 16 <= n; i += 16) {
      const __m512i u = _mm512_loadu_si512(x + i);
      const __m512i r = _mm512_and_si512(
          _mm512_add_epi32(u, _mm512_add_epi32(bias, _mm512_and_si512(_mm512_srli_epi32(u, 16), lsb))), hi);
      // NaN: keep the high half with the quiet bit (0x0040 << 16) set, as f32_to_bf16
      const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, abs_mask), inf);
      const __m512i q = _mm512_or_si512(_mm512_and_si512(u, hi), _mm512_set1_epi32(0x00400000));
      _mm512_storeu_si512(y + i, _mm512_mask_mov_epi32(r, nan, q));
    }
  } else {
    for (; i + 16 <= n; i += 16)
      _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_loadu_ps(x + i),
                                                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
  }
  if (i < n) quant::act_round_trip(bf16 ? quant::ActFormat::kBF16 : quant::ActFormat::kF16, x + i, y + i, n - i);
}
DSV4_TARGET_END()
}  // namespace
Round16Fn round16_for_level(int level) { return level >= 2 ? round16_avx512 : nullptr; }
}  // namespace dsv4::backend::cpu
#else
#include "kernels.h"
namespace dsv4::backend::cpu {
Round16Fn round16_for_level(int) { return nullptr; }
}  // namespace dsv4::backend::cpu
#endif
