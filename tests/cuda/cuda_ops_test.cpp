// CUDA op tests (issue 8 scope 1): every op of ops.h in CudaOps against the float64 reference
// RefOps, with the bounds of the CPU backend's tests (tests/backend/ops_test.cpp, where each bound
// is derived); plus batch invariance (a token alone vs inside a batch, bit for bit), run-to-run
// repeatability and the weight cache. Tests that need a device skip without one (CI compiles
// this file; scripts/gpu-check.sh runs it on a GPU machine).
//
// Shapes: n = 1, 7, 64, 513 tokens; odd dimensions wherever the op allows; strided outputs. Every
// output buffer has NaN-sentinel guard floats on both sides, and every element an op must not
// write (ldy gaps, scores past n_vis) is pre-filled with the sentinel and checked afterwards.
//
// Why the CPU bounds hold here: each output is a float32 dot product whose terms are split over
// 32 lanes (≤ K/32 sequential fused multiply-adds each, then a 5-level butterfly), i.e. the same
// error structure as the CPU's fixed lanes; dequantization is bit-identical to dequantize_row;
// norms' sums of squares and the HC coefficient algebra are in double as on the CPU. exp, sin and
// cos are CUDA's accurate library functions (≤ 2 ulp), far inside the bounds' margins.
//
// The bandwidth probe (CudaBench.*) runs only with DSV4_GPU_BENCH=1 (gpu-check.sh).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "dsv4/backend/cuda/cuda_ops.h"
#include "dsv4/backend/ref/ref_ops.h"
#include "dsv4/core/dtypes.h"
#include "dsv4/quant/quant.h"

