// The type table's internal consistency. Its values are checked against the gguf package's
// GGML_QUANT_SIZES in tests/python/test_gguf_info.py (the outside oracle).
#include <gtest/gtest.h>

#include <cstdint>
#include <optional>
#include <set>

#include "dsv4/format/ggml_types.h"

namespace dsv4 {
namespace {

TEST(GgmlTypes, TableIsSortedUniqueAndConsistent) {
  std::set<std::string_view> names;
  uint32_t prev = 0;
  bool first = true;
  for (const auto& t : ggml_type_table()) {
    if (!first) {
      EXPECT_GT(t.id, prev);
    }
    first = false;
    prev = t.id;
    EXPECT_TRUE(names.insert(t.name).second) << t.name;
    EXPECT_GT(t.block_size, 0);
    EXPECT_GT(t.type_size, 0u);
    EXPECT_EQ(ggml_type_traits(t.id), &t);
  }
  EXPECT_EQ(ggml_type_traits(4), nullptr);   // retired Q4_2
  EXPECT_EQ(ggml_type_traits(42), nullptr);  // contested: Q2_0 vs F8_E4M3_B128
}

TEST(GgmlTypes, RowBytes) {
  const auto* q8 = ggml_type_traits(8);
  ASSERT_NE(q8, nullptr);
  EXPECT_EQ(*ggml_row_bytes(*q8, 4096), 4096u / 32 * 34);
  EXPECT_FALSE(ggml_row_bytes(*q8, 33).has_value());
  const auto* mx = ggml_type_traits(39);
  EXPECT_EQ(mx->name, "mxfp4");
  EXPECT_EQ(*ggml_row_bytes(*mx, 2048), 2048u / 32 * 17);
}

}  // namespace
}  // namespace dsv4

namespace dsv4 {
namespace {

TEST(GgmlTypes, TypeId42NeedsProof) {
  const Id42Tensor f8[] = {{"a", 4096 * 512, 4096 * 4 * 129}, {"b", 1024, 8 * 129 + 24}};
  const Id42Tensor q2[] = {{"a", 4096, 64 * 18}, {"b", 64, 18 + 14}};
  const Id42Tensor bad[] = {{"a", 4096, 64 * 18}, {"weird", 128, 100}};
  const Id42Tensor mixed[] = {{"a", 4096, 64 * 18}, {"b", 128, 129}};
  const Id42Tensor padded_too_much[] = {{"a", 128, 129 + 32}};
  EXPECT_EQ(*resolve_type_id_42(41u, f8, 32), &ggml_type_f8_e4m3_b128());
  // F8 sizes but no file type 41: not proven.
  auto r = resolve_type_id_42(std::nullopt, f8, 32);
  EXPECT_EQ(r.status().code(), ErrorCode::kInvalidFile);
  EXPECT_NE(r.status().message().find("file_type"), std::string::npos) << r.status().message();
  EXPECT_EQ(resolve_type_id_42(7u, f8, 32).status().code(), ErrorCode::kInvalidFile);
  EXPECT_EQ(*resolve_type_id_42(41u, q2, 32), &ggml_type_q2_0());  // upstream MOSTLY_Q2_0 is also 41
  EXPECT_EQ(*resolve_type_id_42(std::nullopt, q2, 32), &ggml_type_q2_0());
  r = resolve_type_id_42(41u, bad, 32);
  EXPECT_EQ(r.status().code(), ErrorCode::kInvalidFile);
  EXPECT_NE(r.status().message().find("weird"), std::string::npos) << r.status().message();
  EXPECT_EQ(resolve_type_id_42(41u, mixed, 32).status().code(), ErrorCode::kInvalidFile);
  EXPECT_EQ(resolve_type_id_42(41u, padded_too_much, 32).status().code(), ErrorCode::kInvalidFile);
  const Id42Tensor huge[] = {{"h", INT64_MAX - 63, UINT64_MAX}};
  EXPECT_EQ(resolve_type_id_42(41u, huge, 32).status().code(), ErrorCode::kInvalidFile);
}

}  // namespace
}  // namespace dsv4
