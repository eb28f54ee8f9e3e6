// Integer dots over q8_K activations (src/backend/cpu/qdot.h: quantize_q8_K, q2_K, q4_K,
// iq2_xxs; src/backend/cpu/qdotK*.cpp), at every SIMD level this machine supports:
//   * quantize_q8_K bytes == quant::quantize_act_q8_K (the scalar reference), and the reference
//     == upstream ggml's quantize_row_q8_K_ref on the fixture tests/fixtures/quant/
//     q8_K_upstream.bin (scripts/fixtures/make_q8k_fixture.sh);
//   * tile results vs a float64 reference built from the dequantized values only
//     (quant::dequantize_row of the weight row, quant::dequantize_act_q8_K of the activation);
//   * each out value bit-identical whatever nr, nt and its place in the tile; nothing written
//     outside out[t·ldo + i], i < nr, t < nt.
//
// Error bound. Let u = 2^-24 and M = Σ_j (|w_j^scaled| + |w_j^min|)·|x_j| over the row, where
// w^scaled is the weight without its min term (d_w·sc·q) and w^min the min term (dmin·m; zero
// for iq2_xxs), both taken from the reference dequantizer by zeroing dmin resp. d. The kernels
// compute per 256-block exact integer sums, then a handful of float roundings (d_w·d_x, int → f32,
// the product, the min term and its subtraction: ≤ 5u relative to that block's part of M), then
// add nb block values (scalar: one float, nb−1 roundings; SIMD: per lane, then a ≤ 5-step
// horizontal sum), each rounding ≤ u·(partial magnitude) ≤ u·M. The reference itself carries
// one rounding of each dequantized weight (dl·q − ml) and activation (d·q): ≤ 2u·M. Hence
//     |out − ref| ≤ (nb + 16)·u·M  (+ 1e-30 for values at the bottom of the float range).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "dsv4/backend/cpu/cpu_ops.h"
#include "dsv4/core/dtypes.h"
#include "dsv4/quant/act_quant.h"
#include "dsv4/quant/blocks.h"
#include "dsv4/quant/quant.h"
#include "simd_levels.h"
// Internal kernel table (tested directly).
#include "../../src/backend/cpu/qdot.h"

