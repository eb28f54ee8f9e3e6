// dsv4 core: scalar conversions between float32 and the narrow float formats DeepSeek-V4
// checkpoints and GGUF files use. Header-only and usable from CUDA device code (DSV4_HD), so the
// CPU and GPU backends share one definition of every format.
//
// Formats (dsv4-architecture.md §3.1, gguf-and-llama-cpp.md §3.2):
//   bf16      upper 16 bits of an IEEE f32
//   f16       IEEE binary16
//   e4m3fn    FP8: 1 sign, 4 exponent (bias 7), 3 mantissa; no inf; S.1111.111 = NaN; max ±448
//   e8m0      unsigned power-of-two scale: byte e encodes 2^(e-127); e = 255 is NaN, e = 0 is 2^-127
//   e2m1      FP4: 1 sign, 2 exponent (bias 1), 1 mantissa; values {0,.5,1,1.5,2,3,4,6} and negatives
//
// Encoders round to nearest, ties to even, as ml_dtypes and PyTorch do. Overflow behaviour is
// stated per function. Oracle: tests/unit/dtypes_test.cpp against tables produced by ml_dtypes.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define DSV4_HD __host__ __device__
#else
#define DSV4_HD
#endif

namespace dsv4 {

DSV4_HD inline float bits_to_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
DSV4_HD inline uint32_t f32_to_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

// ---- bf16 ------------------------------------------------------------------------------------
DSV4_HD inline float bf16_to_f32(uint16_t h) { return bits_to_f32(static_cast<uint32_t>(h) << 16); }

// Round to nearest even; NaN stays NaN (quiet, sign kept); overflow rounds to ±inf as IEEE does.
DSV4_HD inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>((u + rounding) >> 16);
}

// ---- f16 -------------------------------------------------------------------------------------
DSV4_HD inline float fp16_to_f32(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | (man << 13));  // inf / NaN
  if (exp == 0) {
    // zero or subnormal: man * 2^-24
    float v = static_cast<float>(man) * bits_to_f32(0x33800000u);  // 2^-24
    return (sign != 0u) ? -v : v;
  }
  return bits_to_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

// Round to nearest even; overflow → ±inf; NaN → quiet NaN.
DSV4_HD inline uint16_t f32_to_fp16(float f) {
  uint32_t u = f32_to_bits(f);
  uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  if (a >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // ≥ 65520 rounds to inf
  if (a < 0x38800000u) {
    // result is subnormal or zero in f16: value / 2^-24, rounded to nearest even integer
    if (a < 0x33000000u) return sign;  // < 2^-25 rounds to zero (2^-25 ties to even zero)
    uint32_t exp = a >> 23;
    uint32_t man = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - exp;  // man * 2^(exp-150) / 2^-24 = man >> (126 - exp)
    uint32_t q = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return static_cast<uint16_t>(sign | q);
  }
  uint32_t rounding = 0xfffu + ((a >> 13) & 1u);
  a += rounding;
  return static_cast<uint16_t>(sign | (((a >> 23) - 112u) << 10) | ((a >> 13) & 0x3ffu));
}

// ---- e4m3fn (FP8) ----------------------------------------------------------------------------
DSV4_HD inline float e4m3fn_to_f32(uint8_t b) {
  uint32_t sign = static_cast<uint32_t>(b & 0x80u) << 24;
  uint32_t exp = (b >> 3) & 0xfu;
  uint32_t man = b & 0x7u;
  if (exp == 0xf && man == 0x7) return bits_to_f32(sign | 0x7fc00000u);
  if (exp == 0) {
    float v = static_cast<float>(man) * 0.001953125f;  // man * 2^-9
    return (sign != 0u) ? -v : v;
  }
  return bits_to_f32(sign | ((exp + 120u) << 23) | (man << 20));
}

// Round to nearest even. Magnitudes that round above 448 become NaN (e4m3fn has no inf), as
// ml_dtypes' non-saturating cast does. Callers that want saturation clamp to ±448 first.
DSV4_HD inline uint8_t f32_to_e4m3fn(float f) {
  uint32_t u = f32_to_bits(f);
  uint8_t sign = static_cast<uint8_t>((u >> 24) & 0x80u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint8_t>(sign | 0x7fu);  // NaN
  if (a > 0x43e80000u) return static_cast<uint8_t>(sign | 0x7fu);  // > 464 (incl. inf) → NaN;
  // exactly 464 is a tie between 448 (even) and the missing 480, and rounds to 448
  if (a < 0x3c800000u) {
    // below 2^-6: subnormal range, step 2^-9
    if (a < 0x3a000000u) return sign;  // < 2^-11: certainly rounds to zero (keeps shift < 32)
    uint32_t exp = a >> 23;
    uint32_t man = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 141u - exp;  // man * 2^(exp-150) / 2^-9 = man >> (141 - exp)
    uint32_t q = man >> shift;
    uint32_t rem = man & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return static_cast<uint8_t>(sign | q);  // q == 8 correctly becomes the smallest normal
  }
  uint32_t rounding = 0x7ffffu + ((a >> 20) & 1u);
  a += rounding;
  return static_cast<uint8_t>(sign | ((((a >> 23) - 120u) << 3) | ((a >> 20) & 0x7u)));
}

// ---- e8m0 (power-of-two scale) ---------------------------------------------------------------
DSV4_HD inline float e8m0_to_f32(uint8_t e) {
  if (e == 0xff) return bits_to_f32(0x7fc00000u);
  if (e == 0) return bits_to_f32(0x00400000u);  // 2^-127 is an f32 subnormal
  return bits_to_f32(static_cast<uint32_t>(e) << 23);
}

// ---- e2m1 (FP4) ------------------------------------------------------------------------------
// Value of a 4-bit code (bit 3 = sign). Only the low nibble of `code` is read.
DSV4_HD inline float e2m1_to_f32(uint8_t code) {
  // magnitude table in units of 0.5: {0, 1, 2, 3, 4, 6, 8, 12}
  const uint32_t m = code & 0x7u;
  const float mag = (m < 4u) ? 0.5f * static_cast<float>(m)
                             : static_cast<float>(1u << ((m >> 1) - 1u)) * ((m & 1u) ? 1.5f : 1.0f);
  return (code & 0x8u) ? -mag : mag;
}

// Round to nearest even code; magnitudes above 6 (and ±inf) saturate to ±6: e2m1 has no inf or
// NaN. NaN maps to code 8 (-0), as ml_dtypes' cast does.
DSV4_HD inline uint8_t f32_to_e2m1(float f) {
  uint32_t u = f32_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x8u;
  uint8_t sign = static_cast<uint8_t>((u >> 28) & 0x8u);
  float a = bits_to_f32(u & 0x7fffffffu);
  // Decision points between adjacent codes (midpoints), ties go to the even code.
  uint8_t c;
  if (a <= 0.25f) c = 0;        // tie 0.25 → code 0 (even)
  else if (a < 0.75f) c = 1;    // tie 0.75 → code 2 (even)
  else if (a <= 1.25f) c = 2;   // tie 1.25 → code 2
  else if (a < 1.75f) c = 3;    // tie 1.75 → code 4
  else if (a <= 2.5f) c = 4;    // tie 2.5 → code 4
  else if (a < 3.5f) c = 5;     // tie 3.5 → code 6
  else if (a <= 5.0f) c = 6;    // tie 5 → code 6
  else c = 7;
  return static_cast<uint8_t>(sign | c);
}

}  // namespace dsv4
