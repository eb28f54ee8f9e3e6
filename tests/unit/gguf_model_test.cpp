// Split GGUF sets (reliability.md G13): shard discovery from any shard's name, split.* checks.
#include <gtest/gtest.h>

#include <algorithm>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "dsv4/format/gguf_model.h"
#include "dsv4/format/gguf_writer.h"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

struct ShardSpec {
  int no;               // split.no as written (0-based)
  int count;            // split.count as written
  int tensors_total;    // split.tensors.count as written
  std::vector<std::string> tensors;
};

void write_shard(const std::string& path, const ShardSpec& s) {
  GgufWriter w;
  if (s.no == 0) w.add_string("general.architecture", "deepseek4");
  w.add_u16("split.no", static_cast<uint16_t>(s.no));
  w.add_u16("split.count", static_cast<uint16_t>(s.count));
  w.add_i32("split.tensors.count", s.tensors_total);
  std::vector<uint8_t> data(32, 0);
  const int64_t ne[] = {8};
  for (const auto& t : s.tensors) w.add_tensor(t, 0, ne, data);
  ASSERT_TRUE(w.write(path));
}

class GgufSplit : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(testing::TempDir()) / ("split_" + std::to_string(::getpid()) + "_" +
                                           testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(int no, int count) const { return split_path((dir_ / "m").string(), no, count); }
  void write3(std::vector<ShardSpec> specs) {
    for (size_t i = 0; i < specs.size(); ++i) write_shard(path(static_cast<int>(i) + 1, 3), specs[i]);
  }
  fs::path dir_;
};

TEST(SplitName, ParsesTheGgufSplitPattern) {
  SplitName s;
  ASSERT_TRUE(parse_split_name("/x/DeepSeek-V4-Flash-UD-IQ2_XXS-00002-of-00005.gguf", s));
  EXPECT_EQ(s.stem, "/x/DeepSeek-V4-Flash-UD-IQ2_XXS");
  EXPECT_EQ(s.no, 2);
  EXPECT_EQ(s.count, 5);
  EXPECT_EQ(split_path(s.stem, 3, 5), "/x/DeepSeek-V4-Flash-UD-IQ2_XXS-00003-of-00005.gguf");
  EXPECT_FALSE(parse_split_name("model.gguf", s));
  EXPECT_FALSE(parse_split_name("m-00006-of-00005.gguf", s));
  EXPECT_FALSE(parse_split_name("m-0000a-of-00005.gguf", s));
}

TEST_F(GgufSplit, OpensTheWholeSetFromAnyShard) {
  write3({{0, 3, 3, {}}, {1, 3, 3, {"a", "b"}}, {2, 3, 3, {"c"}}});
  for (int from : {1, 2, 3}) {
    auto m = GgufModel::open(path(from, 3));
    ASSERT_TRUE(m) << m.status().to_string();
    EXPECT_EQ(m->n_shards(), 3u);
    EXPECT_EQ(m->tensors().size(), 3u);
    EXPECT_NE(m->find_tensor("c"), nullptr);
    EXPECT_NE(m->find("general.architecture"), nullptr);  // metadata from shard 1
  }
}

// The load mode reaches every shard and the model reports it; the tensors read the same bytes.
TEST_F(GgufSplit, LoadModeReachesEveryShard) {
  write3({{0, 3, 3, {}}, {1, 3, 3, {"a", "b"}}, {2, 3, 3, {"c"}}});
  auto mapped = GgufModel::open(path(1, 3));
  ASSERT_TRUE(mapped) << mapped.status().to_string();
  EXPECT_EQ(mapped->load_mode(), "mmap");
  size_t files = 0;
  for (int i = 1; i <= 3; ++i) files += static_cast<size_t>(fs::file_size(path(i, 3)));
  EXPECT_EQ(mapped->held_bytes(), files);
  GgufParseOptions po;
  po.map = MapOptions{LoadMode::kRead, true};
  auto read = GgufModel::open(path(1, 3), po);
  ASSERT_TRUE(read) << read.status().to_string();
  EXPECT_EQ(read->load_mode(), "read");
  EXPECT_EQ(read->held_bytes(), files);
  EXPECT_LE(read->huge_bytes(), read->held_bytes());
  for (const char* name : {"a", "b", "c"}) {
    const GgufTensorInfo* x = mapped->find_tensor(name);
    const GgufTensorInfo* y = read->find_tensor(name);
    ASSERT_TRUE(x != nullptr && y != nullptr);
    ASSERT_EQ(x->data.size(), y->data.size());
    EXPECT_NE(x->data.data(), y->data.data());
    EXPECT_TRUE(std::equal(x->data.begin(), x->data.end(), y->data.begin()));
  }
}

TEST_F(GgufSplit, MissingShardIsNamed) {
  write3({{0, 3, 3, {}}, {1, 3, 3, {"a", "b"}}, {2, 3, 3, {"c"}}});
  fs::remove(path(2, 3));
  auto m = GgufModel::open(path(1, 3));
  ASSERT_FALSE(m);
  EXPECT_NE(m.status().message().find("shard 2 of 3 is missing"), std::string::npos) << m.status().message();
}

TEST_F(GgufSplit, CountMismatchIsRejected) {
  write3({{0, 3, 3, {}}, {1, 4, 3, {"a", "b"}}, {2, 3, 3, {"c"}}});
  auto m = GgufModel::open(path(1, 3));
  ASSERT_FALSE(m);
  EXPECT_NE(m.status().message().find("do not match its name"), std::string::npos) << m.status().message();
}

TEST_F(GgufSplit, SameShardTwiceIsRejected) {
  write3({{0, 3, 3, {}}, {1, 3, 3, {"a", "b"}}, {1, 3, 3, {"a", "b"}}});
  auto m = GgufModel::open(path(1, 3));
  ASSERT_FALSE(m);
  EXPECT_NE(m.status().message().find("split.no = 1"), std::string::npos) << m.status().message();
}

TEST_F(GgufSplit, DuplicateTensorAcrossShardsIsRejected) {
  write3({{0, 3, 3, {}}, {1, 3, 3, {"a", "b"}}, {2, 3, 3, {"a"}}});
  auto m = GgufModel::open(path(1, 3));
  ASSERT_FALSE(m);
  EXPECT_NE(m.status().message().find("tensor 'a' also appears"), std::string::npos) << m.status().message();
}

TEST_F(GgufSplit, TensorTotalMismatchIsRejected) {
  write3({{0, 3, 4, {}}, {1, 3, 4, {"a", "b"}}, {2, 3, 4, {"c"}}});
  auto m = GgufModel::open(path(1, 3));
  ASSERT_FALSE(m);
  EXPECT_NE(m.status().message().find("split.tensors.count says 4"), std::string::npos) << m.status().message();
}

TEST_F(GgufSplit, DifferentModelsAreRejected) {
  write3({{0, 3, 3, {}}, {1, 3, 5, {"a", "b"}}, {2, 3, 3, {"c"}}});
  auto m = GgufModel::open(path(1, 3));
  ASSERT_FALSE(m);
  EXPECT_NE(m.status().message().find("different models"), std::string::npos) << m.status().message();
}

TEST_F(GgufSplit, SplitKeysWithoutASplitNameAreRejected) {
  const std::string p = (dir_ / "renamed.gguf").string();
  write_shard(p, {0, 3, 3, {}});
  auto m = GgufModel::open(p);
  ASSERT_FALSE(m);
  EXPECT_NE(m.status().message().find("cannot be found"), std::string::npos) << m.status().message();
}

}  // namespace
}  // namespace dsv4