namespace {

using dsv4::backend::SimdLevel;
using dsv4::backend::cpu::QDotKernels;
using dsv4::backend::cpu::QDotTileFn;
using dsv4::quant::BlockIQ2_XXS;
using dsv4::quant::BlockQ2_K;
using dsv4::quant::BlockQ4_K;
using dsv4::quant::BlockQ8_K;
using dsv4::quant::QType;
constexpr int kQK = dsv4::quant::kQK_K;

const std::vector<SimdLevel>& levels() { return dsv4::test::simd_levels("qdotK"); }

const QDotKernels& table(SimdLevel l) {
  return dsv4::backend::cpu::qdot_kernels(static_cast<int>(l));
}

// ---- activations --------------------------------------------------------------------------

// n floats in blocks of 256 of assorted kinds (the fixture generator's kinds, drawn at random):
// normal with a per-block magnitude up to 10^±emax (below ~1e-37 iscale = −127/max overflows),
// all-zero, ties of |x| with either sign
// first, few distinct values (exact .5 products), sparse.
// tame: normal blocks only, magnitudes 1e-3..1e3; else all kinds, magnitudes 10^(-emax-2..emax).
std::vector<float> act_values(std::mt19937& rng, int64_t n, bool tame = false, int emax = 20) {
  std::vector<float> x(static_cast<size_t>(n));
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> kind(0, tame ? 1 : 6), expo(tame ? -3 : -emax - 2,
                                                                             tame ? 3 : emax);
  for (int64_t b = 0; b < n / kQK; ++b) {
    float* y = x.data() + b * kQK;
    const int kd = kind(rng);
    const float mag = std::pow(10.0f, static_cast<float>(expo(rng)));
    for (int j = 0; j < kQK; ++j) y[j] = nd(rng) * mag;
    if (kd == 2 && !tame) {
      for (int j = 0; j < kQK; ++j) y[j] = 0.0f;
    } else if (kd == 3) {  // two elements of the largest |x|, the negative one first
      y[17] = -8.0f * mag;
      y[200] = 8.0f * mag;
    } else if (kd == 4) {  // values giving exact halves in iscale·x (ties of the rounding)
      for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>((j % 255) - 127) * 0.5f;
      y[3] = -127.0f;
    } else if (kd == 5) {
      for (int j = 0; j < kQK; ++j)
        if (j % 7) y[j] = 0.0f;
    } else if (kd == 6) {  // largest |x| positive at the end
      y[255] = 50.0f * mag;
    }
  }
  return x;
}

std::vector<BlockQ8_K> quantize_ref(const std::vector<float>& x) {
  std::vector<BlockQ8_K> q(x.size() / kQK);
  dsv4::quant::quantize_act_q8_K(x.data(), q.data(), static_cast<int64_t>(x.size()));
  return q;
}

// ---- weights --------------------------------------------------------------------------------

// A finite fp16 with a random exponent over the whole range (subnormals, 65504, ±0 included).
uint16_t rand_fp16(std::mt19937& rng) {
  std::uniform_int_distribution<int> pick(0, 15), bits(0, 0xFFFF);
  const int p = pick(rng);
  if (p == 0) return 0x7BFF;  // 65504
  if (p == 1) return 0x0001;  // smallest subnormal
  if (p == 2) return static_cast<uint16_t>(bits(rng) & 0x83FF);  // subnormal
  uint16_t h;
  do h = static_cast<uint16_t>(bits(rng));
  while ((h & 0x7C00) == 0x7C00);
  return h;
}
// Moderate positive scale (what real files hold), so the cancellation tests are not drowned.
uint16_t mod_fp16(std::mt19937& rng) {
  std::uniform_real_distribution<float> u(1e-4f, 1e-1f);
  return dsv4::f32_to_fp16(u(rng));
}

size_t block_bytes(QType t) {
  switch (t) {
    case QType::kQ2_K: return sizeof(BlockQ2_K);
    case QType::kQ4_K: return sizeof(BlockQ4_K);
    default: return sizeof(BlockIQ2_XXS);
  }
}

// Random row of k elements: any bit pattern is a valid q2_K / q4_K / iq2_xxs block apart from
// the fp16 scales, which are set finite.
std::vector<uint8_t> weight_row(std::mt19937& rng, QType t, int64_t k, bool extreme) {
  const size_t bb = block_bytes(t);
  std::vector<uint8_t> r(bb * static_cast<size_t>(k / kQK));
  std::uniform_int_distribution<int> byte(0, 255);
  for (auto& c : r) c = static_cast<uint8_t>(byte(rng));
  for (size_t o = 0; o < r.size(); o += bb) {
    auto put = [&](size_t off, uint16_t h) { std::memcpy(r.data() + o + off, &h, 2); };
    auto f = [&] { return extreme ? rand_fp16(rng) : mod_fp16(rng); };
    if (t == QType::kQ2_K) {
      put(offsetof(BlockQ2_K, d), f());
      put(offsetof(BlockQ2_K, dmin), f());
    } else if (t == QType::kQ4_K) {
      put(offsetof(BlockQ4_K, d), f());
      put(offsetof(BlockQ4_K, dmin), f());
    } else {
      put(offsetof(BlockIQ2_XXS, d), f());
    }
  }
  return r;
}

// ---- float64 reference ------------------------------------------------------------------------

std::vector<float> deq(QType t, const uint8_t* row, int64_t k) {
  std::vector<float> w(static_cast<size_t>(k));
  EXPECT_TRUE(dsv4::quant::dequantize_row(t, row, w.data(), k).is_ok());
  return w;
}

struct Ref {
  double value, mag;  // Σ w·x and M (see the bound above)
};

Ref reference(QType t, const uint8_t* row, const BlockQ8_K* xq, int64_t k) {
  const std::vector<float> w = deq(t, row, k);
  std::vector<float> x(static_cast<size_t>(k));
  dsv4::quant::dequantize_act_q8_K(xq, x.data(), k);
  std::vector<float> ws(w.size()), wm(w.size(), 0.0f);
  if (t == QType::kQ2_K || t == QType::kQ4_K) {
    // scaled part: dmin = 0; min part: d = 0 (gives −dmin·m exactly).
    const size_t bb = block_bytes(t);
    const size_t od = t == QType::kQ2_K ? offsetof(BlockQ2_K, d) : offsetof(BlockQ4_K, d);
    const size_t om = t == QType::kQ2_K ? offsetof(BlockQ2_K, dmin) : offsetof(BlockQ4_K, dmin);
    std::vector<uint8_t> a(row, row + bb * static_cast<size_t>(k / kQK)), b = a;
    for (size_t o = 0; o < a.size(); o += bb) {
      std::memset(a.data() + o + om, 0, 2);
      std::memset(b.data() + o + od, 0, 2);
    }
    ws = deq(t, a.data(), k);
    wm = deq(t, b.data(), k);
  } else {
    ws = w;
  }
  Ref r{0.0, 0.0};
  for (size_t j = 0; j < w.size(); ++j) {
    r.value += static_cast<double>(w[j]) * static_cast<double>(x[j]);
    r.mag += (std::fabs(static_cast<double>(ws[j])) + std::fabs(static_cast<double>(wm[j]))) *
             std::fabs(static_cast<double>(x[j]));
  }
  return r;
}

QDotTileFn fn_of(const QDotKernels& kt, QType t) { return dsv4::backend::cpu::qdot_fn(kt, t); }

const char* name_of(QType t) {
  return t == QType::kQ2_K ? "q2_K" : t == QType::kQ4_K ? "q4_K" : "iq2_xxs";
}

constexpr QType kTypes[] = {QType::kQ2_K, QType::kIQ2_XXS, QType::kQ4_K};
constexpr int64_t kKs[] = {256, 512, 2048, 4096, 256 * 7, 256 * 20};

// ---- tests ----------------------------------------------------------------------------------

TEST(QdotK, QuantizeMatchesReference) {
  std::mt19937 rng(1234);
  for (int64_t k : {256, 512, 2048, 4096, 256 * 7}) {
    const std::vector<float> x = act_values(rng, k, false, 37);
    const std::vector<BlockQ8_K> ref = quantize_ref(x);
    for (SimdLevel l : levels()) {
      const QDotKernels& kt = table(l);
      ASSERT_NE(kt.quantize_q8_K, nullptr);
      std::vector<BlockQ8_K> got(ref.size());
      std::memset(got.data(), 0xA5, got.size() * sizeof(BlockQ8_K));
      kt.quantize_q8_K(x.data(), got.data(), k);
      ASSERT_EQ(std::memcmp(got.data(), ref.data(), ref.size() * sizeof(BlockQ8_K)), 0)
          << dsv4::backend::simd_level_name(l) << " k=" << k;
    }
  }
}

// Fixture layout (little-endian): "Q8KUPS1\0", u32 nblocks, f32 x[nblocks·256],
// nblocks × block_q8_K (292 bytes) as written by upstream's quantize_row_q8_K_ref.
TEST(QdotK, QuantizeMatchesUpstreamFixture) {
  const std::string path = std::string(DSV4_FIXTURES_DIR) + "/quant/q8_K_upstream.bin";
  std::ifstream f(path, std::ios::binary);
  ASSERT_TRUE(f.good()) << path;
  char magic[8];
  uint32_t nb = 0;
  f.read(magic, 8);
  f.read(reinterpret_cast<char*>(&nb), 4);
  ASSERT_EQ(std::memcmp(magic, "Q8KUPS1", 8), 0);
  ASSERT_GT(nb, 0u);
  std::vector<float> x(static_cast<size_t>(nb) * kQK);
  std::vector<BlockQ8_K> want(nb);
  f.read(reinterpret_cast<char*>(x.data()), static_cast<std::streamsize>(x.size() * 4));
  f.read(reinterpret_cast<char*>(want.data()), static_cast<std::streamsize>(nb * sizeof(BlockQ8_K)));
  ASSERT_TRUE(f.good());
  const int64_t n = static_cast<int64_t>(x.size());
  const std::vector<BlockQ8_K> ref = quantize_ref(x);
  for (uint32_t b = 0; b < nb; ++b)
    ASSERT_EQ(std::memcmp(&ref[b], &want[b], sizeof(BlockQ8_K)), 0) << "reference, block " << b;
  for (SimdLevel l : levels()) {
    std::vector<BlockQ8_K> got(nb);
    table(l).quantize_q8_K(x.data(), got.data(), n);
    for (uint32_t b = 0; b < nb; ++b)
      ASSERT_EQ(std::memcmp(&got[b], &want[b], sizeof(BlockQ8_K)), 0)
          << dsv4::backend::simd_level_name(l) << ", block " << b;
  }
}

TEST(QdotK, DequantizeAct) {
  std::mt19937 rng(7);
  const std::vector<float> x = act_values(rng, 512, true);
  const std::vector<BlockQ8_K> q = quantize_ref(x);
  std::vector<float> y(512);
  dsv4::quant::dequantize_act_q8_K(q.data(), y.data(), 512);
  for (int j = 0; j < 512; ++j) {
    const BlockQ8_K& b = q[static_cast<size_t>(j / kQK)];
    ASSERT_EQ(y[static_cast<size_t>(j)], b.d * static_cast<float>(b.qs[j % kQK]));
    // |x − y| ≤ half a step (plus rounding)
    ASSERT_LE(std::fabs(x[static_cast<size_t>(j)] - y[static_cast<size_t>(j)]),
              0.5001f * std::fabs(b.d) + 1e-30f);
  }
}

// Runs a 4×4 tile for (type, k) and checks it against the float64 reference.
void check_accuracy(QType t, int64_t k, bool extreme, uint32_t seed) {
  std::mt19937 rng(seed);
  const size_t row_bytes = block_bytes(t) * static_cast<size_t>(k / kQK);
  std::vector<uint8_t> w;
  for (int i = 0; i < 4; ++i) {
    const std::vector<uint8_t> r = weight_row(rng, t, k, extreme);
    w.insert(w.end(), r.begin(), r.end());
  }
  std::vector<std::vector<BlockQ8_K>> xq(4);
  const void* xp[4];
  for (int tk = 0; tk < 4; ++tk) {
    xq[static_cast<size_t>(tk)] = quantize_ref(act_values(rng, k, !extreme));
    xp[tk] = xq[static_cast<size_t>(tk)].data();
  }
  Ref ref[4][4];
  for (int tk = 0; tk < 4; ++tk)
    for (int i = 0; i < 4; ++i)
      ref[tk][i] = reference(t, w.data() + static_cast<size_t>(i) * row_bytes,
                             xq[static_cast<size_t>(tk)].data(), k);
  const double u = std::ldexp(1.0, -24);
  const double c = static_cast<double>(k / kQK) + 16.0;
  for (SimdLevel l : levels()) {
    const QDotTileFn fn = fn_of(table(l), t);
    if (fn == nullptr) {
      ADD_FAILURE() << "no " << name_of(t) << " at " << dsv4::backend::simd_level_name(l);
      continue;
    }
    float out[16];
    fn(w.data(), row_bytes, 4, xp, 4, k, out, 4);
    for (int tk = 0; tk < 4; ++tk)
      for (int i = 0; i < 4; ++i) {
        const Ref& r = ref[tk][i];
        const double got = out[tk * 4 + i];
        ASSERT_TRUE(std::isfinite(got));
        EXPECT_LE(std::fabs(got - r.value), c * u * r.mag + 1e-30)
            << name_of(t) << " " << dsv4::backend::simd_level_name(l) << " k=" << k
            << " t=" << tk << " i=" << i << " ref=" << r.value << " M=" << r.mag;
      }
  }
}

TEST(QdotK, AccuracyVsFloat64) {
  uint32_t seed = 100;
  for (QType t : kTypes)
    for (int64_t k : kKs) {
      check_accuracy(t, k, false, seed++);
      check_accuracy(t, k, true, seed++);
    }
}

// Each out value is bit-identical whatever nr, nt and its position; canaries untouched.
TEST(QdotK, TileInvariance) {
  std::mt19937 rng(99);
  for (QType t : kTypes)
    for (int64_t k : {256, 2048, 256 * 7}) {
      const size_t row_bytes = block_bytes(t) * static_cast<size_t>(k / kQK);
      std::vector<uint8_t> w;
      for (int i = 0; i < 4; ++i) {
        const std::vector<uint8_t> r = weight_row(rng, t, k, i == 3);
        w.insert(w.end(), r.begin(), r.end());
      }
      std::vector<std::vector<BlockQ8_K>> xq(4);
      const void* xp[4];
      for (int tk = 0; tk < 4; ++tk) {
        xq[static_cast<size_t>(tk)] = quantize_ref(act_values(rng, k, tk != 3));
        xp[tk] = xq[static_cast<size_t>(tk)].data();
      }
      for (SimdLevel l : levels()) {
        const QDotTileFn fn = fn_of(table(l), t);
        if (fn == nullptr) {
          ADD_FAILURE() << "no " << name_of(t) << " at " << dsv4::backend::simd_level_name(l);
          continue;
        }
        float full[16];
        fn(w.data(), row_bytes, 4, xp, 4, k, full, 4);
        constexpr int64_t ldo = 7;
        constexpr uint32_t kCanary = 0x7FC0DEADu;
        for (int nr = 1; nr <= 4; ++nr)
          for (int nt = 1; nt <= 4; ++nt)
            for (int r0 = 0; r0 + nr <= 4; ++r0)
              for (int t0 = 0; t0 + nt <= 4; ++t0) {
                std::vector<uint32_t> buf(static_cast<size_t>(8 + 4 * ldo + 8), kCanary);
                float* out = reinterpret_cast<float*>(buf.data() + 8);
                fn(w.data() + static_cast<size_t>(r0) * row_bytes, row_bytes, nr, xp + t0, nt, k,
                   out, ldo);
                for (size_t e = 0; e < buf.size(); ++e) {
                  const int64_t off = static_cast<int64_t>(e) - 8;
                  const int64_t tt = off >= 0 ? off / ldo : -1, ii = off >= 0 ? off % ldo : -1;
                  const bool inside = off >= 0 && tt < nt && ii < nr;
                  if (!inside) {
                    ASSERT_EQ(buf[e], kCanary) << "write outside the tile at " << off;
                    continue;
                  }
                  uint32_t want;
                  std::memcpy(&want, &full[(t0 + tt) * 4 + (r0 + ii)], 4);
                  ASSERT_EQ(buf[e], want)
                      << name_of(t) << " " << dsv4::backend::simd_level_name(l) << " k=" << k
                      << " nr=" << nr << " nt=" << nt << " r0=" << r0 << " t0=" << t0;
                }
              }
      }
    }
}

// iq2_xxs panel GEMM (where a level has it): for nr = 1..7 rows and nt = 1..16 packed tokens
// every out(t, i) bit-identical to iq2_xxs with nr = 1, nt = 1 on the same row and token
// (k up to 20 blocks: the float order's 16-lane wrap); nothing written outside the tile.
TEST(QdotK, Iq2xxsPanelMatchesNarrow) {
  using dsv4::backend::cpu::kQPanelTokens;
  constexpr int kRows = 7;
  std::mt19937 rng(4242);
  bool any = false;
  for (int64_t k : {256, 2048, 4096, 256 * 20}) {
    const size_t row_bytes = sizeof(BlockIQ2_XXS) * static_cast<size_t>(k / kQK);
    std::vector<uint8_t> w;
    for (int i = 0; i < kRows; ++i) {
      const std::vector<uint8_t> r = weight_row(rng, QType::kIQ2_XXS, k, i == 1);
      w.insert(w.end(), r.begin(), r.end());
    }
    std::vector<std::vector<BlockQ8_K>> xq(kQPanelTokens);
    const void* xp[kQPanelTokens];
    for (int tk = 0; tk < kQPanelTokens; ++tk) {
      xq[static_cast<size_t>(tk)] = quantize_ref(act_values(rng, k, tk % 5 != 4));
      xp[tk] = xq[static_cast<size_t>(tk)].data();
    }
    for (SimdLevel l : levels()) {
      const QDotKernels& kt = table(l);
      if (kt.iq2_xxs_panel == nullptr) continue;
      any = true;
      ASSERT_NE(kt.iq2_xxs, nullptr);
      ASSERT_NE(kt.iq2_xxs_pack, nullptr);
      ASSERT_NE(kt.iq2_xxs_panel_bytes, nullptr);
      uint32_t want[kRows][kQPanelTokens];
      for (int i = 0; i < kRows; ++i)
        for (int tk = 0; tk < kQPanelTokens; ++tk) {
          float o = 0.0f;
          kt.iq2_xxs(w.data() + static_cast<size_t>(i) * row_bytes, row_bytes, 1, xp + tk, 1, k, &o, 1);
          std::memcpy(&want[i][tk], &o, 4);
        }
      std::vector<uint8_t> panel(kt.iq2_xxs_panel_bytes(k));
      constexpr int64_t ldo = 9;
      constexpr uint32_t kCanary = 0x7FC0DEADu;
      for (int nt = 1; nt <= kQPanelTokens; ++nt)
        for (int t0 : {0, kQPanelTokens - nt}) {
          std::fill(panel.begin(), panel.end(), uint8_t{0xA5});  // pack must not rely on zeros
          kt.iq2_xxs_pack(xp + t0, nt, k, panel.data());
          for (int nr : {1, 3, 4, 5, kRows})
            for (int r0 : {0, kRows - nr}) {
              std::vector<uint32_t> buf(static_cast<size_t>(8 + kQPanelTokens * ldo + 8), kCanary);
              float* out = reinterpret_cast<float*>(buf.data() + 8);
              kt.iq2_xxs_panel(w.data() + static_cast<size_t>(r0) * row_bytes, row_bytes, nr,
                               panel.data(), nt, k, out, ldo);
              for (size_t e = 0; e < buf.size(); ++e) {
                const int64_t off = static_cast<int64_t>(e) - 8;
                const int64_t tt = off >= 0 ? off / ldo : -1, ii = off >= 0 ? off % ldo : -1;
                const bool inside = off >= 0 && tt < nt && ii < nr;
                if (!inside) {
                  ASSERT_EQ(buf[e], kCanary) << "write outside the tile at " << off << " nt=" << nt;
                  continue;
                }
                ASSERT_EQ(buf[e], want[r0 + ii][t0 + tt])
                    << dsv4::backend::simd_level_name(l) << " k=" << k << " nr=" << nr
                    << " r0=" << r0 << " nt=" << nt << " t0=" << t0 << " t=" << tt << " i=" << ii;
              }
            }
        }
    }
  }
  if (dsv4::backend::simd_level_supported(SimdLevel::kAvx512)) {
    EXPECT_TRUE(any) << "avx512 level without iq2_xxs_panel";
  }
}

}  // namespace
