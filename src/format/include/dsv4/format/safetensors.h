// dsv4 format: safetensors files (https://github.com/huggingface/safetensors, "Format"), as the
// official DeepSeek-V4 checkpoints use them (dsv4-architecture.md §3.1).
//
// Layout: u64 header length N (little-endian), N bytes of UTF-8 JSON
// {"<name>": {"dtype": "F8_E4M3", "shape": [..], "data_offsets": [begin, end]}, ...,
//  "__metadata__": {string: string}}, then the data section. Enforced (reliability.md, the
// safetensors invariants): N ≤ 100 MiB and within the file; every dtype known; every shape
// product × element size equal to end − begin (checked arithmetic); tensors cover the data
// section exactly, without gaps or overlaps; no duplicate names. Errors name the file and tensor.
//
// Lifetime: spans point into the mapping owned by the SafetensorsFile (or the caller's buffer for
// parse()). Immutable after construction.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dsv4/core/mapped_file.h"
#include "dsv4/core/status.h"

namespace dsv4 {

enum class StDtype { kF64, kF32, kF16, kBF16, kI64, kI32, kI16, kI8, kU8, kBool, kF8E4M3, kF8E5M2, kF8E8M0 };

const char* st_dtype_name(StDtype t);
size_t st_dtype_size(StDtype t);

struct StTensor {
  std::string name;
  StDtype dtype = StDtype::kF32;
  std::vector<int64_t> shape;       // row-major, PyTorch order ([out, in] for weights)
  uint64_t begin = 0, end = 0;      // relative to the data section
  std::span<const uint8_t> data;
  int64_t n_elements() const;
};

class SafetensorsFile {
 public:
  static Result<SafetensorsFile> open(const std::string& path);
  static Result<SafetensorsFile> parse(std::span<const uint8_t> bytes, const std::string& name);

  const std::vector<StTensor>& tensors() const { return tensors_; }
  const StTensor* find(std::string_view name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::shared_ptr<MappedFile> file_;
  std::vector<StTensor> tensors_;
  std::map<std::string, size_t, std::less<>> index_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace dsv4
