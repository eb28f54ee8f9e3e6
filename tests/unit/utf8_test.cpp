#include <gtest/gtest.h>

#include "dsv4/core/utf8.h"

namespace dsv4 {
namespace {

TEST(Utf8, AcceptsValid) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("plain ascii"));
  EXPECT_TRUE(is_valid_utf8("東京、大阪。"));
  EXPECT_TRUE(is_valid_utf8("\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x92\xbb"));  // ZWJ emoji
  EXPECT_TRUE(is_valid_utf8("\xf4\x8f\xbf\xbf"));                                // U+10FFFF
}

TEST(Utf8, RejectsInvalid) {
  EXPECT_FALSE(is_valid_utf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(is_valid_utf8("\xe0\x80\xaf"));      // overlong
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));      // surrogate U+D800
  EXPECT_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // > U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\xff"));
  EXPECT_FALSE(is_valid_utf8("\xe6\x9d"));          // truncated
  EXPECT_EQ(utf8_valid_prefix("ab\xe6\x9d"), 2u);
}

}  // namespace
}  // namespace dsv4
