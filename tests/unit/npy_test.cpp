#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include "dsv4/format/npy.h"

namespace dsv4 {
namespace {

TEST(Npy, WriteThenReadF32) {
  const std::string path = testing::TempDir() + "/npy_test.npy";
  std::vector<float> v = {1.f, -2.5f, 3.f, 0.f, 1e-3f, 7.f};
  ASSERT_TRUE(npy_write_f32(path, {2, 3}, v.data()));
  auto r = npy_read(path);
  ASSERT_TRUE(r) << r.status().to_string();
  EXPECT_EQ(r->descr, "<f4");
  EXPECT_EQ(r->shape, (std::vector<int64_t>{2, 3}));
  for (int k = 0; k < 6; ++k) EXPECT_EQ(r->as_f64(k), v[static_cast<size_t>(k)]);
  std::remove(path.c_str());

  ASSERT_TRUE(npy_write_f32(path, {6}, v.data()));
  auto one = npy_read(path);
  ASSERT_TRUE(one) << one.status().to_string();
  EXPECT_EQ(one->shape, (std::vector<int64_t>{6}));
  std::remove(path.c_str());
}

TEST(Npy, RejectsMalformed) {
  const std::string junk = "\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'}";
  auto r = npy_parse(reinterpret_cast<const uint8_t*>(junk.data()), junk.size(), "junk");
  ASSERT_FALSE(r);
  EXPECT_NE(r.status().message().find("junk"), std::string::npos);
  auto not_npy = npy_parse(reinterpret_cast<const uint8_t*>("hello world"), 11, "x");
  EXPECT_FALSE(not_npy);
}

}  // namespace
}  // namespace dsv4
