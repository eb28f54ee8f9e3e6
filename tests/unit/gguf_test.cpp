// GGUF reader: round trip of every metadata type through our writer, and the container-level
// hostile-file classes of reliability.md §C.1 (G1-G9). The architecture-level classes (G10-G13)
// belong to the model-files issue.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "dsv4/format/gguf.h"
#include "dsv4/format/gguf_writer.h"

namespace dsv4 {
namespace {

std::vector<uint8_t> f32_bytes(size_t n, float start = 0) {
  std::vector<uint8_t> b(n * 4);
  for (size_t i = 0; i < n; ++i) {
    float v = start + static_cast<float>(i);
    std::memcpy(b.data() + 4 * i, &v, 4);
  }
  return b;
}

// A small valid file with every metadata type and three tensors.
std::vector<uint8_t> sample_file() {
  GgufWriter w;
  w.add_string("general.architecture", "deepseek4");
  w.add_u8("t.u8", 200);
  w.add_i8("t.i8", -100);
  w.add_u16("t.u16", 60000);
  w.add_i16("t.i16", -30000);
  w.add_u32("t.u32", 4000000000u);
  w.add_i32("t.i32", -2000000000);
  w.add_u64("t.u64", 1ull << 60);
  w.add_i64("t.i64", -(1ll << 60));
  w.add_f32("t.f32", 1.5f);
  w.add_f64("t.f64", -2.25);
  w.add_bool("t.bool", true);
  const int32_t ratios[] = {0, 4, 128, 4, 0};
  w.add_array_i32("deepseek4.attention.compress_ratios", ratios);
  const float fa[] = {10.f, 10.f};
  w.add_array_f32("t.farr", fa);
  const std::vector<std::string> strs = {"a", "", "<｜User｜>"};
  w.add_array_string("t.sarr", strs);
  const int64_t ne1[] = {8};
  const int64_t ne2[] = {4, 3};
  const int64_t ne3[] = {64, 2};
  auto d1 = f32_bytes(8);
  auto d2 = f32_bytes(12, 100);
  std::vector<uint8_t> d3(2 * 2 * 34, 0x11);  // two q8_0 rows of 64 = 2 blocks each
  w.add_tensor("a", 0, ne1, d1);
  w.add_tensor("b", 0, ne2, d2);
  w.add_tensor("c", 8, ne3, d3);
  return w.bytes();
}

TEST(Gguf, RoundTripEveryType) {
  const auto bytes = sample_file();
  auto r = GgufFile::parse(bytes);
  ASSERT_TRUE(r) << r.status().to_string();
  const GgufFile& f = r.value();
  EXPECT_EQ(f.version(), 3u);
  EXPECT_EQ(*f.get_string("general.architecture"), "deepseek4");
  EXPECT_EQ(*f.find("t.u8")->as_u64(), 200u);
  EXPECT_EQ(*f.find("t.i8")->as_i64(), -100);
  EXPECT_EQ(*f.find("t.u16")->as_u64(), 60000u);
  EXPECT_EQ(*f.find("t.i16")->as_i64(), -30000);
  EXPECT_EQ(*f.get_u64("t.u32"), 4000000000u);
  EXPECT_EQ(*f.find("t.i32")->as_i64(), -2000000000);
  EXPECT_FALSE(f.find("t.i32")->as_u64().has_value());
  EXPECT_EQ(*f.get_u64("t.u64"), 1ull << 60);
  EXPECT_EQ(*f.find("t.i64")->as_i64(), -(1ll << 60));
  EXPECT_EQ(*f.get_f64("t.f32"), 1.5);
  EXPECT_EQ(*f.get_f64("t.f64"), -2.25);
  EXPECT_EQ(*f.find("t.bool")->as_bool(), true);
  auto ratios = f.find("deepseek4.attention.compress_ratios")->as_i64_array();
  ASSERT_TRUE(ratios);
  EXPECT_EQ(*ratios, (std::vector<int64_t>{0, 4, 128, 4, 0}));
  EXPECT_EQ(f.find("deepseek4.attention.compress_ratios")->type_string(), "arr[i32,5]");
  EXPECT_EQ(*f.find("t.farr")->as_f64_array(), (std::vector<double>{10.0, 10.0}));
  auto s = f.find("t.sarr")->as_string_array();
  ASSERT_TRUE(s);
  ASSERT_EQ(s->size(), 3u);
  EXPECT_EQ((*s)[2], "<｜User｜>");
  EXPECT_FALSE(f.find("t.sarr")->as_i64_array().has_value());

  ASSERT_EQ(f.tensors().size(), 3u);
  const GgufTensorInfo* b = f.find_tensor("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->ne[0], 4);
  EXPECT_EQ(b->ne[1], 3);
  EXPECT_EQ(b->n_bytes, 48u);
  float v;
  std::memcpy(&v, b->data.data() + 4 * 5, 4);
  EXPECT_EQ(v, 105.f);
  const GgufTensorInfo* c = f.find_tensor("c");
  EXPECT_EQ(c->type->name, "q8_0");
  EXPECT_EQ(c->n_bytes, 136u);
  EXPECT_EQ(f.data_offset() % 32, 0u);
}

TEST(Gguf, TypedGettersNameTheKey) {
  const auto bytes = sample_file();
  auto f = GgufFile::parse(bytes);
  ASSERT_TRUE(f);
  auto missing = f->get_u64("deepseek4.block_count");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.status().code(), ErrorCode::kNotFound);
  EXPECT_NE(missing.status().message().find("deepseek4.block_count"), std::string::npos);
  auto wrong = f->get_u64("general.architecture");
  ASSERT_FALSE(wrong);
  EXPECT_NE(wrong.status().message().find("expected a non-negative integer, got string"),
            std::string::npos);
}

// G1: every prefix of a valid file is rejected with a message, never a crash.
TEST(Gguf, EveryTruncationIsRejected) {
  const auto bytes = sample_file();
  auto full = GgufFile::parse(bytes);
  ASSERT_TRUE(full);
  // Padding after the last tensor is not data: every prefix shorter than the last tensor's end
  // must be rejected.
  const auto& last = full->tensors().back();
  const size_t needed = full->data_offset() + last.offset + last.n_bytes;
  for (size_t n = 0; n < needed; ++n) {
    std::vector<uint8_t> prefix(bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(n));
    auto r = GgufFile::parse(prefix);
    ASSERT_FALSE(r) << "prefix of " << n << " bytes accepted";
    EXPECT_FALSE(r.status().message().empty());
  }
}

TEST(Gguf, HeaderOnlyParseAcceptsMissingData) {
  auto bytes = sample_file();
  auto full = GgufFile::parse(bytes);
  ASSERT_TRUE(full);
  bytes.resize(full->data_offset());
  GgufParseOptions opts;
  opts.require_data = false;
  auto r = GgufFile::parse(bytes, opts);
  ASSERT_TRUE(r) << r.status().to_string();
  EXPECT_EQ(r->tensors().size(), 3u);
  EXPECT_TRUE(r->tensors()[0].data.empty());
}

// Helpers to hand-craft headers.
struct Raw {
  std::vector<uint8_t> b;
  template <class T>
  Raw& put(T v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    b.insert(b.end(), p, p + sizeof v);
    return *this;
  }
  Raw& str(std::string_view s) {
    put<uint64_t>(s.size());
    b.insert(b.end(), s.begin(), s.end());
    return *this;
  }
  Raw& header(uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    b.insert(b.end(), {'G', 'G', 'U', 'F'});
    return put(version).put(n_tensors).put(n_kv);
  }
};

std::string parse_error(const std::vector<uint8_t>& b) {
  auto r = GgufFile::parse(b);
  return r ? std::string("(accepted)") : r.status().message();
}

TEST(Gguf, G2BadMagicAndVersions) {
  EXPECT_NE(parse_error({'G', 'G', 'U', 'G', 3, 0, 0, 0}).find("bad magic"), std::string::npos);
  for (uint32_t v : {0u, 1u, 4u, 0x03000000u}) {
    Raw r;
    r.header(v, 0, 0);
    EXPECT_NE(parse_error(r.b).find("unsupported GGUF version " + std::to_string(v)),
              std::string::npos);
  }
  Raw v2;
  v2.header(2, 0, 0);
  EXPECT_EQ(parse_error(v2.b), "(accepted)");
}

TEST(Gguf, G3HugeCountsRejectedBeforeAllocation) {
  for (uint64_t n : {uint64_t{1} << 63, ~uint64_t{0}, uint64_t{1000}}) {
    Raw kv;
    kv.header(3, 0, n);
    EXPECT_NE(parse_error(kv.b).find("n_kv"), std::string::npos);
    Raw t;
    t.header(3, n, 0);
    EXPECT_NE(parse_error(t.b).find("n_tensors"), std::string::npos);
  }
}

TEST(Gguf, G4KeysAndStrings) {
  {  // huge key length
    Raw r;
    r.header(3, 0, 1).put<uint64_t>(~uint64_t{0}).put<uint32_t>(4).put<uint32_t>(1);
    EXPECT_NE(parse_error(r.b).find("metadata key"), std::string::npos);
  }
  {  // empty key
    Raw r;
    r.header(3, 0, 1).str("").put<uint32_t>(4).put<uint32_t>(1);
    EXPECT_NE(parse_error(r.b).find("empty metadata key"), std::string::npos);
  }
  {  // invalid UTF-8 key
    Raw r;
    r.header(3, 0, 1).str("bad\xff").put<uint32_t>(4).put<uint32_t>(1);
    EXPECT_NE(parse_error(r.b).find("not valid UTF-8"), std::string::npos);
  }
  {  // duplicate key
    Raw r;
    r.header(3, 0, 2).str("k").put<uint32_t>(4).put<uint32_t>(1).str("k").put<uint32_t>(4).put<uint32_t>(2);
    EXPECT_NE(parse_error(r.b).find("duplicate metadata key 'k'"), std::string::npos);
  }
  {  // string value longer than the file
    Raw r;
    r.header(3, 0, 1).str("k").put<uint32_t>(8).put<uint64_t>(1000).put<uint32_t>(0);
    EXPECT_NE(parse_error(r.b).find("truncated"), std::string::npos);
  }
  {  // string value over the cap
    Raw r;
    r.header(3, 0, 1).str("k").put<uint32_t>(8).put<uint64_t>(uint64_t{1} << 40);
    EXPECT_NE(parse_error(r.b).find("limit"), std::string::npos);
  }
}

TEST(Gguf, G5TypeTraps) {
  {  // unknown value type
    Raw r;
    r.header(3, 0, 1).str("k").put<uint32_t>(13).put<uint32_t>(0);
    EXPECT_NE(parse_error(r.b).find("unknown value type 13"), std::string::npos);
  }
  {  // array of arrays
    Raw r;
    r.header(3, 0, 1).str("k").put<uint32_t>(9).put<uint32_t>(9).put<uint64_t>(1);
    EXPECT_NE(parse_error(r.b).find("arrays of arrays"), std::string::npos);
  }
  {  // array count larger than the bytes left
    Raw r;
    r.header(3, 0, 1).str("k").put<uint32_t>(9).put<uint32_t>(4).put<uint64_t>(1000).put<uint32_t>(0);
    EXPECT_NE(parse_error(r.b).find("truncated"), std::string::npos);
  }
  {  // bool that is not 0/1
    Raw r;
    r.header(3, 0, 1).str("k").put<uint32_t>(7).put<uint8_t>(2);
    EXPECT_NE(parse_error(r.b).find("bool value 2"), std::string::npos);
  }
}

TEST(Gguf, G6Alignment) {
  auto with_alignment = [](auto add) {
    GgufWriter w;
    add(w);
    return parse_error(w.bytes());
  };
  EXPECT_NE(with_alignment([](GgufWriter& w) { w.add_u32("general.alignment", 0); }).find("power of two"),
            std::string::npos);
  EXPECT_NE(with_alignment([](GgufWriter& w) { w.add_u32("general.alignment", 13); }).find("power of two"),
            std::string::npos);
  EXPECT_NE(with_alignment([](GgufWriter& w) { w.add_u32("general.alignment", 1u << 31); })
                .find("power of two"),
            std::string::npos);
  EXPECT_NE(with_alignment([](GgufWriter& w) { w.add_i32("general.alignment", 32); })
                .find("expected u32, got i32"),
            std::string::npos);
  EXPECT_EQ(with_alignment([](GgufWriter& w) { w.add_u32("general.alignment", 64); }), "(accepted)");
}

Raw one_tensor(std::string_view name, std::vector<uint64_t> ne, uint32_t type, uint64_t offset) {
  Raw r;
  r.header(3, 1, 0).str(name).put<uint32_t>(static_cast<uint32_t>(ne.size()));
  for (uint64_t d : ne) r.put(d);
  r.put(type).put(offset);
  r.b.resize((r.b.size() + 31) / 32 * 32, 0);
  return r;
}

TEST(Gguf, G7TensorInfoTraps) {
  EXPECT_NE(parse_error(one_tensor("t", {}, 0, 0).b).find("n_dims = 0"), std::string::npos);
  EXPECT_NE(parse_error(one_tensor("t", {1, 1, 1, 1, 1}, 0, 0).b).find("n_dims = 5"), std::string::npos);
  EXPECT_NE(parse_error(one_tensor("t", {4, 0}, 0, 0).b).find("dimension 1 = 0"), std::string::npos);
  EXPECT_NE(parse_error(one_tensor("t", {uint64_t(1) << 41}, 0, 0).b).find("dimension 0"),
            std::string::npos);
  EXPECT_NE(parse_error(one_tensor("t", {4, (1u << 30) - 1, (1u << 30) + 1, 1 << 20}, 0, 0).b)
                .find("overflows"),
            std::string::npos);
  EXPECT_NE(parse_error(one_tensor("t", {33}, 8, 0).b).find("not a multiple of the q8_0 block size 32"),
            std::string::npos);
  EXPECT_NE(parse_error(one_tensor("t", {32}, 4, 0).b).find("unknown ggml type id 4"), std::string::npos);
  EXPECT_NE(parse_error(one_tensor("t", {32}, 1000, 0).b).find("unknown ggml type id 1000"),
            std::string::npos);
  EXPECT_NE(parse_error(one_tensor(std::string(300, 'x'), {32}, 0, 0).b).find("tensor name"),
            std::string::npos);
  // duplicate names
  GgufWriter w;
  auto d = f32_bytes(8);
  const int64_t ne[] = {8};
  w.add_tensor("same", 0, ne, d);
  w.add_tensor("same", 0, ne, d);
  EXPECT_NE(parse_error(w.bytes()).find("duplicate tensor name 'same'"), std::string::npos);
}

TEST(Gguf, G8OffsetsOutOfRange) {
  for (uint64_t off : {uint64_t{4096}, ~uint64_t{0} - 31, uint64_t{32}}) {
    Raw r = one_tensor("t", {8}, 0, off);
    r.b.resize(r.b.size() + 32, 0);  // 32 bytes of data: enough for one f32[8] at offset 0
    const std::string e = parse_error(r.b);
    EXPECT_TRUE(e.find("exceeds the data section") != std::string::npos ||
                e.find("overflows") != std::string::npos)
        << off << ": " << e;
  }
  Raw unaligned = one_tensor("t", {8}, 0, 3);
  unaligned.b.resize(unaligned.b.size() + 64, 0);
  EXPECT_NE(parse_error(unaligned.b).find("not a multiple of the alignment"), std::string::npos);
}

TEST(Gguf, G9OverlappingTensors) {
  Raw r;
  r.header(3, 2, 0);
  for (const char* n : {"x", "y"}) r.str(n).put<uint32_t>(1).put<uint64_t>(16).put<uint32_t>(0).put<uint64_t>(32);
  r.b.resize((r.b.size() + 31) / 32 * 32 + 128, 0);
  EXPECT_NE(parse_error(r.b).find("overlap"), std::string::npos);
}

TEST(Gguf, G14NonRegularPaths) {
  auto dir = GgufFile::open("/tmp");
  ASSERT_FALSE(dir);
  EXPECT_NE(dir.status().message().find("not a regular file"), std::string::npos);
  auto missing = GgufFile::open("/nonexistent/model.gguf");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.status().code(), ErrorCode::kIo);
}

}  // namespace
}  // namespace dsv4

