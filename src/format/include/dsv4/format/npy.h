// dsv4 format: NumPy .npy files (format versions 1-3, little-endian, C order), used for test
// fixtures (tokens, logits) and for --dump-logits outputs.
//
// Supported dtypes: '<f4', '<f8', '<i4', '<i8', '|u1', '<u2', '<u4'. Anything else (big-endian,
// Fortran order, object arrays) is a kUnsupported error naming the file and the descriptor.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dsv4/core/status.h"

namespace dsv4 {

struct NpyArray {
  std::string descr;            // numpy dtype descriptor, e.g. "<f4"
  std::vector<int64_t> shape;   // C order
  std::vector<uint8_t> data;    // raw little-endian element bytes

  int64_t size() const;         // product of shape (1 for a 0-d array)
  size_t item_size() const;     // bytes per element
  // Element k converted to double / int64. DSV4_CHECK-fails on an index out of range.
  double as_f64(int64_t k) const;
  int64_t as_i64(int64_t k) const;
};

Result<NpyArray> npy_read(const std::string& path);
Result<NpyArray> npy_parse(const uint8_t* bytes, size_t n, const std::string& name);
// Writes a float32 array of the given shape.
Status npy_write_f32(const std::string& path, const std::vector<int64_t>& shape,
                     const float* data);

}  // namespace dsv4
