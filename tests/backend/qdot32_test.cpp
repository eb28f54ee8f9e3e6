// Integer dots over q8_0 activations (src/backend/cpu/qdot.h: quantize_q8_0 and the q8_0, mxfp4,
// iq4_nl tile functions), at every SIMD level this machine supports:
//   (i)   quantize_q8_0 bytes == quant::quantize_act_q8_0 (random rows, zeros, all-zero blocks,
//         exact ties at (n + 0.5)·d, huge and tiny magnitudes, fp16-subnormal and fp16-inf d),
//         and both == upstream ggml-cpu's quantize_row_q8_0 on its fixture
//         (tests/fixtures/quant/q8_0_upstream.bin, scripts/fixtures/make_q8_0_fixture.sh);
//   (ii)  tile values vs a float64 reference from the dequantized rows (quant::dequantize_row of
//         the weight row and of the q8_0 activation row, Σ in double), k = 32, 64, 224, 2048, 4096,
//         weights with extreme block scales (mxfp4 e = 0, 1, 127, 200, 254, 255; q8_0 values −128
//         and 127);
//   (iii) each out(i, t) bit-identical whatever nr, nt (1..4) and the tile position;
//   (iv)  out written only at t·ldo + i (i < nr, t < nt): everything else is a NaN sentinel,
//         checked bit for bit, with guard words before and after.
//
// Error bound of (ii). The reference is exact: every dequantized value is an fp16 (or 2^(e−128))
// times an integer of ≤ 8 bits, so products are exact in float64 and the float64 sum's error
// (~2^-53 relative) is negligible. A level computes per block p = fl(dw·dx) (relative error ≤ u,
// u = 2^-24), the term S·p (exact S; the product rounded at most once more), then sums the terms
// along a lane (≤ nb terms: ≤ (nb − 1)·u·Σ|terms|) and reduces ≤ 16 lanes (≤ 4 more roundings).
// So |out − ref| ≤ (nb + 6)·u·Σ_b |p_b·S_b| (first order), and Σ_b |dw·dx·S_b| ≤ Σ_j |w_j·x_j|.
// The test uses (nb + 8)·u·Σ_j |w_j·x_j| plus an absolute nb·2^-130 for blocks whose p is an f32
// subnormal (mxfp4 e < 2: p's rounding is then absolute, ≤ 2^-150, times |S| < 2^20).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "dsv4/backend/cpu/cpu_ops.h"
#include "dsv4/core/dtypes.h"
#include "dsv4/quant/blocks.h"
#include "dsv4/quant/quant.h"
#include "simd_levels.h"
// Internal kernel table (tested directly).
#include "../../src/backend/cpu/qdot.h"

