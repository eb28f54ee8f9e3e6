// Shared helpers of the forward-pass tests: fixture paths, npy loading, NMSE.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "dsv4/format/npy.h"

namespace dsv4::test {

inline std::string fx(const std::string& config, const std::string& rel) {
  return std::string(DSV4_FIXTURES_DIR) + "/" + config + "/" + rel;
}

inline NpyArray load_npy(const std::string& path) {
  auto r = npy_read(path);
  EXPECT_TRUE(r.is_ok()) << path << ": " << r.status().to_string();
  if (!r) return {};
  return std::move(*r);
}

inline std::vector<int32_t> tokens_of(const NpyArray& a) {
  std::vector<int32_t> t(static_cast<size_t>(a.size()));
  for (int64_t i = 0; i < a.size(); ++i) t[static_cast<size_t>(i)] = static_cast<int32_t>(a.as_i64(i));
  return t;
}

// NMSE Σ(a−b)²/Σb² of got[0..V) against row `row` of a [rows][V] fixture.
inline double nmse(const float* got, const NpyArray& ref, int64_t row) {
  const int64_t V = ref.shape[1];
  double num = 0, den = 0;
  for (int64_t i = 0; i < V; ++i) {
    const double b = ref.as_f64(row * V + i);
    const double d = static_cast<double>(got[i]) - b;
    num += d * d;
    den += b * b;
  }
  return num / den;
}

}  // namespace dsv4::test