namespace {

using dsv4::backend::CudaOps;
using dsv4::backend::ExpertWeights;
using dsv4::backend::HcWeights;
using dsv4::backend::Ops;
using dsv4::backend::RefOps;
using dsv4::backend::Weight;
using dsv4::quant::QType;

const int64_t kNs[] = {1, 7, 64, 513};

// The CUDA backend on device 0, or nullptr without a device (the caller skips).
std::unique_ptr<CudaOps> make_ops() {
  if (dsv4::backend::cuda_device_count() == 0) return nullptr;
  auto r = dsv4::backend::make_cuda_ops(0);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  if (!r.is_ok()) return nullptr;
  static bool printed = false;
  if (!printed) {
    std::printf("[cuda] %s\n", r.value()->name().c_str());
    printed = true;
  }
  return std::unique_ptr<CudaOps>(static_cast<CudaOps*>(std::move(r).value().release()));
}

#define CUDA_OPS_OR_SKIP(var)                \
  std::unique_ptr<CudaOps> var = make_ops(); \
  if (!(var)) GTEST_SKIP() << "no CUDA device"

constexpr uint32_t kSentinelBits = 0x7FBADBADu;  // a NaN no op produces
constexpr size_t kGuard = 16;

struct Guarded {
  std::vector<float> buf;
  size_t n;
  explicit Guarded(size_t n_, bool sentinel_inside = true) : buf(n_ + 2 * kGuard), n(n_) {
    for (auto& v : buf) v = dsv4::bits_to_f32(kSentinelBits);
    if (!sentinel_inside)
      for (size_t i = 0; i < n; ++i) buf[kGuard + i] = 0.0f;
  }
  float* data() { return buf.data() + kGuard; }
  const float* data() const { return buf.data() + kGuard; }
  float& operator[](size_t i) { return buf[kGuard + i]; }
  bool is_sentinel(size_t i) const { return dsv4::f32_to_bits(buf[kGuard + i]) == kSentinelBits; }
  ::testing::AssertionResult guards_ok() const {
    for (size_t i = 0; i < kGuard; ++i)
      if (dsv4::f32_to_bits(buf[i]) != kSentinelBits || dsv4::f32_to_bits(buf[kGuard + n + i]) != kSentinelBits)
        return ::testing::AssertionFailure() << "guard float overwritten";
    return ::testing::AssertionSuccess();
  }
};

struct Nmse {
  double num = 0, den = 0;
  void add(float a, float b) {
    num += (static_cast<double>(a) - b) * (static_cast<double>(a) - b);
    den += static_cast<double>(b) * b;
  }
  double value() const { return den > 0 ? num / den : num; }
};

std::map<std::string, double>& worst_nmse() {
  static std::map<std::string, double> m;
  return m;
}
double track(const char* op, double v) {
  double& w = worst_nmse()[op];
  w = std::max(w, v);
  return v;
}
class PrintWorst : public ::testing::Environment {
 public:
  void TearDown() override {
    for (const auto& [op, v] : worst_nmse()) std::printf("[cuda ops] worst NMSE %-10s %.3g\n", op.c_str(), v);
  }
};
const auto* const kPrintWorst = ::testing::AddGlobalTestEnvironment(new PrintWorst);

std::vector<float> randn(size_t n, uint64_t seed, float sigma = 1.0f, float mean = 0.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(mean, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

bool same_bits(const float* a, const float* b, int64_t n) {
  return std::memcmp(a, b, static_cast<size_t>(n) * sizeof(float)) == 0;
}

// ---- random weights of the CUDA types ------------------------------------------------------------

struct OwnedWeight {
  std::vector<uint8_t> bytes;
  Weight w;
};

void put_f16(uint8_t* p, float v) {
  const uint16_t h = dsv4::f32_to_fp16(v);
  std::memcpy(p, &h, 2);
}

void set_scale(QType t, uint8_t* b, float d) {
  switch (t) {
    case QType::kQ2_K: put_f16(b + 80, d); put_f16(b + 82, d); return;
    case QType::kQ4_K: put_f16(b, d); put_f16(b + 2, d); return;
    default: put_f16(b, d); return;  // q8_0, iq2_xxs: d first
  }
}

// rows × cols of `type`, random valid blocks (finite scales), values of RMS about sigma; the data
// sits at an odd host address (the device copy must not care).
OwnedWeight random_weight(QType type, int64_t rows, int64_t cols, uint64_t seed, float sigma = 0.1f) {
  const auto* info = dsv4::quant::qtype_info(type);
  EXPECT_NE(info, nullptr);
  const int64_t bs = info->block_size;
  EXPECT_EQ(cols % bs, 0);
  OwnedWeight o;
  o.w.type = type;
  o.w.cols = cols;
  o.w.rows = rows;
  o.w.row_bytes = static_cast<size_t>(cols / bs) * info->type_size;
  const size_t nb = static_cast<size_t>(rows * cols / bs);
  o.bytes.resize(static_cast<size_t>(rows) * o.w.row_bytes + 7);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, sigma);
  uint8_t* p = o.bytes.data();
  switch (type) {
    case QType::kF32:
      for (size_t i = 0; i < nb; ++i) {
        const float v = nd(rng);
        std::memcpy(p + 4 * i, &v, 4);
      }
      break;
    case QType::kF16:
      for (size_t i = 0; i < nb; ++i) put_f16(p + 2 * i, nd(rng));
      break;
    case QType::kBF16:
      for (size_t i = 0; i < nb; ++i) {
        const uint16_t h = dsv4::f32_to_bf16(nd(rng));
        std::memcpy(p + 2 * i, &h, 2);
      }
      break;
    case QType::kMXFP4:
      for (size_t b = 0; b < nb; ++b) {
        uint8_t* blk = p + b * info->type_size;
        for (size_t i = 0; i < info->type_size; ++i) blk[i] = static_cast<uint8_t>(rng());
        blk[0] = static_cast<uint8_t>(118 + rng() % 6);
      }
      break;
    case QType::kF8_E4M3_B128:
      for (size_t b = 0; b < nb; ++b) {
        uint8_t* blk = p + b * info->type_size;
        blk[0] = static_cast<uint8_t>(117 + rng() % 4);
        for (size_t i = 1; i < info->type_size; ++i) {
          uint8_t q;
          do q = static_cast<uint8_t>(rng()); while ((q & 0x7f) == 0x7f);
          blk[i] = q;
        }
      }
      break;
    default: {
      for (size_t i = 0; i < nb * info->type_size; ++i) p[i] = static_cast<uint8_t>(rng());
      for (size_t b = 0; b < nb; ++b) set_scale(type, p + b * info->type_size, 1.0f);
      std::vector<float> v(static_cast<size_t>(bs));
      double ss = 0;
      const size_t probe = std::min<size_t>(nb, 8);
      for (size_t b = 0; b < probe; ++b) {
        EXPECT_TRUE(dsv4::quant::dequantize_row(type, p + b * info->type_size, v.data(), bs).is_ok());
        for (float x : v) ss += static_cast<double>(x) * x;
      }
      const double rms = std::sqrt(ss / static_cast<double>(probe * static_cast<size_t>(bs)));
      const float d = rms > 0 ? static_cast<float>(sigma / rms) : sigma;
      std::uniform_real_distribution<float> ud(0.5f, 1.5f);
      for (size_t b = 0; b < nb; ++b) set_scale(type, p + b * info->type_size, d * ud(rng));
    }
  }
  std::memmove(p + 7, p, static_cast<size_t>(rows) * o.w.row_bytes);
  o.w.data = p + 7;
  return o;
}

std::vector<QType> cuda_types() {
  return {QType::kF32,  QType::kF16,     QType::kBF16,    QType::kQ8_0,        QType::kMXFP4,
          QType::kQ2_K, QType::kQ4_K,    QType::kIQ2_XXS, QType::kF8_E4M3_B128};
}

std::string tname(QType t) { return std::string(dsv4::quant::qtype_info(t)->name); }

int64_t test_cols(QType t) {
  const int64_t bs = dsv4::quant::qtype_info(t)->block_size;
  if (bs == 1) return 203;
  if (bs >= 256) return 512;
  if (bs == 128) return 384;
  return 5 * bs;
}

// ---- construction (these run without a device too) ------------------------------------------------

TEST(CudaOps, FactoryAndSupportedTypes) {
  const int count = dsv4::backend::cuda_device_count();
  auto r = dsv4::backend::make_cuda_ops(0);
  if (count == 0) {
    ASSERT_FALSE(r.is_ok());
    EXPECT_EQ(r.status().code(), dsv4::ErrorCode::kUnavailable) << r.status().to_string();
  } else {
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(r.value()->name().rfind("cuda[0:", 0), 0u) << r.value()->name();
    auto bad = dsv4::backend::make_cuda_ops(count);
    ASSERT_FALSE(bad.is_ok());
    EXPECT_EQ(bad.status().code(), dsv4::ErrorCode::kInvalidArgument);
  }
  for (QType t : cuda_types()) EXPECT_TRUE(CudaOps::supports(t)) << tname(t);
  for (QType t : {QType::kQ6_K, QType::kIQ4_NL, QType::kQ3_K}) EXPECT_FALSE(CudaOps::supports(t)) << tname(t);
}

// ---- matmul ----------------------------------------------------------------------------------------

constexpr double kMatmulNmse = 1e-10;  // ops_test.cpp: float32 dot over ≤ 512 terms in fixed lanes

void check_matmul(CudaOps& ops, QType type, int64_t rows, int64_t cols, const std::vector<int64_t>& ns) {
  OwnedWeight w = random_weight(type, rows, cols, 77 + static_cast<uint64_t>(type));
  RefOps ref;
  for (int64_t n : ns) {
    const int64_t ldx = cols + 3, ldy = rows + 5;
    std::vector<float> x = randn(static_cast<size_t>(n * ldx), 5 + static_cast<uint64_t>(n));
    Guarded want(static_cast<size_t>(n * ldy));
    ref.matmul(w.w, x.data(), ldx, n, want.data(), ldy);
    Guarded got(static_cast<size_t>(n * ldy));
    ops.matmul(w.w, x.data(), ldx, n, got.data(), ldy);
    ASSERT_TRUE(got.guards_ok()) << tname(type);
    Nmse e;
    for (int64_t t = 0; t < n; ++t)
      for (int64_t r = 0; r < ldy; ++r) {
        const size_t i = static_cast<size_t>(t * ldy + r);
        if (r >= rows) {
          ASSERT_TRUE(got.is_sentinel(i)) << "stride gap written";
          continue;
        }
        e.add(got[i], want[i]);
      }
    EXPECT_LE(track("matmul", e.value()), kMatmulNmse)
        << tname(type) << " n=" << n << " rows=" << rows << " cols=" << cols;
  }
}

TEST(CudaOps, MatmulEveryTypeVsRef) {
  CUDA_OPS_OR_SKIP(ops);
  for (QType t : cuda_types()) check_matmul(*ops, t, 37, test_cols(t), {1, 7, 64, 513});
}

TEST(CudaOps, MatmulRowTailsAndWideRows) {
  CUDA_OPS_OR_SKIP(ops);
  for (int64_t rows : {1, 2, 3, 5, 8, 13, 300}) check_matmul(*ops, QType::kQ8_0, rows, 160, {1, 7});
  check_matmul(*ops, QType::kF32, 3, 203, {513});
  // a K of several thousand (lanes own many chunks) and many token tiles per warp
  check_matmul(*ops, QType::kQ4_K, 64, 4096, {1, 64, 513});
  check_matmul(*ops, QType::kBF16, 40, 4099, {1, 64});
}

// ---- rms_norm ---------------------------------------------------------------------------------------

TEST(CudaOps, RmsNormVsRef) {
  CUDA_OPS_OR_SKIP(ops);
  RefOps ref;
  for (int64_t dim : {203, 4096}) {
    const std::vector<float> w = randn(static_cast<size_t>(dim), 3, 0.5f, 1.0f);
    for (int64_t n : kNs) {
      const std::vector<float> x = randn(static_cast<size_t>(n * dim), 11, 2.0f);
      for (bool weighted : {true, false}) {
        const float* wp = weighted ? w.data() : nullptr;
        Guarded want(static_cast<size_t>(n * dim));
        ref.rms_norm(x.data(), wp, n, dim, 1e-6f, want.data());
        Guarded got(static_cast<size_t>(n * dim));
        ops->rms_norm(x.data(), wp, n, dim, 1e-6f, got.data());
        ASSERT_TRUE(got.guards_ok());
        Guarded inplace(static_cast<size_t>(n * dim));
        std::copy(x.begin(), x.end(), inplace.data());
        ops->rms_norm(inplace.data(), wp, n, dim, 1e-6f, inplace.data());
        ASSERT_TRUE(inplace.guards_ok());
        Nmse e;
        for (size_t i = 0; i < static_cast<size_t>(n * dim); ++i) {
          e.add(got[i], want[i]);
          ASSERT_EQ(dsv4::f32_to_bits(got[i]), dsv4::f32_to_bits(inplace[i]));
        }
        EXPECT_LE(track("rms_norm", e.value()), 1e-12) << "dim=" << dim << " n=" << n;
      }
    }
  }
}

// ---- hyper-connections -------------------------------------------------------------------------------

struct HcSetup {
  OwnedWeight fn;
  std::vector<float> base, scale;
  HcWeights p() const { return {fn.w, base.data(), scale.data()}; }
};

HcSetup make_hc(int64_t rows, int64_t hc, int64_t D, QType type, uint64_t seed) {
  HcSetup s;
  s.fn = random_weight(type, rows, hc * D, seed, 0.05f);
  s.base = randn(static_cast<size_t>(rows), seed + 1, 0.5f);
  s.scale = {0.7f, 1.1f, 1.3f};
  return s;
}

TEST(CudaOps, HcCoeffsVsRef) {
  CUDA_OPS_OR_SKIP(ops);
  RefOps ref;
  const int64_t hc = 4, D = 67, nm = (2 + hc) * hc;
  for (QType type : {QType::kF32, QType::kF16, QType::kBF16}) {
    HcSetup s = make_hc(nm, hc, D, type, 21);
    for (int64_t n : kNs) {
      const std::vector<float> X = randn(static_cast<size_t>(n * hc * D), 31 + static_cast<uint64_t>(n));
      Guarded pre_r(static_cast<size_t>(n * hc)), post_r(static_cast<size_t>(n * hc)),
          comb_r(static_cast<size_t>(n * hc * hc));
      ref.hc_coeffs(X.data(), n, hc, D, s.p(), 1e-6f, 1e-6f, 20, pre_r.data(), post_r.data(), comb_r.data());
      Guarded pre(pre_r.n), post(post_r.n), comb(comb_r.n);
      ops->hc_coeffs(X.data(), n, hc, D, s.p(), 1e-6f, 1e-6f, 20, pre.data(), post.data(), comb.data());
      ASSERT_TRUE(pre.guards_ok() && post.guards_ok() && comb.guards_ok());
      Nmse e1, e2, e3;
      for (size_t i = 0; i < pre.n; ++i) e1.add(pre[i], pre_r[i]);
      for (size_t i = 0; i < post.n; ++i) e2.add(post[i], post_r[i]);
      for (size_t i = 0; i < comb.n; ++i) e3.add(comb[i], comb_r[i]);
      EXPECT_LE(track("hc_coeffs", e1.value()), 1e-10) << "pre " << tname(type) << " n=" << n;
      EXPECT_LE(track("hc_coeffs", e2.value()), 1e-10) << "post " << tname(type) << " n=" << n;
      EXPECT_LE(track("hc_coeffs", e3.value()), 1e-10) << "comb " << tname(type) << " n=" << n;
    }
  }
}

TEST(CudaOps, HcPrePostHeadVsRef) {
  CUDA_OPS_OR_SKIP(ops);
  RefOps ref;
  const int64_t hc = 4, D = 67;
  HcSetup head = make_hc(hc, hc, D, QType::kF32, 41);
  for (int64_t n : kNs) {
    const std::vector<float> X = randn(static_cast<size_t>(n * hc * D), 51 + static_cast<uint64_t>(n));
    const std::vector<float> pre = randn(static_cast<size_t>(n * hc), 52, 0.3f, 0.5f);
    const std::vector<float> post = randn(static_cast<size_t>(n * hc), 53, 0.3f, 1.0f);
    const std::vector<float> comb = randn(static_cast<size_t>(n * hc * hc), 54, 0.1f, 0.25f);
    const std::vector<float> F = randn(static_cast<size_t>(n * D), 55);
    Guarded u_r(static_cast<size_t>(n * D)), X_r(static_cast<size_t>(n * hc * D)), y_r(static_cast<size_t>(n * D));
    ref.hc_pre(X.data(), n, hc, D, pre.data(), u_r.data());
    std::copy(X.begin(), X.end(), X_r.data());
    ref.hc_post(X_r.data(), n, hc, D, post.data(), comb.data(), F.data());
    ref.hc_head(X.data(), n, hc, D, head.p(), 1e-6f, 1e-6f, y_r.data());
    Guarded u(u_r.n), Xc(X_r.n), y(y_r.n);
    ops->hc_pre(X.data(), n, hc, D, pre.data(), u.data());
    std::copy(X.begin(), X.end(), Xc.data());
    ops->hc_post(Xc.data(), n, hc, D, post.data(), comb.data(), F.data());
    ops->hc_head(X.data(), n, hc, D, head.p(), 1e-6f, 1e-6f, y.data());
    ASSERT_TRUE(u.guards_ok() && Xc.guards_ok() && y.guards_ok());
    Nmse e1, e2, e3;
    for (size_t i = 0; i < u.n; ++i) e1.add(u[i], u_r[i]);
    for (size_t i = 0; i < Xc.n; ++i) e2.add(Xc[i], X_r[i]);
    for (size_t i = 0; i < y.n; ++i) e3.add(y[i], y_r[i]);
    EXPECT_LE(track("hc_pre", e1.value()), 1e-12) << "n=" << n;
    EXPECT_LE(track("hc_post", e2.value()), 1e-12) << "n=" << n;
    EXPECT_LE(track("hc_head", e3.value()), 1e-10) << "n=" << n;
  }
}

// ---- RoPE ---------------------------------------------------------------------------------------------

TEST(CudaOps, RopeVsRef) {
  CUDA_OPS_OR_SKIP(ops);
  RefOps ref;
  const int64_t heads = 3, dim = 70, n_freq = 16;
  std::vector<float> freqs(static_cast<size_t>(n_freq));
  for (int64_t i = 0; i < n_freq; ++i)
    freqs[static_cast<size_t>(i)] = 1.0f / std::pow(10000.0f, static_cast<float>(2 * i) / 32.0f);
  for (int64_t n : kNs) {
    std::vector<int64_t> pos(static_cast<size_t>(n));
    std::mt19937_64 rng(7);
    for (auto& p : pos) p = static_cast<int64_t>(rng() % 200000);
    const std::vector<float> x = randn(static_cast<size_t>(n * heads * dim), 61);
    for (bool inverse : {false, true}) {
      Guarded want(x.size());
      std::copy(x.begin(), x.end(), want.data());
      ref.rope(want.data(), n, heads, dim, freqs.data(), n_freq, pos.data(), inverse);
      Guarded got(x.size());
      std::copy(x.begin(), x.end(), got.data());
      ops->rope(got.data(), n, heads, dim, freqs.data(), n_freq, pos.data(), inverse);
      ASSERT_TRUE(got.guards_ok());
      Nmse e;
      for (size_t i = 0; i < x.size(); ++i) {
        e.add(got[i], want[i]);
        if (static_cast<int64_t>(i) % dim < dim - 2 * n_freq) {
          ASSERT_EQ(got[i], x[i]) << "nope channel changed";
        }
      }
      EXPECT_LE(track("rope", e.value()), 1e-12) << "n=" << n << " inverse=" << inverse;
    }
  }
}

// ---- attention ----------------------------------------------------------------------------------------

struct AttnCase {
  int64_t n, H, Dh, n_kv;
  std::vector<float> q, kv, sinks;
  std::vector<int64_t> offsets;
  std::vector<int32_t> indices;
};

AttnCase make_attn(int64_t n, int64_t H, int64_t Dh, int64_t n_kv, uint64_t seed, int64_t max_rows = 48) {
  AttnCase c{n, H, Dh, n_kv, {}, {}, {}, {}, {}};
  c.q = randn(static_cast<size_t>(n * H * Dh), seed, 1.0f);
  c.kv = randn(static_cast<size_t>(n_kv * Dh), seed + 1, 1.0f);
  c.sinks = randn(static_cast<size_t>(H), seed + 2, 1.0f);
  std::mt19937_64 rng(seed + 3);
  c.offsets.push_back(0);
  for (int64_t t = 0; t < n; ++t) {
    const int64_t rows = (t % 11 == 5) ? 0 : static_cast<int64_t>(rng() % static_cast<uint64_t>(max_rows)) + 1;
    for (int64_t k = 0; k < rows; ++k) c.indices.push_back(static_cast<int32_t>(rng() % static_cast<uint64_t>(n_kv)));
    c.offsets.push_back(static_cast<int64_t>(c.indices.size()));
  }
  return c;
}

void check_attention(CudaOps& ops, const AttnCase& c, bool with_sinks) {
  RefOps ref;
  const float scale = 1.0f / std::sqrt(static_cast<float>(c.Dh));
  const float* sinks = with_sinks ? c.sinks.data() : nullptr;
  Guarded want(static_cast<size_t>(c.n * c.H * c.Dh));
  ref.attention(c.q.data(), c.n, c.H, c.Dh, c.kv.data(), c.offsets.data(), c.indices.data(), sinks, scale,
                want.data());
  Guarded got(want.n);
  ops.attention(c.q.data(), c.n, c.H, c.Dh, c.kv.data(), c.offsets.data(), c.indices.data(), sinks, scale,
                got.data());
  ASSERT_TRUE(got.guards_ok());
  Nmse e;
  for (size_t i = 0; i < got.n; ++i) e.add(got[i], want[i]);
  EXPECT_LE(track("attention", e.value()), 1e-9) << "Dh=" << c.Dh << " n=" << c.n << " sinks=" << with_sinks;
  for (int64_t t = 0; t < c.n; ++t)
    if (c.offsets[static_cast<size_t>(t + 1)] == c.offsets[static_cast<size_t>(t)]) {
      for (int64_t i = 0; i < c.H * c.Dh; ++i) ASSERT_EQ(got[static_cast<size_t>(t * c.H * c.Dh + i)], 0.0f);
    }
}

TEST(CudaOps, AttentionVsRef) {
  CUDA_OPS_OR_SKIP(ops);
  for (int64_t Dh : {72, 37})
    for (int64_t n : kNs) check_attention(*ops, make_attn(n, 3, Dh, 97, 100 + static_cast<uint64_t>(n + Dh)), true);
  check_attention(*ops, make_attn(7, 3, 72, 97, 150), false);
  // the real head size and a long row list (window + selected compressed rows)
  check_attention(*ops, make_attn(7, 4, 512, 2000, 160, 700), true);
}

// ---- indexer ------------------------------------------------------------------------------------------

void check_indexer(CudaOps& ops, int64_t n, int64_t nI, int64_t dI, int64_t n_keys, int64_t ld, uint64_t seed) {
  RefOps ref;
  const std::vector<float> keys = randn(static_cast<size_t>(n_keys * dI), seed);
  const std::vector<float> qI = randn(static_cast<size_t>(n * nI * dI), seed + 1);
  const std::vector<float> wI = randn(static_cast<size_t>(n * nI), seed + 2);
  std::vector<int64_t> n_vis(static_cast<size_t>(n));
  std::mt19937_64 rng(seed + 3);
  for (auto& v : n_vis) v = static_cast<int64_t>(rng() % static_cast<uint64_t>(n_keys + 1));
  const float scale = 1.0f / std::sqrt(static_cast<float>(dI * nI));
  Guarded want(static_cast<size_t>(n * ld));
  ref.indexer_scores(qI.data(), wI.data(), n, nI, dI, keys.data(), n_vis.data(), scale, want.data(), ld);
  Guarded got(want.n);
  ops.indexer_scores(qI.data(), wI.data(), n, nI, dI, keys.data(), n_vis.data(), scale, got.data(), ld);
  ASSERT_TRUE(got.guards_ok());
  Nmse e;
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < ld; ++j) {
      const size_t i = static_cast<size_t>(t * ld + j);
      if (j >= n_vis[static_cast<size_t>(t)]) {
        ASSERT_TRUE(got.is_sentinel(i)) << "score beyond n_vis written";
        continue;
      }
      e.add(got[i], want[i]);
    }
  EXPECT_LE(track("indexer", e.value()), 1e-9) << "n=" << n << " nI=" << nI << " dI=" << dI;
}

TEST(CudaOps, IndexerScoresVsRef) {
  CUDA_OPS_OR_SKIP(ops);
  for (int64_t n : kNs) check_indexer(*ops, n, 5, 40, 150, 160, 71);
  check_indexer(*ops, 7, 64, 128, 1000, 1003, 81);  // the real indexer heads and size
}

// ---- MoE ----------------------------------------------------------------------------------------------

struct MoeSetup {
  OwnedWeight gate, up, down;
  ExpertWeights ew;
};

MoeSetup make_moe(QType gu_type, QType down_type, int64_t E, int64_t D, int64_t I, uint64_t seed) {
  MoeSetup m;
  m.gate = random_weight(gu_type, E * I, D, seed, 0.1f);
  m.up = random_weight(gu_type, E * I, D, seed + 1, 0.1f);
  m.down = random_weight(down_type, E * D, I, seed + 2, 0.1f);
  m.ew = {m.gate.w, m.up.w, m.down.w, I, D};
  return m;
}

struct Routing {
  std::vector<int32_t> ids;
  std::vector<float> w;
};

Routing make_routing(int64_t n, int64_t n_used, int64_t E, uint64_t seed) {
  Routing r;
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> ud(0.1f, 1.0f);
  for (int64_t t = 0; t < n; ++t) {
    std::vector<int32_t> perm(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e) perm[static_cast<size_t>(e)] = static_cast<int32_t>(e);
    std::shuffle(perm.begin(), perm.end(), rng);
    for (int64_t k = 0; k < n_used; ++k) {
      r.ids.push_back(rng() % 8 == 3 ? -1 : perm[static_cast<size_t>(k)]);
      r.w.push_back(ud(rng));
    }
  }
  return r;
}

void check_moe(CudaOps& ops, QType gu_type, QType down_type, int64_t D, int64_t I, const std::vector<int64_t>& ns) {
  const int64_t E = 5, n_used = 3;
  MoeSetup m = make_moe(gu_type, down_type, E, D, I, 200 + static_cast<uint64_t>(gu_type));
  RefOps ref;
  for (int64_t n : ns) {
    const std::vector<float> x = randn(static_cast<size_t>(n * D), 300 + static_cast<uint64_t>(n));
    const std::vector<float> y0 = randn(static_cast<size_t>(n * D), 301);
    Routing r = make_routing(n, n_used, E, 302 + static_cast<uint64_t>(n));
    std::vector<float> g0(static_cast<size_t>(I));
    ref.matmul(m.ew.gate.expert(0, I), x.data(), D, 1, g0.data(), I);
    for (auto& v : g0) v = std::fabs(v);
    std::nth_element(g0.begin(), g0.begin() + I / 2, g0.end());
    const float limit = std::max(g0[static_cast<size_t>(I / 2)], 1e-3f);
    Guarded want(static_cast<size_t>(n * D));
    std::copy(y0.begin(), y0.end(), want.data());
    ref.moe(m.ew, x.data(), n, n_used, r.ids.data(), r.w.data(), limit, want.data());
    Guarded got(want.n);
    std::copy(y0.begin(), y0.end(), got.data());
    ops.moe(m.ew, x.data(), n, n_used, r.ids.data(), r.w.data(), limit, got.data());
    ASSERT_TRUE(got.guards_ok());
    Nmse e;
    for (size_t i = 0; i < got.n; ++i) e.add(got[i] - y0[i], want[i] - y0[i]);
    EXPECT_LE(track("moe", e.value()), 1e-9) << tname(gu_type) << "/" << tname(down_type) << " n=" << n;
  }
}

TEST(CudaOps, MoeVsRef) {
  CUDA_OPS_OR_SKIP(ops);
  check_moe(*ops, QType::kF32, QType::kF32, 67, 41, {1, 7, 64, 513});
  check_moe(*ops, QType::kF16, QType::kF16, 72, 40, {1, 7});
  check_moe(*ops, QType::kBF16, QType::kBF16, 72, 40, {1, 7});
  for (QType t : {QType::kQ8_0, QType::kMXFP4}) check_moe(*ops, t, t, 64, 96, {1, 7, 64, 513});
  check_moe(*ops, QType::kF8_E4M3_B128, QType::kF8_E4M3_B128, 128, 128, {1, 7});
  for (QType t : {QType::kQ2_K, QType::kQ4_K, QType::kIQ2_XXS}) check_moe(*ops, t, t, 256, 256, {1, 7, 64});
  // the ds4 q2 mix: IQ2_XXS gate/up, Q2_K down
  check_moe(*ops, QType::kIQ2_XXS, QType::kQ2_K, 256, 512, {1, 7});
}

TEST(CudaOps, MoeSharedExpertForm) {
  CUDA_OPS_OR_SKIP(ops);
  const int64_t D = 64, I = 96, n = 7;
  MoeSetup m = make_moe(QType::kQ8_0, QType::kQ8_0, 1, D, I, 400);
  RefOps ref;
  const std::vector<float> x = randn(static_cast<size_t>(n * D), 401);
  const std::vector<int32_t> ids(static_cast<size_t>(n), 0);
  const std::vector<float> w(static_cast<size_t>(n), 1.0f);
  Guarded want(static_cast<size_t>(n * D), false);
  ref.moe(m.ew, x.data(), n, 1, ids.data(), w.data(), 10.0f, want.data());
  Guarded got(want.n, false);
  ops->moe(m.ew, x.data(), n, 1, ids.data(), w.data(), 10.0f, got.data());
  ASSERT_TRUE(got.guards_ok());
  Nmse e;
  for (size_t i = 0; i < got.n; ++i) e.add(got[i], want[i]);
  EXPECT_LE(track("moe", e.value()), 1e-9);
}

// ---- determinism: a token's row is bit-identical alone, inside a batch, and run to run ------------------

TEST(CudaOps, MatmulBatchInvariantEveryType) {
  CUDA_OPS_OR_SKIP(ops);
  const int64_t rows = 45;
  for (QType type : cuda_types()) {
    const int64_t K = test_cols(type);
    OwnedWeight w = random_weight(type, rows, K, 500 + static_cast<uint64_t>(type));
    for (int64_t n : {7, 64, 513}) {
      const std::vector<float> x = randn(static_cast<size_t>(n * K), 501);
      std::vector<float> batch(static_cast<size_t>(n * rows)), again(batch.size()), alone(static_cast<size_t>(rows));
      ops->matmul(w.w, x.data(), K, n, batch.data(), rows);
      ops->matmul(w.w, x.data(), K, n, again.data(), rows);
      EXPECT_TRUE(same_bits(batch.data(), again.data(), n * rows)) << tname(type) << " run to run";
      for (int64_t probe : {int64_t{0}, n / 2, n - 1}) {
        ops->matmul(w.w, x.data() + probe * K, K, 1, alone.data(), rows);
        EXPECT_TRUE(same_bits(alone.data(), batch.data() + probe * rows, rows))
            << tname(type) << " n=" << n << " probe=" << probe;
      }
    }
  }
}

TEST(CudaOps, MoeBatchInvariant) {
  CUDA_OPS_OR_SKIP(ops);
  const int64_t n = 64, D = 256, I = 256, E = 5, n_used = 3;
  for (QType type : {QType::kQ8_0, QType::kMXFP4, QType::kIQ2_XXS, QType::kF16}) {
    MoeSetup m = make_moe(type, type == QType::kIQ2_XXS ? QType::kQ2_K : type, E, D, I, 600);
    const std::vector<float> x = randn(static_cast<size_t>(n * D), 601);
    Routing r = make_routing(n, n_used, E, 602);
    std::vector<float> batch(static_cast<size_t>(n * D), 0.5f), again(batch);
    ops->moe(m.ew, x.data(), n, n_used, r.ids.data(), r.w.data(), 0.3f, batch.data());
    ops->moe(m.ew, x.data(), n, n_used, r.ids.data(), r.w.data(), 0.3f, again.data());
    EXPECT_TRUE(same_bits(batch.data(), again.data(), n * D)) << tname(type) << " run to run";
    for (int64_t probe : {0, 21, 63}) {
      std::vector<float> alone(static_cast<size_t>(D), 0.5f);
      ops->moe(m.ew, x.data() + probe * D, 1, n_used, r.ids.data() + probe * n_used, r.w.data() + probe * n_used,
               0.3f, alone.data());
      EXPECT_TRUE(same_bits(alone.data(), batch.data() + probe * D, D)) << tname(type) << " probe=" << probe;
    }
  }
}

TEST(CudaOps, AttentionIndexerNormBatchInvariant) {
  CUDA_OPS_OR_SKIP(ops);
  const int64_t n = 64, H = 3, Dh = 72;
  AttnCase c = make_attn(n, H, Dh, 97, 700);
  const float scale = 0.125f;
  std::vector<float> batch(static_cast<size_t>(n * H * Dh));
  ops->attention(c.q.data(), n, H, Dh, c.kv.data(), c.offsets.data(), c.indices.data(), c.sinks.data(), scale,
                 batch.data());
  for (int64_t probe : {0, 6, 40}) {
    const int64_t k0 = c.offsets[static_cast<size_t>(probe)], k1 = c.offsets[static_cast<size_t>(probe + 1)];
    const std::vector<int64_t> off1 = {0, k1 - k0};
    std::vector<float> alone(static_cast<size_t>(H * Dh));
    ops->attention(c.q.data() + probe * H * Dh, 1, H, Dh, c.kv.data(), off1.data(), c.indices.data() + k0,
                   c.sinks.data(), scale, alone.data());
    EXPECT_TRUE(same_bits(alone.data(), batch.data() + probe * H * Dh, H * Dh)) << "attention probe=" << probe;
  }
  // indexer: a token alone vs in the batch
  const int64_t nI = 8, dI = 64, n_keys = 300;
  const std::vector<float> keys = randn(static_cast<size_t>(n_keys * dI), 710);
  const std::vector<float> qI = randn(static_cast<size_t>(n * nI * dI), 711);
  const std::vector<float> wI = randn(static_cast<size_t>(n * nI), 712);
  std::vector<int64_t> n_vis(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) n_vis[static_cast<size_t>(t)] = 100 + 3 * t;
  std::vector<float> sb(static_cast<size_t>(n * n_keys)), s1(static_cast<size_t>(n_keys));
  ops->indexer_scores(qI.data(), wI.data(), n, nI, dI, keys.data(), n_vis.data(), 0.1f, sb.data(), n_keys);
  for (int64_t probe : {0, 33, 63}) {
    ops->indexer_scores(qI.data() + probe * nI * dI, wI.data() + probe * nI, 1, nI, dI, keys.data(),
                        n_vis.data() + probe, 0.1f, s1.data(), n_keys);
    EXPECT_TRUE(same_bits(s1.data(), sb.data() + probe * n_keys, n_vis[static_cast<size_t>(probe)]))
        << "indexer probe=" << probe;
  }
  // rms_norm
  const int64_t dim = 4096;
  const std::vector<float> x = randn(static_cast<size_t>(n * dim), 720);
  const std::vector<float> w = randn(static_cast<size_t>(dim), 721, 0.5f, 1.0f);
  std::vector<float> yb(x.size()), y1(static_cast<size_t>(dim));
  ops->rms_norm(x.data(), w.data(), n, dim, 1e-6f, yb.data());
  ops->rms_norm(x.data() + 17 * dim, w.data(), 1, dim, 1e-6f, y1.data());
  EXPECT_TRUE(same_bits(y1.data(), yb.data() + 17 * dim, dim)) << "rms_norm";
}

// ---- weight cache ---------------------------------------------------------------------------------------

TEST(CudaOps, WeightCacheUploadsOncePerPointer) {
  CUDA_OPS_OR_SKIP(ops);
  OwnedWeight w = random_weight(QType::kQ8_0, 64, 256, 800);
  const std::vector<float> x = randn(256 * 3, 801);
  std::vector<float> y(64 * 3), y2(64 * 3);
  EXPECT_EQ(ops->weight_cache_bytes(), 0u);
  ops->matmul(w.w, x.data(), 256, 3, y.data(), 64);
  const size_t bytes = ops->weight_cache_bytes();
  EXPECT_EQ(bytes, 64 * w.w.row_bytes);
  ops->matmul(w.w, x.data(), 256, 3, y2.data(), 64);
  EXPECT_EQ(ops->weight_cache_bytes(), bytes);
  EXPECT_TRUE(same_bits(y.data(), y2.data(), 64 * 3));
  // new bytes behind the same address (what a freed-and-reused host buffer looks like): the
  // probe notices and the result follows the new weight
  OwnedWeight w2 = random_weight(QType::kQ8_0, 64, 256, 802);
  std::memcpy(w.bytes.data() + 7, w2.w.data, 64 * w.w.row_bytes);
  RefOps ref;
  std::vector<float> want(64 * 3);
  ref.matmul(w.w, x.data(), 256, 3, want.data(), 64);
  ops->matmul(w.w, x.data(), 256, 3, y2.data(), 64);
  Nmse e;
  for (size_t i = 0; i < want.size(); ++i) e.add(y2[i], want[i]);
  EXPECT_LE(e.value(), kMatmulNmse);
  ops->clear_weight_cache();
  EXPECT_EQ(ops->weight_cache_bytes(), 0u);
}

// ---- copy bandwidth (gpu-check.sh only) -------------------------------------------------------------------

TEST(CudaBench, DeviceCopyBandwidth) {
  const char* on = std::getenv("DSV4_GPU_BENCH");
  if (on == nullptr || std::string(on) != "1") GTEST_SKIP() << "set DSV4_GPU_BENCH=1 (scripts/gpu-check.sh)";
  if (dsv4::backend::cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
  for (size_t mib : {256, 1024, 4096}) {
    auto r = dsv4::backend::measure_device_copy_bandwidth(0, mib << 20, 20);
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    std::printf("[gpu] d2d_copy bytes=%zu MiB reps=20 GB/s(read+write)=%.1f\n", mib, r.value());
  }
}

}  // namespace
