// CUDA dequantization vs the host definition in dsv4/core/dtypes.h (itself checked against
// ml_dtypes in tests/unit/dtypes_test.cpp). Exact: both sides evaluate the same scalar formula in
// f32. Skipped where no GPU is visible (CI compiles it; scripts/gpu-check.sh runs it).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "dsv4/backend/cuda/dequant.h"
#include "dsv4/core/dtypes.h"

namespace dsv4 {
namespace {

template <class T>
T* to_device(const std::vector<T>& v) {
  T* d = nullptr;
  EXPECT_EQ(cudaMalloc(&d, v.size() * sizeof(T)), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(d, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice), cudaSuccess);
  return d;
}

void expect_bits_equal(const std::vector<float>& want, const std::vector<float>& got) {
  ASSERT_EQ(want.size(), got.size());
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(f32_to_bits(want[i]), f32_to_bits(got[i])) << "element " << i;
  }
}

TEST(CudaDequant, Fp8BlockScaledMatchesHost) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const int64_t rows = 300, cols = 260;  // ragged last tiles
  const int64_t srows = (rows + 127) / 128, scols = (cols + 127) / 128;
  std::mt19937 rng(1);
  std::vector<uint8_t> w(rows * cols), s(srows * scols);
  for (auto& b : w) b = static_cast<uint8_t>(rng());
  for (auto& b : s) b = static_cast<uint8_t>(100 + rng() % 50);
  std::vector<float> want(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      want[r * cols + c] = e4m3fn_to_f32(w[r * cols + c]) * e8m0_to_f32(s[(r / 128) * scols + c / 128]);
    }
  }
  uint8_t* dw = to_device(w);
  uint8_t* ds = to_device(s);
  float* dout = nullptr;
  ASSERT_EQ(cudaMalloc(&dout, want.size() * 4), cudaSuccess);
  EXPECT_EQ(cuda::dequant_fp8_e4m3_b128x128_f32(dw, ds, rows, cols, dout, nullptr), "");
  std::vector<float> got(want.size());
  ASSERT_EQ(cudaMemcpy(got.data(), dout, got.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  expect_bits_equal(want, got);
  cudaFree(dw);
  cudaFree(ds);
  cudaFree(dout);
}

TEST(CudaDequant, Fp4ExpertLayoutMatchesHost) {
  if (cuda::device_count() == 0) GTEST_SKIP() << "no CUDA device";
  const int64_t rows = 37, cols = 96;
  std::mt19937 rng(2);
  std::vector<uint8_t> p(rows * cols / 2), s(rows * cols / 32);
  for (auto& b : p) b = static_cast<uint8_t>(rng());
  for (auto& b : s) b = static_cast<uint8_t>(110 + rng() % 30);
  std::vector<float> want(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const uint8_t byte = p[r * cols / 2 + c / 2];
      const uint8_t code = (c % 2) ? byte >> 4 : byte & 15;  // low nibble = even element
      want[r * cols + c] = e2m1_to_f32(code) * e8m0_to_f32(s[r * cols / 32 + c / 32]);
    }
  }
  uint8_t* dp = to_device(p);
  uint8_t* ds = to_device(s);
  float* dout = nullptr;
  ASSERT_EQ(cudaMalloc(&dout, want.size() * 4), cudaSuccess);
  EXPECT_EQ(cuda::dequant_fp4_e2m1_b32_f32(dp, ds, rows, cols, dout, nullptr), "");
  std::vector<float> got(want.size());
  ASSERT_EQ(cudaMemcpy(got.data(), dout, got.size() * 4, cudaMemcpyDeviceToHost), cudaSuccess);
  expect_bits_equal(want, got);
  cudaFree(dp);
  cudaFree(ds);
  cudaFree(dout);
}

}  // namespace
}  // namespace dsv4