namespace dsv4 {
namespace {

// Copying every value of a parsed file through add_value reproduces the file byte for byte.
TEST(Gguf, AddValueCopiesEveryTypeExactly) {
  const auto bytes = sample_file();
  auto f = GgufFile::parse(bytes);
  ASSERT_TRUE(f);
  GgufWriter w;
  for (const auto& kv : f->metadata()) w.add_value(kv.key, kv.value);
  for (const auto& t : f->tensors()) {
    w.add_tensor(t.name, t.type_id, std::span<const int64_t>(t.ne, t.n_dims), t.data);
  }
  EXPECT_EQ(w.bytes(), bytes);
}

}  // namespace
}  // namespace dsv4

namespace dsv4 {
namespace {

// Type id 42: F8_E4M3_B128 only with file type 41 and 129 bytes per 128 elements; else Q2_0.
std::vector<uint8_t> type42_file(uint32_t file_type, int64_t n, uint64_t bytes_per_tensor) {
  GgufWriter w;
  w.add_u32("general.file_type", file_type);
  std::vector<uint8_t> data(bytes_per_tensor, 0x38);
  const int64_t ne[] = {n};
  w.add_tensor("x", 42, ne, data);
  w.add_tensor("y", 42, ne, data);
  return w.bytes();
}

TEST(Gguf, Type42IsF8E4M3B128OnlyWhenTheFileProvesIt) {
  const auto f8 = type42_file(41, 256, 2 * 129);
  auto r = GgufFile::parse(f8);
  ASSERT_TRUE(r) << r.status().to_string();
  EXPECT_EQ(r->tensors()[0].type->name, "f8_e4m3_b128");
  EXPECT_EQ(r->tensors()[1].n_bytes, 258u);

  // Same layout without file type 41: not proven, and 258 bytes for 256 elements is not Q2_0.
  auto no_ft = type42_file(7, 256, 2 * 129);
  auto r2 = GgufFile::parse(no_ft);
  ASSERT_FALSE(r2);
  EXPECT_NE(r2.status().message().find("general.file_type is 7, not 41"), std::string::npos)
      << r2.status().message();

  // Upstream Q2_0 (18 bytes per 64) even under file type 41 (upstream's MOSTLY_Q2_0 is 41 too).
  auto q2 = type42_file(41, 256, 4 * 18);
  auto r3 = GgufFile::parse(q2);
  ASSERT_TRUE(r3) << r3.status().to_string();
  EXPECT_EQ(r3->tensors()[0].type->name, "q2_0");
}

}  // namespace
}  // namespace dsv4
