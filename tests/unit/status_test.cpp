#include <gtest/gtest.h>

#include "dsv4/core/status.h"

namespace dsv4 {
namespace {

Result<int> parse_positive(int x) {
  if (x <= 0) return Status(ErrorCode::kInvalidArgument, "x must be positive, got " + std::to_string(x));
  return x;
}

TEST(Status, ResultCarriesValueOrError) {
  auto ok = parse_positive(3);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok.value(), 3);
  auto bad = parse_positive(-1);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(bad.status().to_string(), "invalid_argument: x must be positive, got -1");
}

TEST(StatusDeathTest, ValueOnErrorAborts) {
  auto bad = parse_positive(0);
  EXPECT_DEATH((void)bad.value(), "value\\(\\) on error");
}

}  // namespace
}  // namespace dsv4
