// dsv4 quant: the two official DeepSeek-V4 Hugging Face weight layouts (dsv4-architecture.md §3,
// gguf-and-llama-cpp.md §3.3), dequantized row by row, and their lossless repacks into ggml blocks.
//
//   FP8 dense:   weight F8_E4M3 [out, in] (one byte per element), scale F8_E8M0
//                [ceil(out/128), ceil(in/128)]: w[r][c] = e4m3fn(q[r][c]) * 2^(s[r/128][c/128]-127)
//   FP4 experts: weight I8 [out, in/2], element 2i in the low nibble and 2i+1 in the high one;
//                scale F8_E8M0 [out, in/32]: w = e2m1(nibble) * 2^(s-127)
//
// E8M0 follows dsv4::e8m0_to_f32 (and ml_dtypes / torch.float8_e8m0fnu): 0 is 2^-127, 255 NaN.
// Oracle: tests/quant/quant_test.cpp against ml_dtypes (values) and a numpy transcription of
// upstream's conversion/base.py repack_mxfp4_blocks (byte layout).
//
// All functions are pure; callers own the buffers; no alignment required.
#pragma once

#include <cstdint>

#include "dsv4/core/status.h"

namespace dsv4::quant {

// One FP8 weight row of n elements. scale_row points at the row's ceil(n/128) scale bytes (row
// r/128 of the scale tensor). Any n >= 0.
Status dequantize_hf_fp8_row(const uint8_t* q, const uint8_t* scale_row, float* dst, int64_t n);

// One FP4 weight row of n elements (n a multiple of 32): n/2 packed bytes, n/32 scale bytes.
Status dequantize_hf_fp4_row(const uint8_t* packed, const uint8_t* scales, float* dst, int64_t n);

// Lossless repack of one FP4 row into n/32 MXFP4 blocks (17 bytes each): the scale byte is kept,
// the codes move from (2i, 2i+1) pairs to ggml's (j, j+16) pairs. Dequantizing the result as
// MXFP4 gives the same floats as dequantize_hf_fp4_row, except for scale 255 (NaN here, 2^127 in
// ggml's MXFP4 reading).
Status repack_hf_fp4_row_to_mxfp4(const uint8_t* packed, const uint8_t* scales, void* dst,
                                  int64_t n);

// Repack of one FP8 row (n a multiple of 128) into n/128 F8_E4M3_B128 blocks (129 bytes each):
// block k = {scale_row[k], q[128k .. 128k+127]}. Lossless, values identical.
Status repack_hf_fp8_row_to_b128(const uint8_t* q, const uint8_t* scale_row, void* dst, int64_t n);

}  // namespace dsv4::quant
