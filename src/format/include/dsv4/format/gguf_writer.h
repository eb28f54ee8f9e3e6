// dsv4 format: GGUF v3 writer (little-endian), for our tools and for tests that build files.
//
// Usage: add metadata and tensors, then bytes() or write(path). Tensor data is copied in; offsets
// are laid out in insertion order at `alignment`. The writer does not validate the architecture:
// tests use it to build hostile files on purpose.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dsv4/core/status.h"
#include "dsv4/format/gguf.h"

namespace dsv4 {

class GgufWriter {
 public:
  explicit GgufWriter(uint32_t alignment = 32) : alignment_(alignment) {}

  void add_u8(std::string_view key, uint8_t v) { scalar(key, GgufType::kU8, &v, 1); }
  void add_i8(std::string_view key, int8_t v) { scalar(key, GgufType::kI8, &v, 1); }
  void add_u16(std::string_view key, uint16_t v) { scalar(key, GgufType::kU16, &v, 2); }
  void add_i16(std::string_view key, int16_t v) { scalar(key, GgufType::kI16, &v, 2); }
  void add_u32(std::string_view key, uint32_t v) { scalar(key, GgufType::kU32, &v, 4); }
  void add_i32(std::string_view key, int32_t v) { scalar(key, GgufType::kI32, &v, 4); }
  void add_u64(std::string_view key, uint64_t v) { scalar(key, GgufType::kU64, &v, 8); }
  void add_i64(std::string_view key, int64_t v) { scalar(key, GgufType::kI64, &v, 8); }
  void add_f32(std::string_view key, float v) { scalar(key, GgufType::kF32, &v, 4); }
  void add_f64(std::string_view key, double v) { scalar(key, GgufType::kF64, &v, 8); }
  void add_bool(std::string_view key, bool v) {
    uint8_t b = v ? 1 : 0;
    scalar(key, GgufType::kBool, &b, 1);
  }
  void add_string(std::string_view key, std::string_view v);
  void add_array_i32(std::string_view key, std::span<const int32_t> v);
  void add_array_u32(std::string_view key, std::span<const uint32_t> v);
  void add_array_f32(std::string_view key, std::span<const float> v);
  void add_array_string(std::string_view key, std::span<const std::string> v);
  // Copies a value read by GgufFile (any type, arrays included) under `key`.
  void add_value(std::string_view key, const GgufValue& v);

  // ne in ggml order (ne[0] contiguous); `data` must hold exactly the tensor's byte size.
  void add_tensor(std::string_view name, uint32_t type_id, std::span<const int64_t> ne,
                  std::span<const uint8_t> data);

  // Declares a tensor of `n_bytes` whose bytes are produced by write_streaming's callback, so a
  // file larger than memory can be written one tensor at a time.
  void add_tensor_info(std::string_view name, uint32_t type_id, std::span<const int64_t> ne,
                       uint64_t n_bytes);
  // fill(i, out): write tensor i's bytes (i counts every added tensor) into `out`.
  using Fill = std::function<Status(size_t i, std::span<uint8_t> out)>;
  Status write_streaming(const std::string& path, const Fill& fill) const;
  // The same file as write_streaming produces, in memory.
  Result<std::vector<uint8_t>> bytes_streaming(const Fill& fill) const;

  std::vector<uint8_t> bytes() const;  // only for tensors added with their data
  Status write(const std::string& path) const;

 private:
  using Put = std::function<bool(const void* p, size_t n)>;
  Status stream(const Put& put, const Fill& fill, const std::string& what) const;
  void key(std::string_view k, GgufType t);
  void scalar(std::string_view k, GgufType t, const void* v, size_t n);
  void array_header(std::string_view k, GgufType elem, uint64_t count);

  struct Tensor {
    std::string name;
    uint32_t type_id;
    std::vector<int64_t> ne;
    std::vector<uint8_t> data;  // empty for add_tensor_info tensors
    uint64_t n_bytes;
  };
  std::vector<uint8_t> header() const;  // everything before the data section, padded
  uint32_t alignment_;
  uint64_t n_kv_ = 0;
  std::vector<uint8_t> kv_bytes_;
  std::vector<Tensor> tensors_;
};

}  // namespace dsv4
