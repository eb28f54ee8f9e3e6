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

#include "dsv4/core/status.h"

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

// Evidence about one tensor stored with type id 42: its element count and the bytes it spans in
// the data section (its offset to the next tensor's offset, or to the end of the data for the
// last one; up to alignment-1 bytes of that may be padding).
struct Id42Tensor {
  std::string_view name;
  int64_t n_elements;
  uint64_t span_bytes;
};

// Decides what type id 42 means in one file (model-files issue, item 4): F8_E4M3_B128 only when
// the file proves it (general.file_type 41 and 129 bytes per 128 elements for every id-42
// tensor); otherwise Q2_0 when every id-42 tensor has Q2_0's size (18 bytes per 64; upstream's
// MOSTLY_Q2_0 file type is also 41, so sizes decide). Anything else: kInvalidFile naming the
// first tensor that fits neither, or why F8 was not proven. An empty list answers Q2_0.
Result<const GgmlTypeTraits*> resolve_type_id_42(std::optional<uint32_t> file_type,
                                                 std::span<const Id42Tensor> tensors,
                                                 uint64_t alignment);

// Every known type, ordered by id.
std::span<const GgmlTypeTraits> ggml_type_table();

// Traits of a type id, or nullopt if the id is unknown or retired.
const GgmlTypeTraits* ggml_type_traits(uint32_t id);

// Bytes of a row of `n` elements of `t`; nullopt if n is not a multiple of the block size or the
// product overflows.
std::optional<uint64_t> ggml_row_bytes(const GgmlTypeTraits& t, int64_t n);

}  // namespace dsv4
