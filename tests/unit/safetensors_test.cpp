// safetensors reader: the official-format fixture checkpoint (dsv4-architecture.md §3.1 layout
// rules) and hand-made hostile headers (the safetensors invariants).
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "dsv4/format/safetensors.h"

namespace dsv4 {
namespace {

std::vector<uint8_t> make(const std::string& header, size_t data_bytes) {
  std::vector<uint8_t> b(8 + header.size() + data_bytes, 0);
  const uint64_t n = header.size();
  std::memcpy(b.data(), &n, 8);
  std::memcpy(b.data() + 8, header.data(), header.size());
  return b;
}

std::string error_of(const std::vector<uint8_t>& b) {
  auto r = SafetensorsFile::parse(b, "t.safetensors");
  return r ? "(accepted)" : r.status().message();
}

TEST(Safetensors, OfficialFormatFixture) {
  auto f = SafetensorsFile::open(std::string(DSV4_FIXTURES_DIR) + "/tiny-quant/model.safetensors");
  ASSERT_TRUE(f) << f.status().to_string();
  int fp8 = 0, fp4 = 0;
  for (const auto& t : f->tensors()) {
    const std::string& n = t.name;
    if (t.dtype == StDtype::kF8E4M3) {
      // FP8 weight [out, in] with an E8M0 scale per 128x128 tile
      const auto* s = f->find(n.substr(0, n.size() - 7) + ".scale");
      ASSERT_NE(s, nullptr) << n;
      EXPECT_EQ(s->dtype, StDtype::kF8E8M0) << n;
      ASSERT_EQ(t.shape.size(), 2u);
      EXPECT_EQ(s->shape, (std::vector<int64_t>{(t.shape[0] + 127) / 128, (t.shape[1] + 127) / 128})) << n;
      ++fp8;
    } else if (t.dtype == StDtype::kI8 && n.find(".experts.") != std::string::npos) {
      // FP4 expert [out, in/2] bytes with an E8M0 scale per 32 inputs
      const auto* s = f->find(n.substr(0, n.size() - 7) + ".scale");
      ASSERT_NE(s, nullptr) << n;
      EXPECT_EQ(s->shape, (std::vector<int64_t>{t.shape[0], t.shape[1] * 2 / 32})) << n;
      ++fp4;
    }
  }
  EXPECT_GT(fp8, 0);
  EXPECT_GT(fp4, 0);
  const StTensor* tid = nullptr;
  for (const auto& t : f->tensors()) {
    if (t.name.find("tid2eid") != std::string::npos) tid = &t;
  }
  ASSERT_NE(tid, nullptr);
  EXPECT_EQ(tid->dtype, StDtype::kI64);
}

TEST(Safetensors, ValidMinimal) {
  auto b = make(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                R"("b":{"dtype":"F8_E8M0","shape":[3],"data_offsets":[8,11]},"__metadata__":{"format":"pt"}})",
                11);
  auto r = SafetensorsFile::parse(b, "t");
  ASSERT_TRUE(r) << r.status().to_string();
  EXPECT_EQ(r->tensors().size(), 2u);
  EXPECT_EQ(r->metadata().at("format"), "pt");
  EXPECT_EQ(r->find("b")->data.size(), 3u);
}

TEST(Safetensors, HostileHeaders) {
  struct Case {
    std::string header;
    size_t data;
    std::string want;
  };
  const std::vector<Case> cases = {
      {"{", 0, "not a JSON object"},
      {"[]", 0, "not a JSON object"},
      {R"({"a":{"dtype":"F31","shape":[1],"data_offsets":[0,4]}})", 4, "unknown dtype"},
      {R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4, "not a count"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4, "do not hold 2 x F32"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8, "(gap)"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       8, "(overlap)"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 8, "data section has 8 bytes"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 2, "exceeds the data section"},
      {R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,4]}})", 4, "overflows"},
      {R"({"a":{"dtype":"F32","shape":[1]}})", 4, "needs dtype, shape and data_offsets"},
      {R"({"__metadata__":{"k":1}})", 0, "is not a string"},
  };
  for (const auto& c : cases) {
    const std::string e = error_of(make(c.header, c.data));
    EXPECT_NE(e.find(c.want), std::string::npos) << c.header << " -> " << e;
  }
  // header length beyond the file / beyond 100 MiB
  std::vector<uint8_t> huge(16, 0);
  const uint64_t n = uint64_t{1} << 40;
  std::memcpy(huge.data(), &n, 8);
  EXPECT_NE(error_of(huge).find("exceeds 100 MiB"), std::string::npos);
  const uint64_t m = 100;
  std::memcpy(huge.data(), &m, 8);
  EXPECT_NE(error_of(huge).find("exceeds the 8 bytes after it"), std::string::npos);
  EXPECT_NE(error_of({1, 2, 3}).find("truncated"), std::string::npos);
}

TEST(Safetensors, EveryTruncationOfTheFixtureHeaderIsRejected) {
  auto b = make(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8);
  for (size_t k = 0; k < b.size(); ++k) {
    std::vector<uint8_t> p(b.begin(), b.begin() + static_cast<ptrdiff_t>(k));
    EXPECT_FALSE(SafetensorsFile::parse(p, "t")) << k;
  }
}

}  // namespace
}  // namespace dsv4
