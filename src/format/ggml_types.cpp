#include "dsv4/format/ggml_types.h"

#include <array>

namespace dsv4 {
namespace {

constexpr GgmlTypeTraits kQ2_0 = {42, "q2_0", 64, 18};
constexpr GgmlTypeTraits kF8E4M3B128 = {42, "f8_e4m3_b128", 128, 129};

constexpr std::array<GgmlTypeTraits, 34> kTypes = {{
    {0, "f32", 1, 4},
    {1, "f16", 1, 2},
    {2, "q4_0", 32, 18},
    {3, "q4_1", 32, 20},
    {6, "q5_0", 32, 22},
    {7, "q5_1", 32, 24},
    {8, "q8_0", 32, 34},
    {9, "q8_1", 32, 40},
    {10, "q2_K", 256, 84},
    {11, "q3_K", 256, 110},
    {12, "q4_K", 256, 144},
    {13, "q5_K", 256, 176},
    {14, "q6_K", 256, 210},
    {15, "q8_K", 256, 292},
    {16, "iq2_xxs", 256, 66},
    {17, "iq2_xs", 256, 74},
    {18, "iq3_xxs", 256, 98},
    {19, "iq1_s", 256, 50},
    {20, "iq4_nl", 32, 18},
    {21, "iq3_s", 256, 110},
    {22, "iq2_s", 256, 82},
    {23, "iq4_xs", 256, 136},
    {24, "i8", 1, 1},
    {25, "i16", 1, 2},
    {26, "i32", 1, 4},
    {27, "i64", 1, 8},
    {28, "f64", 1, 8},
    {29, "iq1_m", 256, 56},
    {30, "bf16", 1, 2},
    {34, "tq1_0", 256, 54},
    {35, "tq2_0", 256, 66},
    {39, "mxfp4", 32, 17},
    {40, "nvfp4", 64, 36},
    {41, "q1_0", 128, 18},
}};

}  // namespace

const GgmlTypeTraits& ggml_type_q2_0() { return kQ2_0; }
const GgmlTypeTraits& ggml_type_f8_e4m3_b128() { return kF8E4M3B128; }

std::span<const GgmlTypeTraits> ggml_type_table() {
  return kTypes;
}

const GgmlTypeTraits* ggml_type_traits(uint32_t id) {
  for (const auto& t : ggml_type_table()) {
    if (t.id == id) return &t;
  }
  return nullptr;
}

std::optional<uint64_t> ggml_row_bytes(const GgmlTypeTraits& t, int64_t n) {
  if (n < 0 || t.block_size <= 0 || n % t.block_size != 0) return std::nullopt;
  uint64_t blocks = static_cast<uint64_t>(n / t.block_size);
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(blocks, t.type_size, &bytes)) return std::nullopt;
  return bytes;
}

}  // namespace dsv4
