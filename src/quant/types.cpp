#include <array>
#include <string>

#include "dsv4/quant/blocks.h"
#include "dsv4/quant/quant.h"

namespace dsv4::quant {
namespace {

constexpr std::array<QTypeInfo, 22> kInfo = {{
    {QType::kF32, "f32", 1, 4, true},
    {QType::kF16, "f16", 1, 2, true},
    {QType::kQ8_0, "q8_0", 32, sizeof(BlockQ8_0), true},
    {QType::kQ2_K, "q2_K", kQK_K, sizeof(BlockQ2_K), true},
    {QType::kQ3_K, "q3_K", kQK_K, sizeof(BlockQ3_K), false},
    {QType::kQ4_K, "q4_K", kQK_K, sizeof(BlockQ4_K), true},
    {QType::kQ5_K, "q5_K", kQK_K, sizeof(BlockQ5_K), false},
    {QType::kQ6_K, "q6_K", kQK_K, sizeof(BlockQ6_K), false},
    {QType::kIQ2_XXS, "iq2_xxs", kQK_K, sizeof(BlockIQ2_XXS), false},
    {QType::kIQ2_XS, "iq2_xs", kQK_K, sizeof(BlockIQ2_XS), false},
    {QType::kIQ3_XXS, "iq3_xxs", kQK_K, sizeof(BlockIQ3_XXS), false},
    {QType::kIQ1_S, "iq1_s", kQK_K, sizeof(BlockIQ1_S), false},
    {QType::kIQ4_NL, "iq4_nl", 32, sizeof(BlockIQ4_NL), false},
    {QType::kIQ3_S, "iq3_s", kQK_K, sizeof(BlockIQ3_S), false},
    {QType::kIQ2_S, "iq2_s", kQK_K, sizeof(BlockIQ2_S), false},
    {QType::kIQ4_XS, "iq4_xs", kQK_K, sizeof(BlockIQ4_XS), false},
    {QType::kI32, "i32", 1, 4, false},
    {QType::kIQ1_M, "iq1_m", kQK_K, sizeof(BlockIQ1_M), false},
    {QType::kBF16, "bf16", 1, 2, true},
    {QType::kMXFP4, "mxfp4", 32, sizeof(BlockMXFP4), true},
    {QType::kQ2_0, "q2_0", 64, sizeof(BlockQ2_0), false},
    {QType::kF8_E4M3_B128, "f8_e4m3_b128", 128, sizeof(BlockF8E4M3B128), false},
}};

}  // namespace

const QTypeInfo* qtype_table(size_t* count) {
  *count = kInfo.size();
  return kInfo.data();
}

const QTypeInfo* qtype_info(QType type) {
  for (const auto& t : kInfo)
    if (t.type == type) return &t;
  return nullptr;
}

Result<QType> qtype_from_ggml_id(uint32_t id) {
  if (id == 42)
    return Status{ErrorCode::kInvalidArgument,
                  "quant: type id 42 is ambiguous (Q2_0 or F8_E4M3_B128); resolve it per file"};
  const auto t = static_cast<QType>(id);
  if (t == QType::kF8_E4M3_B128 || qtype_info(t) == nullptr)
    return Status{ErrorCode::kUnsupported, "quant: ggml type id " + std::to_string(id) + " is not supported"};
  return t;
}

Result<QType> qtype_from_traits(const GgmlTypeTraits& t) {
  if (&t == &ggml_type_f8_e4m3_b128()) return QType::kF8_E4M3_B128;
  if (&t == &ggml_type_q2_0()) return QType::kQ2_0;
  return qtype_from_ggml_id(t.id);
}

// Shared argument check of dequantize_row / quantize_row.
Status check_row_args(QType type, int64_t n, const QTypeInfo** info_out) {
  const QTypeInfo* info = qtype_info(type);
  if (info == nullptr)
    return {ErrorCode::kUnsupported,
            "quant: type id " + std::to_string(static_cast<uint32_t>(type)) + " is not supported"};
  if (n < 0 || n % info->block_size != 0)
    return {ErrorCode::kInvalidArgument, "quant: " + std::string(info->name) + ": element count " +
                                             std::to_string(n) + " is not a multiple of the block size " +
                                             std::to_string(info->block_size)};
  *info_out = info;
  return Status::ok();
}

}  // namespace dsv4::quant
