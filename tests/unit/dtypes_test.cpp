// dsv4/core/dtypes.h against ml_dtypes (tests/fixtures/dtypes, made by
// scripts/fixtures/make_dtype_tables.py). Exact: decoding and RNE encoding are bit-defined, so
// the only tolerance is NaN == NaN (any NaN payload).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>

#include "dsv4/core/dtypes.h"
#include "dsv4/format/npy.h"

namespace dsv4 {
namespace {

NpyArray load(const std::string& name) {
  auto r = npy_read(std::string(DSV4_FIXTURES_DIR) + "/dtypes/" + name);
  if (!r) ADD_FAILURE() << r.status().to_string();
  return r ? std::move(r).value() : NpyArray{};
}

void expect_same_float(float want, float got, const std::string& what) {
  if (std::isnan(want)) {
    EXPECT_TRUE(std::isnan(got)) << what << ": want NaN, got " << got;
  } else {
    // bitwise, so -0 vs +0 counts
    EXPECT_EQ(f32_to_bits(want), f32_to_bits(got)) << what << ": want " << want << " got " << got;
  }
}

template <class Decode>
void check_decode(const std::string& file, int64_t n, Decode decode) {
  NpyArray t = load(file);
  ASSERT_EQ(t.descr, "<f4");
  ASSERT_EQ(t.size(), n);
  for (int64_t k = 0; k < n; ++k) {
    expect_same_float(static_cast<float>(t.as_f64(k)), decode(static_cast<uint32_t>(k)),
                      file + " code " + std::to_string(k));
  }
}

template <class Encode>
void check_encode(const std::string& name, Encode encode) {
  NpyArray in = load(name + "_encode_in.npy");
  NpyArray out = load(name + "_encode_out.npy");
  ASSERT_EQ(in.size(), out.size());
  ASSERT_GT(in.size(), 1000);
  int64_t bad = 0;
  for (int64_t k = 0; k < in.size(); ++k) {
    const float x = static_cast<float>(in.as_f64(k));
    const int64_t want = out.as_i64(k);
    const int64_t got = encode(x);
    if (want != got && ++bad <= 10) {
      ADD_FAILURE() << name << " encode(" << x << " = 0x" << std::hex << f32_to_bits(x)
                    << "): want 0x" << want << " got 0x" << got << std::dec;
    }
  }
  EXPECT_EQ(bad, 0) << name << ": " << bad << " of " << in.size() << " encodings differ";
}

TEST(Dtypes, DecodeE4m3fnMatchesMlDtypes) {
  check_decode("e4m3fn_decode.npy", 256, [](uint32_t c) { return e4m3fn_to_f32(uint8_t(c)); });
}
TEST(Dtypes, DecodeE8m0MatchesMlDtypes) {
  check_decode("e8m0_decode.npy", 256, [](uint32_t c) { return e8m0_to_f32(uint8_t(c)); });
}
TEST(Dtypes, DecodeE2m1MatchesMlDtypes) {
  check_decode("e2m1_decode.npy", 16, [](uint32_t c) { return e2m1_to_f32(uint8_t(c)); });
}
TEST(Dtypes, DecodeBf16MatchesMlDtypes) {
  check_decode("bf16_decode.npy", 65536, [](uint32_t c) { return bf16_to_f32(uint16_t(c)); });
}
TEST(Dtypes, DecodeF16MatchesNumpy) {
  check_decode("f16_decode.npy", 65536, [](uint32_t c) { return fp16_to_f32(uint16_t(c)); });
}

TEST(Dtypes, EncodeE4m3fnMatchesMlDtypes) {
  check_encode("e4m3fn", [](float x) { return int64_t{f32_to_e4m3fn(x)}; });
}
TEST(Dtypes, EncodeE2m1MatchesMlDtypes) {
  check_encode("e2m1", [](float x) { return int64_t{f32_to_e2m1(x)}; });
}
TEST(Dtypes, EncodeBf16MatchesMlDtypes) {
  check_encode("bf16", [](float x) { return int64_t{f32_to_bf16(x)}; });
}
TEST(Dtypes, EncodeF16MatchesNumpy) {
  check_encode("f16", [](float x) { return int64_t{f32_to_fp16(x)}; });
}

// A few values written out, so a regenerated table cannot silently move the goalposts.
TEST(Dtypes, KnownValues) {
  EXPECT_EQ(e4m3fn_to_f32(0x7e), 448.0f);
  EXPECT_EQ(e4m3fn_to_f32(0x01), 0.001953125f);  // smallest subnormal 2^-9
  EXPECT_TRUE(std::isnan(e4m3fn_to_f32(0xff)));
  EXPECT_EQ(e8m0_to_f32(127), 1.0f);
  EXPECT_EQ(e8m0_to_f32(0), std::ldexp(1.0f, -127));
  EXPECT_EQ(e8m0_to_f32(254), std::ldexp(1.0f, 127));
  EXPECT_TRUE(std::isnan(e8m0_to_f32(255)));
  const float e2m1[16] = {0, .5f, 1, 1.5f, 2, 3, 4, 6, -0.f, -.5f, -1, -1.5f, -2, -3, -4, -6};
  for (uint8_t c = 0; c < 16; ++c) EXPECT_EQ(e2m1_to_f32(c), e2m1[c]) << int(c);
}

}  // namespace
}  // namespace dsv4
