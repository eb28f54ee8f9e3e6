#include <cuda_runtime.h>

#include "dsv4/backend/cuda/dequant.h"
#include "dsv4/core/dtypes.h"

namespace dsv4::cuda {
namespace {

__global__ void dequant_fp8_kernel(const uint8_t* __restrict__ w, const uint8_t* __restrict__ scale,
                                   int64_t rows, int64_t cols, int64_t scale_cols,
                                   float* __restrict__ out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * cols) return;
  const int64_t r = i / cols, c = i % cols;
  out[i] = e4m3fn_to_f32(w[i]) * e8m0_to_f32(scale[(r / 128) * scale_cols + c / 128]);
}

__global__ void dequant_fp4_kernel(const uint8_t* __restrict__ packed,
                                   const uint8_t* __restrict__ scale, int64_t rows, int64_t cols,
                                   float* __restrict__ out) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * cols) return;
  const int64_t r = i / cols, c = i % cols;
  const uint8_t byte = packed[r * (cols / 2) + c / 2];
  const uint8_t code = (c & 1) ? static_cast<uint8_t>(byte >> 4) : static_cast<uint8_t>(byte & 15);
  out[i] = e2m1_to_f32(code) * e8m0_to_f32(scale[r * (cols / 32) + c / 32]);
}

std::string last_error() {
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? std::string() : std::string(cudaGetErrorString(e));
}

unsigned grid_for(int64_t n, int threads) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

}  // namespace

std::string dequant_fp8_e4m3_b128x128_f32(const uint8_t* w, const uint8_t* scale, int64_t rows,
                                          int64_t cols, float* out, void* stream) {
  if (rows <= 0 || cols <= 0) return "dequant_fp8: empty shape";
  const int threads = 256;
  dequant_fp8_kernel<<<grid_for(rows * cols, threads), threads, 0,
                       static_cast<cudaStream_t>(stream)>>>(w, scale, rows, cols,
                                                            (cols + 127) / 128, out);
  return last_error();
}

std::string dequant_fp4_e2m1_b32_f32(const uint8_t* packed, const uint8_t* scale, int64_t rows,
                                     int64_t cols, float* out, void* stream) {
  if (rows <= 0 || cols <= 0 || cols % 32 != 0) return "dequant_fp4: cols must be a multiple of 32";
  const int threads = 256;
  dequant_fp4_kernel<<<grid_for(rows * cols, threads), threads, 0,
                       static_cast<cudaStream_t>(stream)>>>(packed, scale, rows, cols, out);
  return last_error();
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

}  // namespace dsv4::cuda
