// dsv4 tests/backend: the SIMD levels this machine runs, for the backend tests (each test runs
// every level the CPU supports and its log names them).
#pragma once

#include <cstdio>
#include <string>
#include <vector>

#include "dsv4/backend/cpu/cpu_ops.h"

namespace dsv4::test {

// The supported levels in increasing order; the first call prints "[tag] SIMD levels run: …".
inline const std::vector<backend::SimdLevel>& simd_levels(const char* tag) {
  static const std::vector<backend::SimdLevel> lv = [tag] {
    std::vector<backend::SimdLevel> v;
    std::string names;
    for (backend::SimdLevel l : {backend::SimdLevel::kScalar, backend::SimdLevel::kAvx2, backend::SimdLevel::kAvx512})
      if (backend::simd_level_supported(l)) {
        v.push_back(l);
        names += std::string(" ") + backend::simd_level_name(l);
      }
    std::printf("[%s] SIMD levels run:%s\n", tag, names.c_str());
    return v;
  }();
  return lv;
}

}  // namespace dsv4::test
