// dsv4 backend/cpu (internal): integer dot products over 8-bit quantized activations — the
// `act_quant = q8` path of CpuOps (issue 7 scope 4; the numerics of upstream llama.cpp's CPU
// backend, whose ggml_vec_dot_<type> takes the activation in the type's `vec_dot_type`).
//
// Activation formats (one activation row of k elements is quantized once per op call):
//   * q8_0 (quant::BlockQ8_0, 32 elements, fp16 d = amax/127, q = round_half_away(x/d)): for
//     weights q8_0, mxfp4, iq4_nl. Bytes identical to quant::quantize_row(kQ8_0) (= gguf-py).
//   * q8_K (quant::BlockQ8_K, 256 elements, float d, bsums per 16): for weights q2_K, q4_K,
//     iq2_xxs. Bytes identical to quant::quantize_act_q8_K (ggml's quantize_row_q8_K_ref).
//
// A tile function computes, for weight rows i < nr (row i at w + i·row_bytes, k elements in the
// weight's block format) and activation rows t < nt (xq[t]: k/32 BlockQ8_0 or k/256 BlockQ8_K):
//     out[t·ldo + i] = Σ_blocks  d_w · d_x · Σ_j q_w[j]·q_x[j]   (+ the type's min/offset terms)
// i.e. the dot product of the dequantized weight row with the dequantized activation row. The
// per-block integer sums are exact; the float combination of blocks has a fixed order per level,
// so each out value is bit-identical whatever nr, nt and the position in the tile (the ops.h
// determinism rule). Its distance to the exact value (float64 of the same terms) is a few float32
// roundings per block, checked in tests/backend/qdot_test.cpp.
// 1 ≤ nr ≤ kQTileRows, 1 ≤ nt ≤ kQTileTokens, k a multiple of the weight's block size (32 or 256).
#pragma once

#include <cstddef>
#include <cstdint>

#include "dsv4/quant/act_quant.h"
#include "dsv4/quant/quant.h"

namespace dsv4::backend::cpu {

constexpr int kQTileRows = 4;
constexpr int kQTileTokens = 4;
constexpr int kQPanelTokens = 16;  // QDotKernels::iq2_xxs_panel

using quant::ActFormat;

using QDotTileFn = void (*)(const uint8_t* w, size_t row_bytes, int nr, const void* const* xq,
                            int nt, int64_t k, float* out, int64_t ldo);
// x [k] → dst (k/32 BlockQ8_0 or k/256 BlockQ8_K), bytes identical to the quant:: reference.
using QuantizeActFn = void (*)(const float* x, void* dst, int64_t k);
// Optional, per level: a quantized activation row (k elements, in the format of `wtype`) turned
// into the level's prepared form, which that level's tile function for `wtype` then takes instead
// of the quantized row (done once per op call and reused by every weight row).
// prepared_bytes(wtype, k) = the bytes of one prepared row, 0 when `wtype` takes the quantized
// row as it is.
using PrepareActFn = void (*)(quant::QType wtype, const void* xq, int64_t k, void* dst);
using PreparedBytesFn = size_t (*)(quant::QType wtype, int64_t k);

struct QDotKernels {
  QuantizeActFn quantize_q8_0 = nullptr;
  QuantizeActFn quantize_q8_K = nullptr;
  // weights × q8_0 activations
  QDotTileFn q8_0 = nullptr, mxfp4 = nullptr, iq4_nl = nullptr;
  // weights × q8_K activations
  QDotTileFn q2_K = nullptr, q4_K = nullptr, iq2_xxs = nullptr;
  // Optional: bf16 weights × bf16 activation rows (2 bytes per element, quantize_bf16 = the
  // round-to-nearest-even bf16 of each value), upstream's ggml_vec_dot_bf16 order
  // (qdot_bf16.cpp); nullptr: bf16 weights take the rounded float path.
  QuantizeActFn quantize_bf16 = nullptr;
  QDotTileFn bf16 = nullptr;
  // Optional (all three nullptr: none at this level): iq2_xxs as a GEMM over a *panel* — up to
  // kQPanelTokens q8_K activation rows packed once (iq2_xxs_pack) into the level's layout, so
  // one decoded weight row serves all of them with the tokens in vector lanes (MoE prefill).
  //   iq2_xxs_panel_bytes(k)                   bytes of one panel of k-element rows
  //   iq2_xxs_pack(xq, nt, k, panel)           xq[t] (k/256 BlockQ8_K), 1 ≤ nt ≤ kQPanelTokens
  //   iq2_xxs_panel(w, row_bytes, nr, panel, nt, k, out, ldo)
  //       out[t·ldo + i] for i < nr (any nr ≥ 1), t < nt: bit-identical to iq2_xxs on weight
  //       row i and activation row t alone; nothing else written.
  size_t (*iq2_xxs_panel_bytes)(int64_t k) = nullptr;
  void (*iq2_xxs_pack)(const void* const* xq, int nt, int64_t k, void* panel) = nullptr;
  void (*iq2_xxs_panel)(const uint8_t* w, size_t row_bytes, int nr, const void* panel, int nt,
                        int64_t k, float* out, int64_t ldo) = nullptr;
  // prepared activations (both nullptr: none at this level)
  PrepareActFn prepare = nullptr;
  PreparedBytesFn prepared_bytes = nullptr;
  bool mxfp4_quads = false;  // mxfp4 prepared and computed four blocks per step (qdot32_pairs.cpp)
};

// Per level (0 scalar, 1 avx2, 2 avx512; the SimdLevel values): each part fills its entries.
// Entries left nullptr have no integer path at that level (CpuOps falls back to float32).
void fill_qdot32_scalar(QDotKernels& k);  // quantize_q8_0, q8_0, mxfp4, iq4_nl
void fill_qdot32_avx2(QDotKernels& k);
void fill_qdot32_avx512(QDotKernels& k);
void fill_qdotK_scalar(QDotKernels& k);   // quantize_q8_K, q2_K, q4_K, iq2_xxs
void fill_qdotK_avx2(QDotKernels& k);
void fill_qdotK_avx512(QDotKernels& k);
// AVX-512 VNNI block-pair kernels for q8_0 / mxfp4 / iq4_nl over prepared activations
// (qdot32_pairs.cpp); replace fill_qdot32_avx512's entries when the CPU has VNNI. mxfp4_quads:
// mxfp4 four blocks per step where the CPU also has AVX512-VBMI (sets k.mxfp4_quads; false:
// the block-pair mxfp4 kernel, for tests on such CPUs).
void fill_qdot32_pairs_avx512(QDotKernels& k, bool mxfp4_quads = true);
// vdpbf16ps kernels for bf16 weights (qdot_bf16.cpp), where the CPU has AVX512-BF16.
void fill_qdot_bf16_avx512(QDotKernels& k);
// The scalar form of that table's prepare (the reference its SIMD prepare is tested against).
PrepareActFn qdot32_pairs_prepare_reference(bool mxfp4_quads);

// The table of a level (filled once; x86-only levels are empty tables elsewhere).
const QDotKernels& qdot_kernels(int level);

// The bytes of one quantized activation row of k elements in format f (quant::act_format_of
// gives a weight type's format).
size_t act_row_bytes(ActFormat f, int64_t k);
// The tile function of `type` in `k` (nullptr if none at this level).
QDotTileFn qdot_fn(const QDotKernels& k, quant::QType type);

}  // namespace dsv4::backend::cpu
