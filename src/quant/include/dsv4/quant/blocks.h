// dsv4 quant: one declaration per ggml block type, shared by the C++ reference code and (later)
// the CUDA kernels. Plain structs of fixed-width integers only: no std::, no constructors, so the
// same header compiles under nvcc. f16 fields are stored as raw IEEE binary16 bits (uint16_t);
// convert with dsv4::fp16_to_f32 from dsv4/core/dtypes.h.
//
// Layouts: ggml-org/llama.cpp ggml/src/ggml-common.h (block_*), summarised with their dequant
// formulas in docs gguf-and-llama-cpp.md §3.2. All multi-byte fields are little-endian. Element
// order inside a block is given per type at its dequantizer (src/quant/dequant.cpp).
//
// Alignment: the structs contain at most uint16_t fields (alignment 2), but GGUF tensor data of
// odd-sized blocks (MXFP4: 17 bytes) is not aligned; reference code copies a block into a local
// struct with memcpy before reading it.
#pragma once

#include <stdint.h>

#include "dsv4/core/dtypes.h"  // DSV4_HD

namespace dsv4::quant {

inline constexpr int kQK_K = 256;       // super-block size of the K and IQ types
inline constexpr int kKScaleSize = 12;  // packed 6-bit scales/mins of Q4_K, Q5_K

// ---- simple types ----------------------------------------------------------------------------
struct BlockQ8_0 {  // 32 elements: y = qs[j] * d
  uint16_t d;
  int8_t qs[32];
};
static_assert(sizeof(BlockQ8_0) == 34, "block_q8_0");

struct BlockQ2_0 {  // upstream type id 42 (not the nsparks F8_E4M3_B128): 64 elements
  uint16_t d;       // y = ((qs >> 2*(j%4)) & 3) - 1) * d, byte j/4
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ2_0) == 18, "block_q2_0");

struct BlockMXFP4 {  // 32 elements; e: E8M0 shared exponent; low nibble = element j, high = j+16
  uint8_t e;
  uint8_t qs[16];
};
static_assert(sizeof(BlockMXFP4) == 17, "block_mxfp4");

// nsparks fork: 128 elements, y = e4m3fn(qs[j]) * 2^(e-127) with E8M0 read as dsv4::e8m0_to_f32
// (e = 255 is NaN, as in the HF checkpoint and ml_dtypes; ggml's ggml_e8m0_to_fp32 would give
// +inf there, a pattern no real file holds).
struct BlockF8E4M3B128 {
  uint8_t e;
  uint8_t qs[128];
};
static_assert(sizeof(BlockF8E4M3B128) == 129, "block_f8_e4m3_b128");

struct BlockIQ4_NL {  // 32 elements: y = d * kvalues_iq4nl[nibble]; low nibble j, high j+16
  uint16_t d;
  uint8_t qs[16];
};
static_assert(sizeof(BlockIQ4_NL) == 18, "block_iq4_nl");

// ---- K-quants (256 elements) -----------------------------------------------------------------
struct BlockQ2_K {
  uint8_t scales[kQK_K / 16];  // low nibble: scale, high nibble: min, per 16 elements
  uint8_t qs[kQK_K / 4];       // 2-bit quants
  uint16_t d;                  // super-block scale of the scales
  uint16_t dmin;               // super-block scale of the mins
};
static_assert(sizeof(BlockQ2_K) == 84, "block_q2_K");

struct BlockQ3_K {
  uint8_t hmask[kQK_K / 8];  // high bit of the 3-bit quants (set = no -4 offset)
  uint8_t qs[kQK_K / 4];     // low 2 bits
  uint8_t scales[12];        // 16 6-bit scales, biased by 32
  uint16_t d;
};
static_assert(sizeof(BlockQ3_K) == 110, "block_q3_K");

struct BlockQ4_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleSize];  // 8 6-bit scales and 8 6-bit mins
  uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ4_K) == 144, "block_q4_K");

struct BlockQ5_K {
  uint16_t d;
  uint16_t dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockQ5_K) == 176, "block_q5_K");

struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == 210, "block_q6_K");

// Activation block of the K / IQ types' integer dots (ggml's block_q8_K; never stored in a
// file): y = d * qs[j]; bsums[g] = Σ qs[16g .. 16g+15].
struct BlockQ8_K {
  float d;
  int8_t qs[kQK_K];
  int16_t bsums[kQK_K / 16];
};
static_assert(sizeof(BlockQ8_K) == 292, "block_q8_K");

