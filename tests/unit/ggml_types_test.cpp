// The type table's internal consistency. Its values are checked against the gguf package's
// GGML_QUANT_SIZES in tests/python/test_gguf_info.py (the outside oracle).
#include <gtest/gtest.h>

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
