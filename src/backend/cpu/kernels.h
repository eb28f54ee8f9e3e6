// dsv4 backend/cpu (internal): the per-SIMD-level kernel table.
//
// Every level provides the same functions; CpuOps picks one table at construction. Dot products
// use a fixed lane layout per level (element c goes to lane c mod L, L = 8 scalar, 32 AVX2, 64
// AVX-512) and a fixed final reduction, so dot(a, b, n) depends only on a, b, n and the level;
// dot_rows(w, ldw, nr, x, n, out) gives, for each row, exactly dot(w_i, x, n), and dot_tile
// (the prefill GEMM micro-kernel: up to 4 rows × kTileTokens tokens per call, each weight and
// activation vector loaded once per tile) gives, for each (row, token) pair, exactly dot too: it
// runs the same per-lane FMA sequence (lane by lane in increasing c) and the same final
// reduction, only interleaving pairs, so a dot never depends on which tile it was computed in.
#pragma once

#include <cstdint>

#include "dsv4/quant/quant.h"

namespace dsv4::backend::cpu {

// Tokens per dot_tile call (at most).
constexpr int kTileTokens = 6;
// Heads per qk16 / pv16 call.
constexpr int kHeadBlock = 16;

struct Kernels {
  // n elements of `type` (n a multiple of the block size, checked by the caller) from src to
  // dst, bit-identical to quant::dequantize_row. False for an unsupported type.
  bool (*dequant)(quant::QType type, const uint8_t* src, float* dst, int64_t n);
  // Σ_c a[c]·b[c], float32, fixed lanes.
  float (*dot)(const float* a, const float* b, int64_t n);
  // out[i] = dot(w + i·ldw, x, n) for i < nr, 1 ≤ nr ≤ 4 (bit-identical to dot).
  void (*dot_rows)(const float* w, int64_t ldw, int nr, const float* x, int64_t n, float* out);
  // out[t·ldo + i] = dot(w + i·ldw, x[t], n) for i < nr (1 ≤ nr ≤ 4), t < nt
  // (1 ≤ nt ≤ kTileTokens), bit-identical to dot.
  void (*dot_tile)(const float* w, int64_t ldw, int nr, const float* const* x, int nt, int64_t n,
                   float* out, int64_t ldo);
  // y[c] += a·x[c] (one rounding per multiply and per add: no FMA, so every level agrees with
  // a plain loop up to nothing).
  void (*axpy)(float a, const float* x, float* y, int64_t n);
  // Optional (nullptr: none): *out = dot(dequant(row), x, n) without the scratch round trip,
  // bit-identical to it. False when this type / n has no fused kernel (use dequant + dot).
  bool (*dot_fused)(quant::QType type, const uint8_t* row, const float* x, int64_t n, float* out);
  // Whether dot_fused takes `type` for rows of n elements (nullptr: never).
  bool (*has_fused)(quant::QType type, int64_t n);
  // Attention and indexer tiles over kHeadBlock = 16 heads (the vector dimension; heads beyond
  // the caller's count are zero-padded columns). Each (row, head) value is one chain of
  // multiply-adds in increasing d (qk16) or k (pv16), one FMA per step on the SIMD levels and a
  // rounded product then a rounded sum on the scalar level, so it depends only on its own inputs
  // and the level: never on nr / nk, on the block it landed in, or on the other heads.
  //   qk16: out[r·16 + j] = Σ_d x[r][d]·qt[d·16 + j]    r < nr, d < n   (scores: qt = q^T)
  //   pv16: ot[c·16 + j] = Σ_k x[k][c]·p[k·16 + j]      c < n, k < nk   (weighted rows, transposed)
  void (*qk16)(const float* qt, const float* const* x, int64_t nr, int64_t n, float* out);
  void (*pv16)(const float* p, const float* const* x, int64_t nk, int64_t n, float* ot);
};

// Activation rows rounded to bf16 (bf16 = true) or f16 and widened back, bit-identical to
// quant::act_round_trip (ActQuant::kQ8 for 16-bit weights); nullptr: use act_round_trip.
using Round16Fn = void (*)(bool bf16, const float* x, float* y, int64_t n);
Round16Fn round16_for_level(int level);  // level: SimdLevel value

const Kernels& kernels_scalar();
// nullptr when the build has no such level (non-x86).
const Kernels* kernels_avx2();
const Kernels* kernels_avx512();

}  // namespace dsv4::backend::cpu
