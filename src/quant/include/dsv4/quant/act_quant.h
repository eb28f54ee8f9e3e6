// dsv4 quant: activation quantizers of the integer-dot path (llama.cpp's `vec_dot_type`s).
//
// Upstream llama.cpp's CPU backend quantizes each activation row before a quantized matmul:
// to q8_0 for q8_0 / mxfp4 / iq4_nl weights and to q8_K for the K and IQ types. dsv4's CPU
// backend does the same in its `act_quant = q8` mode (src/backend/cpu/qdot.h). These are the
// scalar references; the SIMD versions are byte-identical to them.
//   * q8_0: quantize_act_q8_0 below (upstream's x86 CPU quantizer — not the file quantizer
//     quant::quantize_row(QType::kQ8_0, …) = gguf-py / quantize_row_q8_0_ref, which differs from
//     it in rare elements).
//   * q8_K: quantize_act_q8_K below.
#pragma once

#include <cstdint>

#include "dsv4/quant/blocks.h"
#include "dsv4/quant/quant.h"

namespace dsv4::quant {

// The activation format of a weight type's dot in upstream llama.cpp's CPU backend (its
// type_traits_cpu[].vec_dot_type, ggml-cpu.c): kQ8_0 for q8_0, mxfp4, iq4_nl; kQ8_K for the K
// types (q2_K … q6_K) and the IQ types except iq4_nl; kBF16 / kF16 (x rounded to nearest even)
// for bf16 / f16 weights; kNone for f32 and for types upstream does not have (f8_e4m3_b128 of
// the nsparks fork, q2_0).
enum class ActFormat { kNone = 0, kQ8_0 = 1, kQ8_K = 2, kBF16 = 3, kF16 = 4 };
ActFormat act_format_of(QType weight_type);

// x [n] → the dequantized value of its quantized form in format f (kNone: a copy), i.e. what an
// integer dot in format f multiplies the weights with. n a multiple of the block size (32 / 256).
// For references and tests (allocates).
void act_round_trip(ActFormat f, const float* x, float* y, int64_t n);

// Upstream ggml-cpu's x86 quantize_row_q8_0 (ggml/src/ggml-cpu/arch/x86/quants.c, the AVX /
// AVX2 path every x86-64 build with AVX runs for activations), per 32-element block:
// amax = max |x|; d = amax/127 stored as fp16 (round to nearest even); id = 127/amax (0 when
// amax = 0); qs[j] = x[j]·id rounded to nearest, ties to even, then converted as cvtps_epi32 +
// saturating packs do (NaN or |v| ≥ 2^31 → −128, else clamped to [−128, 127]: only reached when
// id overflows to inf, amax < 127/FLT_MAX, where d is 0 anyway). The file quantizer
// (quantize_row_q8_0_ref: id = 1/d, ties away from zero) gives other bytes where x·id lies within
// an ulp or two of a half: rarely, but each such element moves a dot product by one quantum.
// Checked against upstream's own function (fixture tests/fixtures/quant/q8_0_upstream.bin,
// scripts/fixtures/make_q8_0_fixture.sh). n a multiple of 32.
void quantize_act_q8_0(const float* x, BlockQ8_0* y, int64_t n);

// ggml's quantize_row_q8_K_ref (ggml/src/ggml-quants.c), per 256-element block: max = the
// element of largest |x| (first one on ties); all zero → d = 0, qs = 0; else
// iscale = −127/max, qs[j] = min(127, nearest_int(iscale·x[j])) (round half to even),
// bsums[g] = Σ qs[16g .. 16g+15], d = 1/iscale. n a multiple of 256; x finite.
void quantize_act_q8_K(const float* x, BlockQ8_K* y, int64_t n);

// Dequantized value of a q8_K row (y[j] = d·qs[j]), for references and tests.
void dequantize_act_q8_K(const BlockQ8_K* x, float* y, int64_t n);

}  // namespace dsv4::quant
