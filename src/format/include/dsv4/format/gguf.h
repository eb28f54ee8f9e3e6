// dsv4 format: GGUF reader (versions 2 and 3), bounds- and overflow-checked.
//
// Container layout: gguf-and-llama-cpp.md §3.1. Every count and length read from the file is
// checked against the bytes that remain before anything is allocated, so a hostile header cannot
// make the reader allocate more than a small multiple of the file size (reliability.md §C.1
// G1-G9). Errors name the offset, key or tensor at fault.
//
// Lifetime: string_views and spans returned by a GgufFile point into its bytes. GgufFile::open()
// owns an mmap of the file; GgufFile::parse() borrows the caller's buffer, which must outlive the
// GgufFile. A GgufFile is immutable after construction and safe to read from several threads.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "dsv4/core/mapped_file.h"
#include "dsv4/core/status.h"
#include "dsv4/format/ggml_types.h"

namespace dsv4 {

// GGUF metadata value types (gguf.h).
enum class GgufType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
};

const char* gguf_type_name(GgufType t);

// Limits that keep a hostile file from exhausting memory (reliability.md G4).
struct GgufLimits {
  static constexpr uint64_t kMaxKeyBytes = 256;
  static constexpr uint64_t kMaxStringBytes = 64ull << 20;
  static constexpr uint64_t kMaxArrayElements = 16ull << 20;
  static constexpr uint64_t kMaxTensorNameBytes = 256;
  static constexpr uint32_t kMaxDims = 4;
  static constexpr int64_t kMaxDim = int64_t{1} << 40;
};

// One metadata value. Scalars are decoded; strings and arrays are views into the file.
class GgufValue {
 public:
  GgufType type() const { return type_; }
  bool is_array() const { return type_ == GgufType::kArray; }
  GgufType array_type() const { return elem_type_; }
  uint64_t array_size() const { return count_; }

  // Integer scalars of any width, when the value fits the requested signedness.
  std::optional<uint64_t> as_u64() const;
  std::optional<int64_t> as_i64() const;
  // f32 or f64 scalars.
  std::optional<double> as_f64() const;
  std::optional<bool> as_bool() const;
  std::optional<std::string_view> as_string() const;

  // Arrays of integers (any width), floats (f32/f64) or strings; nullopt on a type mismatch.
  std::optional<std::vector<int64_t>> as_i64_array() const;
  std::optional<std::vector<double>> as_f64_array() const;
  std::optional<std::vector<std::string_view>> as_string_array() const;

  // "u32", "string", "arr[i32,44]" — for messages and dumps.
  std::string type_string() const;

 private:
  friend class GgufParser;
  friend class GgufWriter;
  GgufType type_ = GgufType::kU8;
  GgufType elem_type_ = GgufType::kU8;
  uint64_t count_ = 0;          // array element count
  uint64_t u_ = 0;              // unsigned scalars and bool
  int64_t i_ = 0;               // signed scalars
  double f_ = 0;                // float scalars
  std::span<const uint8_t> raw_;  // string bytes, or the array payload
};

struct GgufKv {
  std::string_view key;
  GgufValue value;
};

struct GgufTensorInfo {
  std::string_view name;
  uint32_t n_dims = 0;
  int64_t ne[4] = {1, 1, 1, 1};  // ggml order: ne[0] is the contiguous dimension
  uint32_t type_id = 0;
  const GgmlTypeTraits* type = nullptr;
  uint64_t offset = 0;   // relative to the data section
  uint64_t n_bytes = 0;
  std::span<const uint8_t> data;  // empty when the file was parsed header-only
  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

struct GgufParseOptions {
  // When false the data section may be absent or short (for "sparse" headers); tensor ranges are
  // still checked for overflow and overlap, and TensorInfo::data stays empty.
  bool require_data = true;
  // How GgufFile::open holds the file's bytes (mapped_file.h); parse() ignores it.
  MapOptions map = {};
};

class GgufFile {
 public:
  // Maps `path` and parses it. Errors: kIo (cannot open/map), kInvalidFile (format violation,
  // message names offset/key/tensor), kUnsupported (version, unknown tensor type).
  static Result<GgufFile> open(const std::string& path, GgufParseOptions opts = {});
  // Parses a caller-owned buffer (used by fuzzers and tests); `bytes` must outlive the result.
  static Result<GgufFile> parse(std::span<const uint8_t> bytes, GgufParseOptions opts = {});

  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  const std::vector<GgufKv>& metadata() const { return kvs_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }

  const GgufValue* find(std::string_view key) const;
  const GgufTensorInfo* find_tensor(std::string_view name) const;

  // Typed getters with errors naming the key: kNotFound if absent, kInvalidFile on a type mismatch.
  Result<uint64_t> get_u64(std::string_view key) const;
  Result<double> get_f64(std::string_view key) const;
  Result<std::string_view> get_string(std::string_view key) const;

  // The file behind open() (how it is held, how much of it in huge pages); null after parse().
  const MappedFile* mapped() const { return file_.get(); }

 private:
  friend class GgufParser;
  std::shared_ptr<MappedFile> file_;  // null when parsing a borrowed buffer
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<GgufKv> kvs_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string_view, size_t, std::less<>> kv_index_;
  std::map<std::string_view, size_t, std::less<>> tensor_index_;
};

}  // namespace dsv4
