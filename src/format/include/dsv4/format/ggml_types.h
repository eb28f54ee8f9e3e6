// dsv4 format: the ggml tensor type ids a GGUF file may name, with their block geometry.
//
// Source: ggml.h (ids) and ggml-common.h / gguf-py constants GGML_QUANT_SIZES (block sizes);
// summarised in gguf-and-llama-cpp.md §3.2. Oracle: tests/python/test_gguf_info.py compares this
// table with the `gguf` package's GGML_QUANT_SIZES. Ids retired upstream (4, 5, 31-33, 36-38) are
// absent. Id 42 is contested: upstream's Q2_0 ({f16 d; u8 qs[16]} per 64) and the nsparks fork's
// F8_E4M3_B128 ({u8 e8m0; u8 e4m3[128]} per 128); it is not in the table, and the GGUF reader
// decides per file (gguf.h) between the two traits below.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

namespace dsv4 {

struct GgmlTypeTraits {
  uint32_t id;             // value stored in the GGUF tensor info
  std::string_view name;   // GGUF spelling: "f32", "q8_0", "q4_K", "mxfp4", ...
  int64_t block_size;      // elements per block (along ne0)
  uint64_t type_size;      // bytes per block
};

// Id 42, as the two projects that use it define it.
const GgmlTypeTraits& ggml_type_q2_0();
const GgmlTypeTraits& ggml_type_f8_e4m3_b128();
inline constexpr uint32_t kGgmlTypeId42 = 42;

// Every known type, ordered by id.
std::span<const GgmlTypeTraits> ggml_type_table();

// Traits of a type id, or nullopt if the id is unknown or retired.
const GgmlTypeTraits* ggml_type_traits(uint32_t id);

// Bytes of a row of `n` elements of `t`; nullopt if n is not a multiple of the block size or the
// product overflows.
std::optional<uint64_t> ggml_row_bytes(const GgmlTypeTraits& t, int64_t n);

}  // namespace dsv4
