// dsv4 CUDA backend: dequantization of the official DeepSeek-V4 checkpoint formats on the GPU.
//
// Formats: dsv4-architecture.md §3.1. Element decoding is shared with the CPU code through
// dsv4/core/dtypes.h, so both sides use one definition of e4m3fn, e8m0 and e2m1.
//
// All pointers are device pointers; calls are asynchronous on `stream` (0 = legacy default
// stream). Errors are CUDA launch errors, returned as a message ("" on success).
#pragma once

#include <cstdint>
#include <string>

namespace dsv4::cuda {

// Official FP8 weight: w[rows, cols] e4m3fn with scale[ceil(rows/128), ceil(cols/128)] e8m0.
// out[r, c] = e4m3fn(w[r, c]) * 2^(scale[r/128, c/128] - 127), float32, row-major.
std::string dequant_fp8_e4m3_b128x128_f32(const uint8_t* w, const uint8_t* scale, int64_t rows,
                                          int64_t cols, float* out, void* stream);

// Official FP4 expert weight: packed[rows, cols/2] (element 2k in the low nibble, 2k+1 in the
// high nibble) with scale[rows, cols/32] e8m0. cols must be a multiple of 32.
std::string dequant_fp4_e2m1_b32_f32(const uint8_t* packed, const uint8_t* scale, int64_t rows,
                                     int64_t cols, float* out, void* stream);

// Number of CUDA devices visible (0 when there is no driver or GPU).
int device_count();

}  // namespace dsv4::cuda