namespace {

using dsv4::backend::SimdLevel;
using dsv4::backend::cpu::QDotKernels;
using dsv4::backend::cpu::QDotTileFn;
using dsv4::quant::QType;

constexpr size_t kQ8 = sizeof(dsv4::quant::BlockQ8_0);

std::vector<int> levels() {
  std::vector<int> v;
  for (SimdLevel l : dsv4::test::simd_levels("qdot32")) v.push_back(static_cast<int>(l));
  return v;
}

const char* level_name(int l) { return dsv4::backend::simd_level_name(static_cast<SimdLevel>(l)); }

std::vector<uint8_t> ref_quantize(const std::vector<float>& x) {
  std::vector<uint8_t> q(x.size() / 32 * kQ8);
  dsv4::quant::quantize_act_q8_0(x.data(), reinterpret_cast<dsv4::quant::BlockQ8_0*>(q.data()),
                                 static_cast<int64_t>(x.size()));
  return q;
}

// ---- (i) quantize_q8_0 -------------------------------------------------------------------------
std::vector<float> quant_test_row(std::mt19937& rng, int nb) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> ui(-127, 126);
  std::vector<float> x(static_cast<size_t>(nb) * 32);
  for (int b = 0; b < nb; ++b) {
    float* y = x.data() + b * 32;
    const int kind = b % 10;
    for (int j = 0; j < 32; ++j) y[j] = nd(rng);
    switch (kind) {
      case 0: for (int j = 0; j < 32; ++j) y[j] = 0.0f; break;        // all-zero block
      case 1: for (int j = 0; j < 32; j += 3) y[j] = 0.0f; y[5] = -0.0f; break;
      case 2:  // amax = 127·2^m: d = 2^m exactly, values (n + 0.5)·2^m are exact ties
      case 3: {
        const float s = std::ldexp(1.0f, kind == 2 ? 0 : -7);
        for (int j = 0; j < 32; ++j) y[j] = (static_cast<float>(ui(rng)) + 0.5f) * s;
        y[7] = 127.0f * s;
        y[8] = -126.5f * s;
        y[9] = std::nextafter(0.5f, 0.0f) * s;  // just below a tie
        y[10] = -std::nextafter(2.5f, 3.0f) * s;  // just above
        break;
      }
      case 4: for (int j = 0; j < 32; ++j) y[j] *= 1e30f; break;     // huge, d = fp16 inf
      case 5: for (int j = 0; j < 32; ++j) y[j] *= 3e36f; y[3] = 3.4e38f; break;
      case 6: for (int j = 0; j < 32; ++j) y[j] *= 1e-30f; break;    // tiny (d fp16 zero)
      case 7: for (int j = 0; j < 32; ++j) y[j] *= 1e-5f; break;     // d fp16 subnormal
      case 8: for (int j = 0; j < 32; ++j) y[j] *= 65504.0f * 127.0f / 4.0f; break;  // near fp16 max
      default: break;
    }
  }
  return x;
}

TEST(Qdot32, QuantizeQ8_0MatchesReference) {
  std::mt19937 rng(1234);
  for (int level : levels()) {
    const QDotKernels& kt = dsv4::backend::cpu::qdot_kernels(level);
    ASSERT_NE(kt.quantize_q8_0, nullptr) << level_name(level);
    std::printf("[qdot32] quantize_q8_0 at level %s\n", level_name(level));
    for (int nb : {1, 3, 10, 37, 128}) {
      for (int rep = 0; rep < 4; ++rep) {
        const std::vector<float> x = quant_test_row(rng, nb);
        const std::vector<uint8_t> want = ref_quantize(x);
        std::vector<uint8_t> got(want.size() + 8, 0xA5);
        kt.quantize_q8_0(x.data(), got.data(), static_cast<int64_t>(x.size()));
        for (size_t b = 0; b < want.size(); ++b)
          ASSERT_EQ(got[b], want[b]) << level_name(level) << " nb=" << nb << " byte " << b << " (block "
                                     << b / kQ8 << ")";
        for (size_t b = want.size(); b < got.size(); ++b) ASSERT_EQ(got[b], 0xA5) << "overwrite";
      }
    }
  }
}

// Opens tests/fixtures/quant/NAME, checks its 8-byte magic and reads the u32 count after it;
// *f is left at the payload (nullptr on a failed assertion).
void open_fixture(const char* name, const char* magic, std::FILE** f, uint32_t* count) {
  const std::string path = std::string(DSV4_FIXTURES_DIR) + "/quant/" + name;
  *f = std::fopen(path.c_str(), "rb");
  ASSERT_NE(*f, nullptr) << path;
  char m[8] = {};
  ASSERT_EQ(std::fread(m, 1, 8, *f), 8u);
  ASSERT_EQ(std::fread(count, 4, 1, *f), 1u);
  ASSERT_EQ(std::memcmp(m, magic, 8), 0) << path;
  ASSERT_GT(*count, 0u) << path;
}