// ---- IQ types (256 elements) -----------------------------------------------------------------
struct BlockIQ2_XXS {
  uint16_t d;
  uint16_t qs[kQK_K / 8];  // per 32 elements: u32 of 4 grid indices, u32 of 4x7 sign bits + 4-bit scale
};
static_assert(sizeof(BlockIQ2_XXS) == 66, "block_iq2_xxs");

struct BlockIQ2_XS {
  uint16_t d;
  uint16_t qs[kQK_K / 8];  // 9-bit grid index | 7-bit sign index << 9
  uint8_t scales[kQK_K / 32];
};
static_assert(sizeof(BlockIQ2_XS) == 74, "block_iq2_xs");

struct BlockIQ2_S {
  uint16_t d;
  uint8_t qs[kQK_K / 4];  // 32 grid-index low bytes, then 32 sign bytes
  uint8_t qh[kQK_K / 32];
  uint8_t scales[kQK_K / 32];
};
static_assert(sizeof(BlockIQ2_S) == 82, "block_iq2_s");

struct BlockIQ3_XXS {
  uint16_t d;
  uint8_t qs[3 * kQK_K / 8];  // 64 grid indices, then 8 u32 of 4x7 sign bits + 4-bit scale
};
static_assert(sizeof(BlockIQ3_XXS) == 98, "block_iq3_xxs");

struct BlockIQ3_S {
  uint16_t d;
  uint8_t qs[kQK_K / 4];
  uint8_t qh[kQK_K / 32];
  uint8_t signs[kQK_K / 8];
  uint8_t scales[kQK_K / 64];
};
static_assert(sizeof(BlockIQ3_S) == 110, "block_iq3_s");

struct BlockIQ1_S {
  uint16_t d;
  uint8_t qs[kQK_K / 8];
  uint16_t qh[kQK_K / 32];  // 4x3 grid-index high bits, 3-bit scale << 12, delta sign << 15
};
static_assert(sizeof(BlockIQ1_S) == 50, "block_iq1_s");

struct BlockIQ1_M {
  uint8_t qs[kQK_K / 8];
  uint8_t qh[kQK_K / 16];
  uint8_t scales[kQK_K / 32];  // 4 u16: 4x3-bit scales; the top nibbles form the f16 d
};
static_assert(sizeof(BlockIQ1_M) == 56, "block_iq1_m");

struct BlockIQ4_XS {
  uint16_t d;
  uint16_t scales_h;
  uint8_t scales_l[kQK_K / 64];
  uint8_t qs[kQK_K / 2];
};
static_assert(sizeof(BlockIQ4_XS) == 136, "block_iq4_xs");

// ---- helpers shared with device code ---------------------------------------------------------

// Q4_K / Q5_K: 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes.
DSV4_HD inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = static_cast<uint8_t>(q[j] & 63);
    *m = static_cast<uint8_t>(q[j + 4] & 63);
  } else {
    *sc = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// MXFP4 scale: ggml_e8m0_to_fp32_half, i.e. 2^(e-128), with e < 2 giving the f32 subnormals
// 2^-128 and 2^-127. Unlike dsv4::e8m0_to_f32, e = 255 is 2^127, not NaN (ggml does not special-
// case it, and gguf-py agrees).
DSV4_HD inline float e8m0_to_f32_half(uint8_t e) {
  const uint32_t bits = (e < 2) ? (0x00200000u << e) : (static_cast<uint32_t>(e - 1) << 23);
  return bits_to_f32(bits);
}

// IQ1_M: the f16 super-block scale, scattered over the top nibbles of the four u16 scale words.
DSV4_HD inline uint16_t iq1m_scale_bits(const uint8_t* scales) {
  uint16_t s[4];
  for (int k = 0; k < 4; ++k) s[k] = static_cast<uint16_t>(scales[2 * k] | (scales[2 * k + 1] << 8));
  return static_cast<uint16_t>((s[0] >> 12) | ((s[1] >> 8) & 0x00F0) | ((s[2] >> 4) & 0x0F00) |
                               (s[3] & 0xF000));
}

}  // namespace dsv4::quant
