// dsv4 quant: scalar reference quantization and dequantization of the ggml block types.
//
// These are the oracles for the CPU and CUDA backends, written for clarity, not speed.
// Dequantization is bit-exact with the `gguf` Python package's reference (gguf.quants) for every
// type it implements: same float32 operations in the same order (the library is built with
// -ffp-contract=off so no FMA changes a rounding). Oracle: tests/quant/quant_test.cpp against
// fixtures from scripts/fixtures/make_quant_fixtures.py.
//
// Threading: every function is pure and reentrant. Ownership: callers own all buffers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "dsv4/core/status.h"
#include "dsv4/format/ggml_types.h"

namespace dsv4::quant {

// Type ids. The values are ggml's type ids (ggml.h), except F8_E4M3_B128: the nsparks fork stores
// it as id 42, which upstream assigns to Q2_0. The loader maps a file's id 42 to kF8_E4M3_B128
// only when the file proves it (file type 41 and 129 bytes per 128 elements) and to kQ2_0
// otherwise; kF8_E4M3_B128's value here is outside ggml's id range and never written to a file.
enum class QType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ8_0 = 8,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI32 = 26,
  kIQ1_M = 29,
  kBF16 = 30,
  kMXFP4 = 39,
  kQ2_0 = 42,
  kF8_E4M3_B128 = 0x1002A,  // not a ggml id, see above
};

struct QTypeInfo {
  QType type;
  std::string_view name;  // GGUF spelling: "q8_0", "q4_K", "mxfp4", "f8_e4m3_b128", ...
  int64_t block_size;     // elements per block
  size_t type_size;       // bytes per block
  bool can_quantize;      // quantize_row supports it
};

// Every type this layer handles, in QType order.
const QTypeInfo* qtype_table(size_t* count);
// Info of a type, or nullptr when this layer does not handle it.
const QTypeInfo* qtype_info(QType type);

// The QType of a ggml type id read from a file. Id 42 is ambiguous (upstream Q2_0 / nsparks
// F8_E4M3_B128) and answers kInvalidArgument here: use qtype_from_traits on the reader's result. Ids this
// layer does not handle answer kUnsupported naming the id.
Result<QType> qtype_from_ggml_id(uint32_t id);

// The QType of a tensor whose type the GGUF reader resolved (GgufTensorInfo::type), including
// the per-file meaning of id 42 (dsv4/format/ggml_types.h resolve_type_id_42).
Result<QType> qtype_from_traits(const GgmlTypeTraits& t);

// Dequantizes n elements (n a multiple of the block size) from the raw blocks at src (any
// alignment; n / block_size * type_size bytes) into dst[0..n). I32 converts each value to the
// nearest float. Errors: kUnsupported for a type not handled here, kInvalidArgument for n < 0 or
// n not a multiple of the block size. Scales that are inf/NaN propagate as IEEE arithmetic does.
Status dequantize_row(QType type, const void* src, float* dst, int64_t n);

// Quantizes n floats (n a multiple of the block size) into blocks at dst (any alignment).
// Supported: F32, F16, BF16, Q8_0, MXFP4 (byte-identical to gguf.quants.quantize for finite
// inputs), Q2_K and Q4_K (the algorithm of ggml's quantize_row_q{2,4}_K_ref, i.e. what
// llama-quantize does without an importance matrix). Inputs must be finite; MXFP4 clamps the
// shared exponent to [0, 254] where gguf-py's uint8 cast would wrap (blocks with max |x| below
// 2^-125). Errors as for dequantize_row.
Status quantize_row(QType type, const float* src, void* dst, int64_t n);

}  // namespace dsv4::quant
