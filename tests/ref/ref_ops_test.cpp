// Unit checks of the scalar reference ops (dsv4::ref) on hand-computed values.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "dsv4/backend/ref/ref_model.h"
#include "dsv4/model/model.h"

namespace {

using namespace dsv4::ref;

TEST(RefOps, Fp8RoundTripGridAndTies) {
  // block amax 448 → scale 1: values land on the e4m3 grid, ties to even mantissa.
  std::vector<double> x(64, 0.0);
  x[0] = 448;
  x[1] = 15.5;    // between 15 (odd mantissa) and 16 → 16
  x[2] = 14.5;    // between 14 and 15 → 14 (even)
  x[3] = 0.3;     // [0.25, 0.5): step 1/32 → 0.3125 (9.6 → 10)
  x[4] = 0.001;   // subnormal step 2^-9: 0.512 → 1 → 2^-9
  x[5] = -300;    // [256, 448]: step 32 → −288 (9.375 → 9)
  fp8_roundtrip(x, 64);
  EXPECT_EQ(x[0], 448);
  EXPECT_EQ(x[1], 16);
  EXPECT_EQ(x[2], 14);
  EXPECT_EQ(x[3], 0.3125);
  EXPECT_EQ(x[4], std::ldexp(1.0, -9));
  EXPECT_EQ(x[5], -288);
}

TEST(RefOps, Fp4RoundTripGridAndTies) {
  // amax 6 → scale 1; e2m1 grid {0, .5, 1, 1.5, 2, 3, 4, 6}.
  std::vector<double> x = {6, 0.25, 0.75, 1.25, 2.5, 3.5, 5, -1.74, 0, 0, 0, 0, 0, 0, 0, 0,
                           0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  fp4_roundtrip(x, 32);
  const std::vector<double> want = {6, 0, 1, 1, 2, 4, 4, -1.5};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(x[i], want[i]) << i;
  // amax 12 → scale 2
  std::vector<double> y(32, 0.0);
  y[0] = 12;
  y[1] = 5;  // 2.5 → 2 → 4
  fp4_roundtrip(y, 32);
  EXPECT_EQ(y[0], 12);
  EXPECT_EQ(y[1], 4);
}

TEST(RefOps, HadamardIsOrthonormalInvolution) {
  std::vector<double> x(128);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37 * static_cast<double>(i)) + 0.1;
  std::vector<double> y = x;
  hadamard(y);
  double nx = 0, ny = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    nx += x[i] * x[i];
    ny += y[i] * y[i];
  }
  EXPECT_NEAR(nx, ny, 1e-4 * nx);
  hadamard(y);  // H/√n is its own inverse
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(y[i], x[i], 1e-5);
  // first row of the Sylvester matrix is all ones
  std::vector<double> e(8, 0.0);
  e[0] = 1;
  hadamard(e);
  for (double v : e) EXPECT_NEAR(v, 1 / std::sqrt(8.0), 1e-7);
}

TEST(RefOps, RopeInverseAndYarnRegimes) {
  const std::vector<float> plain = dsv4::model::rope_frequencies(64, 10000.0f, false, 1, 0, 0, 0);
  const std::vector<float> yarn = dsv4::model::rope_frequencies(64, 160000.0f, true, 16.0f, 65536, 32.0f, 1.0f);
  const std::vector<float> base = dsv4::model::rope_frequencies(64, 160000.0f, false, 1, 0, 0, 0);
  ASSERT_EQ(yarn.size(), 32u);
  EXPECT_FLOAT_EQ(plain[1], 1.0f / std::pow(10000.0f, 2.0f / 64.0f));
  // §7.1: low = 15, high = 25 for base 160000: pairs ≤ 15 unchanged, ≥ 25 divided by 16
  for (int i = 0; i <= 15; ++i) EXPECT_FLOAT_EQ(yarn[static_cast<size_t>(i)], base[static_cast<size_t>(i)]) << i;
  for (int i = 25; i < 32; ++i) EXPECT_FLOAT_EQ(yarn[static_cast<size_t>(i)], base[static_cast<size_t>(i)] / 16) << i;
  EXPECT_LT(yarn[20], base[20]);
  EXPECT_GT(yarn[20], base[20] / 16);
  std::vector<double> x(192);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::cos(0.1 * static_cast<double>(i));
  std::vector<double> y = x;
  rope(y, yarn, 1234, false);
  for (size_t i = 0; i < 128; ++i) EXPECT_EQ(y[i], x[i]);  // nope channels untouched
  // interleaved pair: (x0, x1) rotated by φ = float(p)·θ0
  const double phi = static_cast<double>(1234.0f * yarn[0]);
  EXPECT_NEAR(y[128], x[128] * std::cos(phi) - x[129] * std::sin(phi), 1e-6);
  rope(y, yarn, 1234, true);
  // cos/sin are fp32 (§7.1), so the inverse undoes the rotation to fp32 accuracy
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(y[i], x[i], 1e-6);
}

TEST(RefOps, SinkhornIsNearlyDoublyStochastic) {
  const int hc = 4, D = 3;
  HcParams p;
  p.fn.rows = (2 + hc) * hc;
  p.fn.cols = hc * D;
  p.fn.d.resize(static_cast<size_t>(p.fn.rows * p.fn.cols));
  for (size_t i = 0; i < p.fn.d.size(); ++i) p.fn.d[i] = std::sin(static_cast<double>(i));
  p.base.resize(static_cast<size_t>(p.fn.rows));
  for (size_t i = 0; i < p.base.size(); ++i) p.base[i] = std::cos(static_cast<double>(i));
  p.scale = {0.5, 1.5, 2.0};
  std::vector<double> X(static_cast<size_t>(hc * D));
  for (size_t i = 0; i < X.size(); ++i) X[i] = 0.3 * static_cast<double>(i) - 1;
  const HcCoeffs c = hc_coeffs(X, hc, p, 1e-6, 1e-6, 20);
  for (int k = 0; k < hc; ++k) {
    double col = 0, row = 0;
    for (int j = 0; j < hc; ++j) {
      col += c.comb[static_cast<size_t>(j * hc + k)];
      row += c.comb[static_cast<size_t>(k * hc + j)];
    }
    EXPECT_NEAR(col, 1.0, 1e-5);  // last step is a column normalisation
    EXPECT_NEAR(row, 1.0, 1e-3);
    EXPECT_GT(c.pre[static_cast<size_t>(k)], 0.0);
    EXPECT_LT(c.post[static_cast<size_t>(k)], 2.0);
  }
  // post: stream k gets post[k]·F + Σ_j C[j][k]·X[j]
  const std::vector<double> F = {1, 2, 3};
  const std::vector<double> Y = hc_post(X, hc, c, F);
  double want = c.post[1] * F[2];
  for (int j = 0; j < hc; ++j) want += c.comb[static_cast<size_t>(j * hc + 1)] * X[static_cast<size_t>(j * D + 2)];
  EXPECT_DOUBLE_EQ(Y[static_cast<size_t>(1 * D + 2)], want);
}

}  // namespace
