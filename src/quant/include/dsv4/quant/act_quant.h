// dsv4 quant: activation quantizers of the integer-dot path (llama.cpp's `vec_dot_type`s).
//
// Upstream llama.cpp's CPU backend quantizes each activation row before a quantized matmul:
// to q8_0 for q8_0 / mxfp4 / iq4_nl weights and to q8_K for the K and IQ types. dsv4's CPU
// backend does the same in its `act_quant = q8` mode (src/backend/cpu/qdot.h). These are the
// scalar references; the SIMD versions are byte-identical to them.
//   * q8_0: quant::quantize_row(QType::kQ8_0, …) (byte-identical to gguf-py's Q8_0 quantizer).
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

// ggml's quantize_row_q8_K_ref (ggml/src/ggml-quants.c), per 256-element block: max = the
// element of largest |x| (first one on ties); all zero → d = 0, qs = 0; else
// iscale = −127/max, qs[j] = min(127, nearest_int(iscale·x[j])) (round half to even),
// bsums[g] = Σ qs[16g .. 16g+15], d = 1/iscale. n a multiple of 256; x finite.
void quantize_act_q8_K(const float* x, BlockQ8_K* y, int64_t n);

// Dequantized value of a q8_K row (y[j] = d·qs[j]), for references and tests.
void dequantize_act_q8_K(const BlockQ8_K* x, float* y, int64_t n);

}  // namespace dsv4::quant