// Fixture layout (little-endian): "Q80UPS1\0", u32 nblocks, f32 x[nblocks·32], nblocks ×
// block_q8_0 (34 bytes) as written by upstream ggml-cpu's quantize_row_q8_0 (x86 AVX2 path).
// The file quantizer (quant::quantize_row, = quantize_row_q8_0_ref) must differ from it on
// some of these blocks, or the fixture would not tell the two apart.
TEST(Qdot32, QuantizeQ8_0MatchesUpstreamFixture) {
  std::FILE* f = nullptr;
  uint32_t nb = 0;
  ASSERT_NO_FATAL_FAILURE(open_fixture("q8_0_upstream.bin", "Q80UPS1", &f, &nb));
  std::vector<float> x(static_cast<size_t>(nb) * 32);
  std::vector<uint8_t> want(static_cast<size_t>(nb) * kQ8);
  ASSERT_EQ(std::fread(x.data(), 4, x.size(), f), x.size());
  ASSERT_EQ(std::fread(want.data(), 1, want.size(), f), want.size());
  std::fclose(f);
  const std::vector<uint8_t> ref = ref_quantize(x);
  for (uint32_t b = 0; b < nb; ++b)
    ASSERT_EQ(std::memcmp(&ref[b * kQ8], &want[b * kQ8], kQ8), 0) << "quantize_act_q8_0, block " << b;
  for (int level : levels()) {
    std::vector<uint8_t> got(want.size());
    dsv4::backend::cpu::qdot_kernels(level).quantize_q8_0(x.data(), got.data(), static_cast<int64_t>(x.size()));
    for (uint32_t b = 0; b < nb; ++b)
      ASSERT_EQ(std::memcmp(&got[b * kQ8], &want[b * kQ8], kQ8), 0) << level_name(level) << ", block " << b;
  }
  std::vector<uint8_t> file(want.size());
  ASSERT_TRUE(dsv4::quant::quantize_row(QType::kQ8_0, x.data(), file.data(), static_cast<int64_t>(x.size())));
  int differ = 0;
  for (uint32_t b = 0; b < nb; ++b) differ += std::memcmp(&file[b * kQ8], &want[b * kQ8], kQ8) != 0;
  std::printf("[qdot32] file quantizer differs from upstream's activation quantizer on %d of %u blocks\n",
              differ, nb);
  EXPECT_GT(differ, 0);
}

// ---- weights ----------------------------------------------------------------------------------
struct Matrix {
  QType type;
  int64_t k;
  int rows;
  size_t row_bytes;
  std::vector<uint8_t> data;  // exact size (ASan catches over-reads)
};

// Random blocks. extreme: q8_0 blocks of −128 / 127 runs; mxfp4 e from {0, 1, 127, 200, 254, 255}
// (the activations are made small enough that the float32 sums stay finite).
Matrix make_weights(std::mt19937& rng, QType type, int64_t k, int rows, bool extreme) {
  Matrix m{type, k, rows, 0, {}};
  const int64_t nb = k / 32;
  const size_t bs = type == QType::kQ8_0 ? 34 : type == QType::kMXFP4 ? 17 : 18;
  m.row_bytes = static_cast<size_t>(nb) * bs;
  m.data.resize(m.row_bytes * static_cast<size_t>(rows));
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> ud(0.01f, 1.0f);
  for (int r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* p = m.data.data() + static_cast<size_t>(r) * m.row_bytes + static_cast<size_t>(b) * bs;
      for (size_t j = 0; j < bs; ++j) p[j] = static_cast<uint8_t>(byte(rng));
      if (type == QType::kMXFP4) {
        static constexpr int kExt[] = {0, 1, 127, 200, 254, 255};
        p[0] = extreme ? static_cast<uint8_t>(kExt[byte(rng) % 6])
                       : static_cast<uint8_t>(117 + byte(rng) % 21);
      } else {
        const uint16_t d = dsv4::f32_to_fp16(ud(rng) * (type == QType::kQ8_0 ? 0.01f : 0.002f));
        std::memcpy(p, &d, 2);
        if (type == QType::kQ8_0 && extreme) {
          const int mode = byte(rng) % 3;
          for (int j = 0; j < 32; ++j) {
            if (mode == 0) p[2 + j] = 0x80;                           // all −128
            if (mode == 1) p[2 + j] = 0x7F;                           // all 127
            if (mode == 2) p[2 + j] = (j % 2) ? 0x80 : p[2 + j];      // mixed
          }
        }
      }
    }
  }
  return m;
}

std::vector<float> activation_row(std::mt19937& rng, int64_t k, float scale) {
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> x(static_cast<size_t>(k));
  for (auto& v : x) v = nd(rng);
  // make some activation values hit ±127 and some blocks zero
  if (k >= 64) for (int j = 32; j < 64; ++j) x[static_cast<size_t>(j)] = 0.0f;
  return x;
}

