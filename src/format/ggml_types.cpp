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

namespace {

// True when span holds exactly n / block * bytes, plus less than `alignment` bytes of padding.
bool fits(const Id42Tensor& t, int64_t block, uint64_t bytes, uint64_t alignment) {
  if (t.n_elements < 0 || t.n_elements % block != 0) return false;
  uint64_t need = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(t.n_elements / block), bytes, &need)) return false;
  const uint64_t pad = alignment > 0 ? alignment - 1 : 0;
  return t.span_bytes >= need && t.span_bytes - need <= pad;
}

}  // namespace

Result<const GgmlTypeTraits*> resolve_type_id_42(std::optional<uint32_t> file_type,
                                                 std::span<const Id42Tensor> tensors,
                                                 uint64_t alignment) {
  bool all_f8 = true, all_q2 = true;
  const Id42Tensor* first_bad = nullptr;
  for (const auto& t : tensors) {
    const bool f8 = fits(t, kF8E4M3B128.block_size, kF8E4M3B128.type_size, alignment);
    const bool q2 = fits(t, kQ2_0.block_size, kQ2_0.type_size, alignment);
    all_f8 = all_f8 && f8;
    all_q2 = all_q2 && q2;
    if (!f8 && !q2 && first_bad == nullptr) first_bad = &t;
  }
  if (tensors.empty()) return &kQ2_0;
  if (all_f8 && file_type == 41u) return &kF8E4M3B128;
  if (all_q2) return &kQ2_0;
  std::string why;
  if (first_bad != nullptr) {
    why = "tensor '" + std::string(first_bad->name) + "' (" + std::to_string(first_bad->n_elements) +
          " elements in " + std::to_string(first_bad->span_bytes) +
          " bytes) fits neither Q2_0 (18 bytes per 64) nor F8_E4M3_B128 (129 bytes per 128)";
  } else if (all_f8) {
    why = "tensors have F8_E4M3_B128 sizes but general.file_type is " +
          (file_type ? std::to_string(*file_type) : std::string("absent")) + ", not 41";
  } else {
    why = "tensors of type id 42 mix Q2_0 and F8_E4M3_B128 sizes";
  }
  return Status(ErrorCode::kInvalidFile, "ggml type id 42: " + why);
}

std::optional<uint64_t> ggml_row_bytes(const GgmlTypeTraits& t, int64_t n) {
  if (n < 0 || t.block_size <= 0 || n % t.block_size != 0) return std::nullopt;
  uint64_t blocks = static_cast<uint64_t>(n / t.block_size);
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(blocks, t.type_size, &bytes)) return std::nullopt;
  return bytes;
}

}  // namespace dsv4
