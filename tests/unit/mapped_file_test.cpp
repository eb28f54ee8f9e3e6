// MappedFile: every load mode gives the file's exact bytes, reports how it holds them, and fails
// with the path and the OS reason (mapped_file.h).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "dsv4/core/mapped_file.h"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

class MappedFileTest : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(testing::TempDir()) / ("mapped_" + std::to_string(::getpid()) + "_" +
                                           testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::vector<uint8_t>& bytes) {
    const fs::path p = dir_ / name;
    std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()),
                                              static_cast<std::streamsize>(bytes.size()));
    return p.string();
  }

  fs::path dir_;
};

std::vector<uint8_t> random_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint8_t> v(n);
  for (auto& b : v) b = static_cast<uint8_t>(rng());
  return v;
}

// 5 MiB + 123 bytes: more than two 2 MiB pages and not a multiple of any page size.
TEST_F(MappedFileTest, EveryModeGivesTheExactBytes) {
  const std::vector<uint8_t> want = random_bytes((size_t{5} << 20) + 123, 7);
  const std::string path = write("w.bin", want);
  for (LoadMode mode : {LoadMode::kMmap, LoadMode::kRead, LoadMode::kAuto}) {
    for (bool huge : {false, true}) {
      SCOPED_TRACE(std::string(load_mode_name(mode)) + (huge ? " + hugepages" : ""));
      auto mf = MappedFile::open(path, MapOptions{mode, huge});
      ASSERT_TRUE(mf) << mf.status().to_string();
      ASSERT_EQ(mf->size(), want.size());
      EXPECT_TRUE(std::equal(want.begin(), want.end(), mf->data().begin()));
      EXPECT_EQ(mf->path(), path);
      EXPECT_NE(mf->mode(), LoadMode::kAuto);  // always resolved
      if (mode != LoadMode::kAuto) {
        EXPECT_EQ(mf->mode(), mode);
      }
      EXPECT_LE(mf->huge_bytes(), mf->size());
      if (!huge) {
        EXPECT_EQ(mf->huge_bytes(), 0u);
      }
      if (huge && mf->mode() == LoadMode::kMmap) {
        EXPECT_EQ(reinterpret_cast<uintptr_t>(mf->data().data()) % (uintptr_t{2} << 20), 0u)
            << "the huge-page mapping must be 2 MiB-aligned";
      }
    }
  }
}

// A small file fits in half of any test machine's memory: auto reads it (when /proc/meminfo is
// there to say so).
TEST_F(MappedFileTest, AutoReadsAFileThatFitsInMemory) {
  if (!fs::exists("/proc/meminfo")) GTEST_SKIP() << "no /proc/meminfo";
  const std::string path = write("s.bin", random_bytes(4096, 1));
  auto mf = MappedFile::open(path, MapOptions{LoadMode::kAuto, true});
  ASSERT_TRUE(mf) << mf.status().to_string();
  EXPECT_EQ(mf->mode(), LoadMode::kRead);
}

TEST_F(MappedFileTest, EmptyFileGivesEmptySpanInEveryMode) {
  const std::string path = write("e.bin", {});
  for (LoadMode mode : {LoadMode::kMmap, LoadMode::kRead, LoadMode::kAuto}) {
    auto mf = MappedFile::open(path, MapOptions{mode, true});
    ASSERT_TRUE(mf) << mf.status().to_string();
    EXPECT_EQ(mf->size(), 0u);
    EXPECT_TRUE(mf->data().empty());
  }
}

TEST_F(MappedFileTest, MoveKeepsTheBytes) {
  const std::vector<uint8_t> want = random_bytes(100000, 3);
  const std::string path = write("m.bin", want);
  for (LoadMode mode : {LoadMode::kMmap, LoadMode::kRead}) {
    auto mf = MappedFile::open(path, MapOptions{mode, true});
    ASSERT_TRUE(mf);
    MappedFile a = std::move(mf).value();
    MappedFile b;
    b = std::move(a);
    EXPECT_TRUE(a.data().empty());
    ASSERT_EQ(b.size(), want.size());
    EXPECT_EQ(b.mode(), mode);
    EXPECT_TRUE(std::equal(want.begin(), want.end(), b.data().begin()));
  }
}

TEST_F(MappedFileTest, ErrorsNameThePathAndTheReason) {
  const std::string missing = (dir_ / "nope.bin").string();
  for (LoadMode mode : {LoadMode::kMmap, LoadMode::kRead, LoadMode::kAuto}) {
    auto r = MappedFile::open(missing, MapOptions{mode, true});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.status().code(), ErrorCode::kIo);
    EXPECT_NE(r.status().message().find(missing), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("No such file"), std::string::npos) << r.status().message();
    auto d = MappedFile::open(dir_.string(), MapOptions{mode, true});
    ASSERT_FALSE(d);
    EXPECT_NE(d.status().message().find("not a regular file"), std::string::npos) << d.status().message();
  }
}

TEST(LoadMode, Names) {
  EXPECT_STREQ(load_mode_name(LoadMode::kAuto), "auto");
  EXPECT_STREQ(load_mode_name(LoadMode::kMmap), "mmap");
  EXPECT_STREQ(load_mode_name(LoadMode::kRead), "read");
}

}  // namespace
}  // namespace dsv4