// quant::dequantize_row in float64. MXFP4 with e ≥ 254: 2^(e−128)·kv overflows the float32 the
// dequantizer writes (±inf for |kv| ≥ 4 at e = 254, ≥ 2 at e = 255); such values are taken in
// float64 from the same definition (scale e8m0_to_f32_half(e), integer kKvaluesMxfp4), which is
// what the integer kernels (and upstream's ggml_vec_dot_mxfp4_q8_0) compute.
std::vector<double> dequant(QType type, const uint8_t* p, int64_t k) {
  std::vector<float> y(static_cast<size_t>(k));
  EXPECT_TRUE(dsv4::quant::dequantize_row(type, p, y.data(), k).is_ok());
  std::vector<double> r(y.begin(), y.end());
  if (type == QType::kMXFP4) {
    static constexpr int kv[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
    for (int64_t j = 0; j < k; ++j) {
      const uint8_t* b = p + static_cast<size_t>(j / 32) * 17;
      const int e = j % 32;
      const int code = e < 16 ? (b[1 + e] & 0xF) : (b[1 + e - 16] >> 4);
      const double v = static_cast<double>(dsv4::quant::e8m0_to_f32_half(b[0])) * kv[code];
      if (std::isfinite(y[static_cast<size_t>(j)])) {
        EXPECT_EQ(v, r[static_cast<size_t>(j)]);
      }
      r[static_cast<size_t>(j)] = v;
    }
  }
  return r;
}

struct Case {
  QType type;
  const char* name;
  QDotTileFn QDotKernels::*fn;
};
const Case kCases[] = {
    {QType::kQ8_0, "q8_0", &QDotKernels::q8_0},
    {QType::kMXFP4, "mxfp4", &QDotKernels::mxfp4},
    {QType::kIQ4_NL, "iq4_nl", &QDotKernels::iq4_nl},
};

constexpr uint32_t kSentinel = 0x7FC0DEADu;  // a NaN no kernel produces by chance
float sentinel() {
  float f;
  std::memcpy(&f, &kSentinel, 4);
  return f;
}
uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// One tile call with guarded output: out has ldo = nr + 3 and nt rows, plus 16 guard floats each
// side; checks that only (t, i < nr) entries were written. Returns out[t][i] as [t·4 + i].
std::vector<float> guarded_call(QDotTileFn fn, const Matrix& m, int r0, int nr,
                                const std::vector<const void*>& xq, int t0, int nt,
                                const std::string& what) {
  const int64_t ldo = nr + 3;
  const size_t guard = 16;
  std::vector<float> buf(guard * 2 + static_cast<size_t>(ldo) * static_cast<size_t>(nt), sentinel());
  float* out = buf.data() + guard;
  fn(m.data.data() + static_cast<size_t>(r0) * m.row_bytes, m.row_bytes, nr, xq.data() + t0, nt,
     m.k, out, ldo);
  std::vector<float> res(16, 0.0f);
  for (size_t j = 0; j < buf.size(); ++j) {
    const bool inside = j >= guard && j < guard + static_cast<size_t>(ldo * nt);
    const int64_t o = static_cast<int64_t>(j) - static_cast<int64_t>(guard);
    const bool written = inside && (o % ldo) < nr;
    if (written) {
      res[static_cast<size_t>((o / ldo) * 4 + (o % ldo))] = buf[j];
    } else {
      EXPECT_EQ(bits(buf[j]), kSentinel) << what << ": wrote outside the tile at offset " << o;
    }
  }
  return res;
}

void check_type(const Case& c, const QDotKernels& kt, const std::string& label, int64_t k, bool extreme,
                std::mt19937& rng) {
  const QDotTileFn fn = kt.*(c.fn);
  ASSERT_NE(fn, nullptr) << c.name << " at " << label;
  constexpr int kRows = 6, kTok = 6;
  const Matrix m = make_weights(rng, c.type, k, kRows, extreme);
  // mxfp4 with e up to 255 (scale 2^127): activations ~1e-3 keep every sum finite.
  const float xscale = (extreme && c.type == QType::kMXFP4) ? 1e-3f : 1.0f;
  std::vector<std::vector<uint8_t>> xqs;
  std::vector<const void*> xq;
  for (int t = 0; t < kTok; ++t) xqs.push_back(ref_quantize(activation_row(rng, k, xscale)));
  // a level with prepared activations (qdot.h) takes its prepared rows
  const size_t pb = kt.prepare != nullptr ? kt.prepared_bytes(c.type, k) : 0;
  std::vector<std::vector<uint8_t>> xps;
  for (auto& v : xqs) {
    if (pb == 0) {
      xq.push_back(v.data());
      continue;
    }
    xps.emplace_back(pb);
    kt.prepare(c.type, v.data(), k, xps.back().data());
  }
  for (auto& v : xps) xq.push_back(v.data());
  const std::string what = std::string(c.name) + " " + label + " k=" + std::to_string(k) +
                           (extreme ? " extreme" : "");

  // (ii) accuracy of each single (row, token), from 1×1 calls.
  const int64_t nb = k / 32;
  std::vector<float> single(kRows * kTok);
  for (int r = 0; r < kRows; ++r) {
    const std::vector<double> w = dequant(c.type, m.data.data() + static_cast<size_t>(r) * m.row_bytes, k);
    for (int t = 0; t < kTok; ++t) {
      const std::vector<double> x = dequant(QType::kQ8_0, xqs[static_cast<size_t>(t)].data(), k);
      double ref = 0.0, mag = 0.0;
      for (int64_t j = 0; j < k; ++j) {
        ref += w[static_cast<size_t>(j)] * x[static_cast<size_t>(j)];
        mag += std::fabs(w[static_cast<size_t>(j)] * x[static_cast<size_t>(j)]);
      }
      const float got = guarded_call(fn, m, r, 1, xq, t, 1, what)[0];
      single[static_cast<size_t>(r * kTok + t)] = got;
      const double bound = static_cast<double>(nb + 8) * std::ldexp(1.0, -24) * mag * 1.001 +
                           static_cast<double>(nb) * std::ldexp(1.0, -130);
      ASSERT_TRUE(std::isfinite(got)) << what;
      ASSERT_LE(std::fabs(static_cast<double>(got) - ref), bound)
          << what << " row " << r << " tok " << t << " got " << got << " ref " << ref;
    }
  }
  // (iii) + (iv): every nr, nt, position gives the 1×1 values bit for bit; no stray writes.
  for (int nr = 1; nr <= 4; ++nr) {
    for (int nt = 1; nt <= 4; ++nt) {
      for (int r0 = 0; r0 + nr <= kRows; ++r0) {
        for (int t0 = 0; t0 + nt <= kTok; ++t0) {
          const std::vector<float> o = guarded_call(fn, m, r0, nr, xq, t0, nt, what);
          for (int t = 0; t < nt; ++t) {
            for (int i = 0; i < nr; ++i) {
              ASSERT_EQ(bits(o[static_cast<size_t>(t * 4 + i)]),
                        bits(single[static_cast<size_t>((r0 + i) * kTok + t0 + t)]))
                  << what << " nr=" << nr << " nt=" << nt << " r0=" << r0 << " t0=" << t0 << " (" << i
                  << "," << t << ")";
            }
          }
        }
      }
    }
  }
}

// The avx512 level's tables: the one CpuOps uses (mxfp4 in quads where the CPU has VBMI) and,
// on such CPUs, the block-pair mxfp4 table other VNNI CPUs get.
std::vector<std::pair<std::string, QDotKernels>> avx512_tables() {
  std::vector<std::pair<std::string, QDotKernels>> v;
  const QDotKernels& kt = dsv4::backend::cpu::qdot_kernels(2);
  v.emplace_back(kt.mxfp4_quads ? "avx512 (vnni, mxfp4 quads)" : "avx512", kt);
  if (kt.mxfp4_quads) {
    QDotKernels pairs = kt;
    dsv4::backend::cpu::fill_qdot32_pairs_avx512(pairs, false);
    v.emplace_back("avx512 (vnni, mxfp4 pairs)", pairs);
  }
  return v;
}

// The avx512 level's SIMD prepare writes exactly the bytes of its scalar reference, every lane
// order (q8_0: natural; mxfp4 / iq4_nl: split; mxfp4 quads), block counts with every tail.
TEST(Qdot32, PreparedActivationsEqualScalarReference) {
  if (!dsv4::backend::simd_level_supported(SimdLevel::kAvx512)) GTEST_SKIP() << "no avx512";
  std::mt19937 rng(7);
  for (const auto& [label, kt] : avx512_tables()) {
    const auto ref = dsv4::backend::cpu::qdot32_pairs_prepare_reference(kt.mxfp4_quads);
    if (kt.prepare == nullptr || ref == nullptr) GTEST_SKIP() << "no prepared activations at this level/CPU";
    for (QType t : {QType::kQ8_0, QType::kMXFP4, QType::kIQ4_NL}) {
      for (int64_t k : {32, 64, 96, 128, 32 * 5, 32 * 7, 4096}) {
        const std::vector<uint8_t> xq = ref_quantize(activation_row(rng, k, 1.0f));
        const size_t pb = kt.prepared_bytes(t, k);
        ASSERT_GT(pb, 0u);
        std::vector<uint8_t> a(pb, 0xAB), b(pb, 0xCD);
        kt.prepare(t, xq.data(), k, a.data());
        ref(t, xq.data(), k, b.data());
        EXPECT_EQ(a, b) << label << " k=" << k;
      }
    }
  }
}

TEST(Qdot32, TilesAccurateAndDeterministic) {
  std::mt19937 rng(42);
  std::vector<std::pair<std::string, QDotKernels>> tables;
  for (int level : levels()) {
    if (level == 2) {
      for (auto& t : avx512_tables()) tables.push_back(t);
    } else {
      tables.emplace_back(level_name(level), dsv4::backend::cpu::qdot_kernels(level));
    }
  }
  for (const auto& [label, kt] : tables) {
    for (const Case& c : kCases) {
      std::printf("[qdot32] %s tile at level %s\n", c.name, label.c_str());
      for (int64_t k : {32, 64, 96, 32 * 5, 32 * 7, 2048, 4096}) {
        for (bool extreme : {false, true}) {
          if (extreme && c.type == QType::kIQ4_NL) continue;
          check_type(c, kt, label, k, extreme, rng);
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

// ---- bf16 × bf16 (qdot_bf16.cpp, CPUs with AVX512-BF16) ----------------------------------------
// (a) bit-equal to upstream's ggml_vec_dot_bf16 on its fixture (tests/fixtures/quant/
//     bf16_dot_upstream.bin, scripts/fixtures/make_bf16dot_fixture.sh; vdpbf16ps path);
// (b) quantize_bf16 bytes == f32_to_bf16 of every value (NaN, ±inf, ties);
// (c) every (row, token) of every tile shape equal to the 1 × 1 call, nothing written outside,
//     and within (k + 8)·2^-24·Σ|w·x| of the float64 dot (vdpbf16ps: exact products, one
//     rounding per add; inputs here are normal, so its flush-to-zero never acts).
TEST(Qdot32, Bf16MatchesUpstreamFixture) {
  const QDotKernels& kt = dsv4::backend::cpu::qdot_kernels(2);
  if (kt.bf16 == nullptr) GTEST_SKIP() << "no AVX512-BF16 on this CPU";
  std::FILE* f = nullptr;
  uint32_t nc = 0;
  ASSERT_NO_FATAL_FAILURE(open_fixture("bf16_dot_upstream.bin", "BF16DOT1", &f, &nc));
  for (uint32_t c = 0; c < nc; ++c) {
    uint32_t k = 0;
    ASSERT_EQ(std::fread(&k, 4, 1, f), 1u);
    std::vector<uint16_t> w(k), x(k);
    float want = 0.0f;
    ASSERT_EQ(std::fread(w.data(), 2, k, f), k);
    ASSERT_EQ(std::fread(x.data(), 2, k, f), k);
    ASSERT_EQ(std::fread(&want, 4, 1, f), 1u);
    const void* xp[1] = {x.data()};
    float got = 0.0f;
    kt.bf16(reinterpret_cast<const uint8_t*>(w.data()), 2 * k, 1, xp, 1, k, &got, 1);
    EXPECT_EQ(bits(got), bits(want)) << "case " << c << " k=" << k << " got " << got << " want " << want;
  }
  std::fclose(f);
}

TEST(Qdot32, Bf16TilesAccurateAndDeterministic) {
  const QDotKernels& kt = dsv4::backend::cpu::qdot_kernels(2);
  if (kt.bf16 == nullptr) GTEST_SKIP() << "no AVX512-BF16 on this CPU";
  // (b)
  const float specials[] = {0.0f, -0.0f, 1.0f, 1.00390625f, 1.01171875f, -3.3e38f, 1e-40f,
                            std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(), 1.0e38f, 65504.0f};
  std::vector<float> sx(std::begin(specials), std::end(specials));
  std::mt19937 rng(99);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (int i = 0; i < 100; ++i) sx.push_back(nd(rng));
  std::vector<uint16_t> q(sx.size());
  kt.quantize_bf16(sx.data(), q.data(), static_cast<int64_t>(sx.size()));
  for (size_t i = 0; i < sx.size(); ++i) EXPECT_EQ(q[i], dsv4::f32_to_bf16(sx[i])) << "value " << sx[i];
  // (c)
  constexpr int kRows = 6, kTok = 6;
  for (int64_t k : {32, 64, 96, 160, 4096}) {
    std::vector<uint16_t> w(static_cast<size_t>(kRows * k)), x(static_cast<size_t>(kTok * k));
    for (auto& v : w) v = dsv4::f32_to_bf16(nd(rng));
    for (auto& v : x) v = dsv4::f32_to_bf16(nd(rng));
    const size_t rb = static_cast<size_t>(2 * k);
    std::vector<const void*> xp;
    for (int t = 0; t < kTok; ++t) xp.push_back(x.data() + t * k);
    const auto* wb = reinterpret_cast<const uint8_t*>(w.data());
    float single[kRows][kTok];
    for (int r = 0; r < kRows; ++r)
      for (int t = 0; t < kTok; ++t) {
        kt.bf16(wb + r * rb, rb, 1, xp.data() + t, 1, k, &single[r][t], 1);
        double ref = 0.0, mag = 0.0;
        for (int64_t j = 0; j < k; ++j) {
          const double p = static_cast<double>(dsv4::bf16_to_f32(w[r * k + j])) * dsv4::bf16_to_f32(x[t * k + j]);
          ref += p;
          mag += std::fabs(p);
        }
        ASSERT_LE(std::fabs(single[r][t] - ref), static_cast<double>(k + 8) * std::ldexp(1.0, -24) * mag)
            << "k=" << k << " r=" << r << " t=" << t;
      }
    constexpr int64_t ldo = 7;
    constexpr uint32_t kCanary = 0x7FC0DEADu;
    for (int nr = 1; nr <= 4; ++nr)
      for (int nt = 1; nt <= 4; ++nt)
        for (int r0 = 0; r0 + nr <= kRows; r0 += 2)
          for (int t0 = 0; t0 + nt <= kTok; t0 += 2) {
            std::vector<uint32_t> buf(static_cast<size_t>(8 + 4 * ldo + 8), kCanary);
            float* out = reinterpret_cast<float*>(buf.data() + 8);
            kt.bf16(wb + r0 * rb, rb, nr, xp.data() + t0, nt, k, out, ldo);
            for (size_t e = 0; e < buf.size(); ++e) {
              const int64_t off = static_cast<int64_t>(e) - 8;
              const int64_t tt = off >= 0 ? off / ldo : -1, ii = off >= 0 ? off % ldo : -1;
              if (!(off >= 0 && tt < nt && ii < nr)) {
                ASSERT_EQ(buf[e], kCanary) << "write outside the tile at " << off;
                continue;
              }
              ASSERT_EQ(buf[e], bits(single[r0 + ii][t0 + tt]))
                  << "k=" << k << " nr=" << nr << " nt=" << nt << " r0=" << r0 << " t0=" << t0;
            }
          }
  }
}

}  // namespace
