// Op tests (issue 5 scope 1): every op of ops.h in the cpu backend, at every SIMD level this
// machine supports, against the float64 reference RefOps; plus dequantization bit-exactness,
// determinism (batch and thread-count invariance) and the thread pool.
//
// Shapes: n = 1, 7, 64, 513 tokens; dimensions that are not multiples of 8 wherever the op allows
// (f32/f16/bf16 weights, norms, HC, RoPE, attention, indexer); strided inputs/outputs. Every output
// buffer is surrounded by guard floats (a NaN sentinel) and every element an op must not write
// (strides, score entries beyond n_vis) is pre-filled with it and checked afterwards, bit for bit.
//
// NMSE = Σ(cpu − ref)² / Σ ref², ref in float64 (rounded to float32 once). Bounds (justified where
// they are used) follow from float32 rounding (unit roundoff u = 2^-24 ≈ 6e-8): a result with
// relative error ~c·u has NMSE ~c²·u² ≈ c²·3.6e-15.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "dsv4/backend/cpu/cpu_ops.h"
#include "dsv4/backend/ref/ref_ops.h"
#include "dsv4/core/dtypes.h"
#include "dsv4/core/thread_pool.h"
#include "dsv4/quant/act_quant.h"
#include "dsv4/quant/quant.h"
#include "simd_levels.h"
// Internal kernel table (tested directly: dot_tile must equal dot bit for bit).
#include "../../src/backend/cpu/kernels.h"

namespace {

using dsv4::backend::ActQuant;
using dsv4::backend::CpuOps;
using dsv4::backend::ExpertWeights;
using dsv4::backend::HcWeights;
using dsv4::backend::RefOps;
using dsv4::backend::SimdLevel;
using dsv4::backend::Weight;
using dsv4::quant::QType;

const int64_t kNs[] = {1, 7, 64, 513};

// ---- helpers -------------------------------------------------------------------------------------

const std::vector<SimdLevel>& levels() { return dsv4::test::simd_levels("ops"); }

constexpr uint32_t kSentinelBits = 0x7FBADBADu;  // a NaN no op produces
constexpr size_t kGuard = 16;

// A float buffer of n elements with kGuard sentinel floats on each side; `fill` initialises the
// inner elements (sentinel when an op must leave some of them alone).
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

// Worst NMSE seen per op, printed at the end of the run (for the record; bounds are per check).
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
    for (const auto& [op, v] : worst_nmse()) std::printf("[ops] worst NMSE %-10s %.3g\n", op.c_str(), v);
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

// ---- random weights of every type ----------------------------------------------------------------

struct OwnedWeight {
  std::vector<uint8_t> bytes;
  Weight w;
};

void put_f16(uint8_t* p, float v) {
  const uint16_t h = dsv4::f32_to_fp16(v);
  std::memcpy(p, &h, 2);
}

// Sets the super-block scale (and min scale) of one block of a K/IQ/simple f16-scaled type.
void set_scale(QType t, uint8_t* b, float d) {
  switch (t) {
    case QType::kQ2_K: put_f16(b + 80, d); put_f16(b + 82, d); return;
    case QType::kQ3_K: put_f16(b + 108, d); return;
    case QType::kQ6_K: put_f16(b + 208, d); return;
    case QType::kQ4_K:
    case QType::kQ5_K: put_f16(b, d); put_f16(b + 2, d); return;
    case QType::kIQ1_M: {
      const uint16_t h = dsv4::f32_to_fp16(d);
      for (int k = 0; k < 4; ++k) {
        uint16_t s = static_cast<uint16_t>(b[48 + 2 * k] | (b[49 + 2 * k] << 8));
        s = static_cast<uint16_t>((s & 0x0FFF) | (((h >> (4 * k)) & 0xF) << 12));
        b[48 + 2 * k] = static_cast<uint8_t>(s);
        b[49 + 2 * k] = static_cast<uint8_t>(s >> 8);
      }
      return;
    }
    default: put_f16(b, d); return;  // q8_0, q2_0, iq4_nl and the IQ types: d first
  }
}

// rows × cols of `type` with random valid blocks (finite scales), values of RMS about sigma.
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
  o.bytes.resize(static_cast<size_t>(rows) * o.w.row_bytes + 7);  // +7: odd tail for alignment
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
    case QType::kMXFP4:  // e: shared exponent; codes ≤ 12 (doubled e2m1) · 2^(e−128)
      for (size_t b = 0; b < nb; ++b) {
        uint8_t* blk = p + b * info->type_size;
        for (size_t i = 0; i < info->type_size; ++i) blk[i] = static_cast<uint8_t>(rng());
        blk[0] = static_cast<uint8_t>(118 + rng() % 6);
      }
      break;
    case QType::kF8_E4M3_B128:  // e8m0 scale near 2^-8; codes without the NaN pattern
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
      // calibrate the scale so that the values' RMS is about sigma
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
  // place the data at an odd offset to exercise unaligned loads (row_bytes may be odd anyway)
  std::memmove(p + 7, p, static_cast<size_t>(rows) * o.w.row_bytes);
  o.w.data = p + 7;
  return o;
}

std::vector<QType> all_types() {
  return {QType::kF32,    QType::kF16,     QType::kBF16,    QType::kQ8_0,   QType::kQ2_K,
          QType::kQ3_K,   QType::kQ4_K,    QType::kQ5_K,    QType::kQ6_K,   QType::kIQ2_XXS,
          QType::kIQ2_XS, QType::kIQ2_S,   QType::kIQ3_XXS, QType::kIQ3_S,  QType::kIQ1_S,
          QType::kIQ1_M,  QType::kIQ4_NL,  QType::kIQ4_XS,  QType::kMXFP4,  QType::kF8_E4M3_B128,
          QType::kQ2_0};
}

std::string tname(QType t) { return std::string(dsv4::quant::qtype_info(t)->name); }

// Columns for a matmul test of a type: odd for the per-element types, else a couple of blocks.
int64_t test_cols(QType t) {
  const int64_t bs = dsv4::quant::qtype_info(t)->block_size;
  if (bs == 1) return 203;
  if (bs >= 256) return 512;
  if (bs == 128) return 384;
  return 5 * bs;  // 32 → 160, 64 → 320
}

// ---- thread pool ---------------------------------------------------------------------------------

TEST(ThreadPool, EveryTaskOnceStaticChunks) {
  for (int threads : {1, 2, 3, 5}) {
    dsv4::ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 3, 7, 100, 1001}) {
      for (int rep = 0; rep < 3; ++rep) {
        std::vector<std::atomic<int>> hit(static_cast<size_t>(n));
        std::vector<int> owner(static_cast<size_t>(n), -1);
        pool.parallel_for(n, [&](int64_t b, int64_t e, int t) {
          for (int64_t i = b; i < e; ++i) {
            hit[static_cast<size_t>(i)].fetch_add(1);
            owner[static_cast<size_t>(i)] = t;
          }
        });
        const int64_t T = std::min<int64_t>(threads, std::max<int64_t>(n, 1));
        for (int64_t i = 0; i < n; ++i) {
          EXPECT_EQ(hit[static_cast<size_t>(i)].load(), 1);
          // chunk t = [t·n/T, (t+1)·n/T)
          const int t = owner[static_cast<size_t>(i)];
          EXPECT_GE(i, n * t / T);
          EXPECT_LT(i, n * (t + 1) / T);
        }
      }
    }
  }
}

TEST(ThreadPool, MaxThreadsAndNested) {
  dsv4::ThreadPool pool(4);
  std::atomic<int> max_t{0};
  pool.parallel_for(100, [&](int64_t, int64_t, int t) {
    int m = max_t.load();
    while (t > m && !max_t.compare_exchange_weak(m, t)) {}
  }, 2);
  EXPECT_LE(max_t.load(), 1);
  std::atomic<int64_t> sum{0};
  pool.parallel_for(8, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      pool.parallel_for(10, [&](int64_t b2, int64_t e2) { sum.fetch_add(e2 - b2); });  // inline
  });
  EXPECT_EQ(sum.load(), 80);
}

TEST(ThreadPool, ClaimedChunksCoverEveryTaskOnce) {
  for (int threads : {1, 2, 3}) {
    dsv4::ThreadPool pool(threads);
    for (int64_t n : {0, 1, 2, 7, 100, 1001}) {
      for (int64_t chunks : {0, 1, 2, 16, 5000, 100000}) {
        std::vector<std::atomic<int>> hit(static_cast<size_t>(n));
        std::atomic<int> calls{0};
        pool.parallel_for_chunks(n, chunks, [&](int64_t b, int64_t e) {
          EXPECT_LT(b, e);
          calls.fetch_add(1);
          for (int64_t i = b; i < e; ++i) hit[static_cast<size_t>(i)].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hit[static_cast<size_t>(i)].load(), 1) << n << " " << chunks;
        // chunk count: max(T, n_chunks) capped by the tasks and the claim word's 16 bits
        const int64_t T = std::min<int64_t>(threads, n);
        const int64_t want = n == 0 ? 0 : T <= 1 ? 1 : std::min<int64_t>({std::max(chunks, T), n, 0xFFFF});
        EXPECT_EQ(calls.load(), want) << threads << " threads, n " << n << ", chunks " << chunks;
      }
    }
  }
}

TEST(ThreadPool, ClaimedChunksGoToTheFasterThread) {
  // The worker is slow (20 ms per chunk); the caller's chunks take no time once the worker holds
  // one (the caller waits for that, ≤ 2 s, so both threads surely take part). With 16 claimed
  // chunks the caller then takes the other 15; a fixed half per thread would give it 8.
  dsv4::ThreadPool pool(2);
  const std::thread::id caller = std::this_thread::get_id();
  std::atomic<int> by_caller{0};
  std::atomic<bool> worker_in{false};
  pool.parallel_for_chunks(16, 16, [&](int64_t b, int64_t e) {
    if (std::this_thread::get_id() == caller) {
      const auto t0 = std::chrono::steady_clock::now();
      while (!worker_in.load() && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2))
        std::this_thread::yield();
      by_caller.fetch_add(static_cast<int>(e - b));
    } else {
      worker_in.store(true);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  ASSERT_TRUE(worker_in.load()) << "the worker never took a chunk";
  EXPECT_GE(by_caller.load(), 12);
}

// ---- construction / dispatch ---------------------------------------------------------------------

TEST(CpuOps, NamesAndEnvOverride) {
  for (SimdLevel l : levels()) {
    auto ops = dsv4::backend::make_cpu_ops(1, l);
    EXPECT_EQ(ops->name(), std::string("cpu[") + dsv4::backend::simd_level_name(l) + "]");
  }
  ::setenv("DSV4_SIMD", "scalar", 1);
  EXPECT_EQ(dsv4::backend::make_cpu_ops(2)->name(), "cpu[scalar]");
  ::unsetenv("DSV4_SIMD");
  const SimdLevel best = dsv4::backend::best_simd_level();
  EXPECT_EQ(dsv4::backend::make_cpu_ops(1)->name(),
            std::string("cpu[") + dsv4::backend::simd_level_name(best) + "]");
  if (!dsv4::backend::simd_level_supported(SimdLevel::kAvx512)) {
    // unsupported request: falls back to the best level (with a warning on stderr)
    EXPECT_EQ(dsv4::backend::make_cpu_ops(1, SimdLevel::kAvx512)->level(), best);
  }
}

// ---- dequantization: bit-exact with quant::dequantize_row, every type, every level --------------

TEST(CpuOps, DequantBitExactEveryTypeEveryLevel) {
  for (QType t : all_types()) {
    const int64_t bs = dsv4::quant::qtype_info(t)->block_size;
    const int64_t n = bs == 1 ? 1031 : 12 * bs;  // f32/f16/bf16: odd count (SIMD tail)
    OwnedWeight w = random_weight(t, 1, n, 1000 + static_cast<uint64_t>(t), 1.0f);
    std::vector<float> want(static_cast<size_t>(n));
    ASSERT_TRUE(dsv4::quant::dequantize_row(t, w.w.data, want.data(), n).is_ok());
    for (SimdLevel l : levels()) {
      auto ops = dsv4::backend::make_cpu_ops(1, l);
      Guarded got(static_cast<size_t>(n));
      ASSERT_TRUE(ops->dequantize_row(t, w.w.data, got.data(), n)) << tname(t);
      EXPECT_TRUE(got.guards_ok()) << tname(t);
      EXPECT_EQ(std::memcmp(want.data(), got.data(), static_cast<size_t>(n) * 4), 0)
          << tname(t) << " at " << ops->name();
    }
  }
}

// ---- matmul ----------------------------------------------------------------------------------------

// Bound 1e-10: each output is one float32 dot product over K ≤ 512 terms split into fixed lanes
// (8/32/64 partial sums of ≤ 64 terms each, then a log-depth reduction). The rounding error of
// such a sum is ≤ ~(K/lanes + log2 lanes)·u·Σ|w·x| in the worst case, and a random walk of that
// in practice; with random signs Σ|w·x| ≈ sqrt(K)·|y|, so the relative error per element is
// ~1e-6 worst case (NMSE ≤ 1e-12) and far less typically (~1e-14 observed). 1e-10 leaves two
// orders of margin over the worst case; a wrong block layout gives NMSE ~1.
constexpr double kMatmulNmse = 1e-10;

// With ActQuant::kQ8 both sides multiply the same quantized activations (the CPU's quantizer is
// byte-identical to the reference's, qdot32_test / qdotK_test): the integer block sums are exact
// and only the float32 combination of ≤ K/32 block terms (and, for the K types, the reference's
// float32 dequantized weights) rounds, so the same bound holds. The quantization itself moves
// the result by NMSE ~1e-5 against float32 activations, so a CPU path that skipped it fails.
void check_matmul(QType type, int64_t rows, const std::vector<int64_t>& ns, int threads,
                  ActQuant aq = ActQuant::kF32) {
  const int64_t cols = test_cols(type);
  OwnedWeight w = random_weight(type, rows, cols, 77 + static_cast<uint64_t>(type));
  RefOps ref;
  ref.set_act_quant(aq);
  for (int64_t n : ns) {
    const int64_t ldx = cols + 3, ldy = rows + 5;
    std::vector<float> x = randn(static_cast<size_t>(n * ldx), 5 + static_cast<uint64_t>(n));
    Guarded want(static_cast<size_t>(n * ldy));
    ref.matmul(w.w, x.data(), ldx, n, want.data(), ldy);
    for (SimdLevel l : levels()) {
      auto ops = dsv4::backend::make_cpu_ops(threads, l);
      ops->set_act_quant(aq);
      Guarded got(static_cast<size_t>(n * ldy));
      ops->matmul(w.w, x.data(), ldx, n, got.data(), ldy);
      ASSERT_TRUE(got.guards_ok()) << tname(type) << " " << ops->name();
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
      EXPECT_LE(track(aq == ActQuant::kQ8 ? "matmul_q8" : "matmul", e.value()), kMatmulNmse)
          << tname(type) << " n=" << n << " rows=" << rows << " " << ops->name() << " act "
          << dsv4::backend::act_quant_name(aq);
    }
  }
}

TEST(CpuOps, MatmulEveryTypeVsRef) {
  for (QType t : all_types()) check_matmul(t, 37, {1, 7, 64}, 2);
}

TEST(CpuOps, MatmulLongBatchVsRef) {
  for (QType t : {QType::kF32, QType::kF16, QType::kBF16, QType::kQ8_0, QType::kMXFP4, QType::kQ2_K,
                  QType::kQ4_K, QType::kIQ2_XXS, QType::kF8_E4M3_B128})
    check_matmul(t, 37, {513}, 2);
}

// The integer path (ActQuant::kQ8) of every type that has one; other types keep float32
// activations in q8 mode, so the float32 bound against the float32 reference holds for them.
const std::vector<QType>& q8_types() {
  static const std::vector<QType> v = {QType::kQ8_0, QType::kMXFP4, QType::kIQ4_NL,
                                       QType::kQ2_K, QType::kQ4_K,  QType::kIQ2_XXS};
  return v;
}

TEST(CpuOps, MatmulQ8EveryTypeVsRef) {
  for (QType t : all_types()) check_matmul(t, 37, {1, 7, 64}, 2, ActQuant::kQ8);
  for (QType t : q8_types()) check_matmul(t, 37, {513}, 2, ActQuant::kQ8);
  for (int64_t rows : {1, 2, 3, 5, 8, 13})
    for (int threads : {1, 3}) check_matmul(QType::kQ8_0, rows, {1, 7}, threads, ActQuant::kQ8);
}

// q8 mode really quantizes: against the float32 reference it is off by the activation rounding.
TEST(CpuOps, MatmulQ8DiffersFromF32) {
  for (QType type : q8_types()) {
    const int64_t K = test_cols(type), rows = 16, n = 3;
    OwnedWeight w = random_weight(type, rows, K, 1700 + static_cast<uint64_t>(type));
    const std::vector<float> x = randn(static_cast<size_t>(n * K), 1701);
    RefOps ref;
    std::vector<float> want(static_cast<size_t>(n * rows));
    ref.matmul(w.w, x.data(), K, n, want.data(), rows);
    for (SimdLevel l : levels()) {
      auto ops = dsv4::backend::make_cpu_ops(1, l);
      ops->set_act_quant(ActQuant::kQ8);
      std::vector<float> got(static_cast<size_t>(n * rows));
      ops->matmul(w.w, x.data(), K, n, got.data(), rows);
      Nmse e;
      for (size_t i = 0; i < got.size(); ++i) e.add(got[i], want[i]);
      // 8-bit blocks: relative error per element ≲ 1/254 of its block's max → NMSE ~1e-6..1e-4
      EXPECT_GT(e.value(), 1e-8) << tname(type) << " " << ops->name();
      EXPECT_LT(e.value(), 1e-3) << tname(type) << " " << ops->name();
    }
  }
}

// A row with inf or NaN gives NaN outputs in q8 mode (as float32 would), never a silent number.
TEST(CpuOps, MatmulQ8NonFiniteRowGivesNan) {
  for (QType type : q8_types()) {
    const int64_t K = test_cols(type), rows = 5, n = 2;
    OwnedWeight w = random_weight(type, rows, K, 1800 + static_cast<uint64_t>(type));
    std::vector<float> x = randn(static_cast<size_t>(n * K), 1801);
    x[static_cast<size_t>(K + 3)] = std::numeric_limits<float>::quiet_NaN();
    for (SimdLevel l : levels()) {
      auto ops = dsv4::backend::make_cpu_ops(1, l);
      ops->set_act_quant(ActQuant::kQ8);
      std::vector<float> got(static_cast<size_t>(n * rows));
      ops->matmul(w.w, x.data(), K, n, got.data(), rows);
      for (int64_t r = 0; r < rows; ++r) {
        EXPECT_TRUE(std::isfinite(got[static_cast<size_t>(r)])) << tname(type);
        EXPECT_TRUE(std::isnan(got[static_cast<size_t>(rows + r)])) << tname(type) << " " << ops->name();
      }
    }
  }
}

TEST(CpuOps, MatmulRowTailsAndThreadCounts) {
  for (int64_t rows : {1, 2, 3, 5, 8, 13})
    for (int threads : {1, 3}) check_matmul(QType::kQ8_0, rows, {1, 7}, threads);
  check_matmul(QType::kF32, 3, {513}, 3);
}

// ---- rms_norm -------------------------------------------------------------------------------------

// Bound 1e-12: mean of squares in double, then 2 float32 products per element (≤ ~3u relative
// error, NMSE ≤ ~1e-13).
TEST(CpuOps, RmsNormVsRef) {
  RefOps ref;
  const int64_t dim = 203;
  const std::vector<float> w = randn(static_cast<size_t>(dim), 3, 0.5f, 1.0f);
  for (int64_t n : kNs) {
    const std::vector<float> x = randn(static_cast<size_t>(n * dim), 11, 2.0f);
    for (bool weighted : {true, false}) {
      const float* wp = weighted ? w.data() : nullptr;
      Guarded want(static_cast<size_t>(n * dim));
      ref.rms_norm(x.data(), wp, n, dim, 1e-6f, want.data());
      for (SimdLevel l : levels()) {
        auto ops = dsv4::backend::make_cpu_ops(2, l);
        Guarded got(static_cast<size_t>(n * dim));
        ops->rms_norm(x.data(), wp, n, dim, 1e-6f, got.data());
        ASSERT_TRUE(got.guards_ok());
        Guarded inplace(static_cast<size_t>(n * dim));
        std::copy(x.begin(), x.end(), inplace.data());
        ops->rms_norm(inplace.data(), wp, n, dim, 1e-6f, inplace.data());  // y == x allowed
        ASSERT_TRUE(inplace.guards_ok());
        Nmse e;
        for (size_t i = 0; i < static_cast<size_t>(n * dim); ++i) {
          e.add(got[i], want[i]);
          ASSERT_EQ(dsv4::f32_to_bits(got[i]), dsv4::f32_to_bits(inplace[i]));
        }
        EXPECT_LE(track("rms_norm", e.value()), 1e-12) << "n=" << n << " " << ops->name();
      }
    }
  }
}

// ---- hyper-connections -----------------------------------------------------------------------------

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

// Bound 1e-10: m = fn·RMSNorm(X) is a float32 dot over hc·D = 268 terms (as matmul, relative
// error ≲ 1e-6 worst case) followed by one float product; everything after it (sigmoid, the
// Sinkhorn iterations) is in double. Sigmoid and the normalisations are contractions (derivative
// ≤ 1/4 · scale ≤ 1), so the error of pre/post/comb is at most that of m: NMSE ≲ 1e-12.
TEST(CpuOps, HcCoeffsVsRef) {
  RefOps ref;
  const int64_t hc = 4, D = 67, nm = (2 + hc) * hc;
  for (QType type : {QType::kF32, QType::kF16}) {
    HcSetup s = make_hc(nm, hc, D, type, 21);
    for (int64_t n : kNs) {
      const std::vector<float> X = randn(static_cast<size_t>(n * hc * D), 31 + static_cast<uint64_t>(n));
      Guarded pre_r(static_cast<size_t>(n * hc)), post_r(static_cast<size_t>(n * hc)),
          comb_r(static_cast<size_t>(n * hc * hc));
      ref.hc_coeffs(X.data(), n, hc, D, s.p(), 1e-6f, 1e-6f, 20, pre_r.data(), post_r.data(), comb_r.data());
      for (SimdLevel l : levels()) {
        auto ops = dsv4::backend::make_cpu_ops(2, l);
        Guarded pre(static_cast<size_t>(n * hc)), post(static_cast<size_t>(n * hc)),
            comb(static_cast<size_t>(n * hc * hc));
        ops->hc_coeffs(X.data(), n, hc, D, s.p(), 1e-6f, 1e-6f, 20, pre.data(), post.data(), comb.data());
        ASSERT_TRUE(pre.guards_ok() && post.guards_ok() && comb.guards_ok());
        Nmse e1, e2, e3;
        for (size_t i = 0; i < pre.n; ++i) e1.add(pre[i], pre_r[i]);
        for (size_t i = 0; i < post.n; ++i) e2.add(post[i], post_r[i]);
        for (size_t i = 0; i < comb.n; ++i) e3.add(comb[i], comb_r[i]);
        EXPECT_LE(track("hc_coeffs", e1.value()), 1e-10) << "pre n=" << n << " " << ops->name();
        EXPECT_LE(track("hc_coeffs", e2.value()), 1e-10) << "post n=" << n << " " << ops->name();
        EXPECT_LE(track("hc_coeffs", e3.value()), 1e-10) << "comb n=" << n << " " << ops->name();
      }
    }
  }
}

// Bounds 1e-12: hc_pre and hc_post are sums of hc + 1 ≤ 5 float32 products per element (relative
// error ≲ 5u on well-conditioned sums; NMSE ≲ 1e-13). hc_head adds the m dot of hc_coeffs (see
// above) through a sigmoid: 1e-10.
TEST(CpuOps, HcPrePostHeadVsRef) {
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
    for (SimdLevel l : levels()) {
      auto ops = dsv4::backend::make_cpu_ops(2, l);
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
      EXPECT_LE(track("hc_pre", e1.value()), 1e-12) << "hc_pre n=" << n << " " << ops->name();
      EXPECT_LE(track("hc_post", e2.value()), 1e-12) << "hc_post n=" << n << " " << ops->name();
      EXPECT_LE(track("hc_head", e3.value()), 1e-10) << "hc_head n=" << n << " " << ops->name();
    }
  }
}

// ---- RoPE ------------------------------------------------------------------------------------------

// Bound 1e-12: the angle float(p)·θ and its cos/sin are computed identically (fp32) by both; only
// the 2×2 rotation differs (float32: 2 products and a sum, ≲ 3u; NMSE ≲ 1e-13).
TEST(CpuOps, RopeVsRef) {
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
      for (SimdLevel l : levels()) {
        auto ops = dsv4::backend::make_cpu_ops(2, l);
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
        EXPECT_LE(track("rope", e.value()), 1e-12) << "n=" << n << " inverse=" << inverse << " " << ops->name();
      }
    }
  }
}

// ---- attention -------------------------------------------------------------------------------------

struct AttnCase {
  int64_t n, H, Dh, n_kv;
  std::vector<float> q, kv, sinks;
  std::vector<int64_t> offsets;
  std::vector<int32_t> indices;
};

AttnCase make_attn(int64_t n, int64_t H, int64_t Dh, int64_t n_kv, uint64_t seed) {
  AttnCase c{n, H, Dh, n_kv, {}, {}, {}, {}, {}};
  c.q = randn(static_cast<size_t>(n * H * Dh), seed, 1.0f);
  c.kv = randn(static_cast<size_t>(n_kv * Dh), seed + 1, 1.0f);
  c.sinks = randn(static_cast<size_t>(H), seed + 2, 1.0f);
  std::mt19937_64 rng(seed + 3);
  c.offsets.push_back(0);
  for (int64_t t = 0; t < n; ++t) {
    const int64_t rows = (t % 11 == 5) ? 0 : static_cast<int64_t>(rng() % 48) + 1;  // some tokens: none
    for (int64_t k = 0; k < rows; ++k) c.indices.push_back(static_cast<int32_t>(rng() % static_cast<uint64_t>(n_kv)));
    c.offsets.push_back(static_cast<int64_t>(c.indices.size()));
  }
  return c;
}

// Bound 1e-9: scores are float32 dots over Dh ≤ 72 terms times a scale (|s| ≲ 10, absolute error
// ≲ 1e-6 worst case), exp turns an absolute score error into the same relative error of each
// weight (≲ 1e-6), the normaliser is summed in double and the weighted row sum is ≤ 48 float32
// multiply-add steps (≲ 48u relative on a convex combination). Worst case ≈ 1e-5 relative, NMSE ≲ 1e-10;
// typical NMSE ~1e-14.
TEST(CpuOps, AttentionVsRef) {
  RefOps ref;
  for (int64_t Dh : {72, 37}) {
    for (int64_t n : kNs) {
      const int64_t H = Dh == 72 ? 3 : 19;  // 19: one full 16-head block and a padded one
      AttnCase c = make_attn(n, H, Dh, 97, 100 + static_cast<uint64_t>(n + Dh));
      const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
      Guarded want(static_cast<size_t>(n * H * Dh));
      ref.attention(c.q.data(), n, H, Dh, c.kv.data(), c.offsets.data(), c.indices.data(), c.sinks.data(), scale,
                    want.data());
      for (SimdLevel l : levels()) {
        auto ops = dsv4::backend::make_cpu_ops(2, l);
        Guarded got(want.n);
        ops->attention(c.q.data(), n, H, Dh, c.kv.data(), c.offsets.data(), c.indices.data(), c.sinks.data(),
                       scale, got.data());
        ASSERT_TRUE(got.guards_ok());
        Nmse e;
        for (size_t i = 0; i < got.n; ++i) e.add(got[i], want[i]);
        EXPECT_LE(track("attention", e.value()), 1e-9) << "Dh=" << Dh << " n=" << n << " " << ops->name();
        for (int64_t t = 0; t < n; ++t)  // a token without rows writes zeros
          if (c.offsets[static_cast<size_t>(t + 1)] == c.offsets[static_cast<size_t>(t)]) {
            for (int64_t i = 0; i < H * Dh; ++i) ASSERT_EQ(got[static_cast<size_t>(t * H * Dh + i)], 0.0f);
          }
      }
    }
  }
}

// ---- indexer ---------------------------------------------------------------------------------------

// Bound 1e-9: float32 dots over dI = 40 terms (relative ≲ 1e-6 worst case), ReLU (1-Lipschitz),
// then nI = 5 or 21 weighted float32 terms. Entries j ≥ n_vis[t] must stay untouched (sentinel).
TEST(CpuOps, IndexerScoresVsRef) {
  RefOps ref;
  const int64_t dI = 40, n_keys = 150, ld = 160;
  const std::vector<float> keys = randn(static_cast<size_t>(n_keys * dI), 71);
  for (int64_t n : kNs) {
    const int64_t nI = n % 2 == 0 ? 5 : 21;  // 21: a full 16-head block and a padded one
    const std::vector<float> qI = randn(static_cast<size_t>(n * nI * dI), 72);
    const std::vector<float> wI = randn(static_cast<size_t>(n * nI), 73);
    std::vector<int64_t> n_vis(static_cast<size_t>(n));
    std::mt19937_64 rng(74);
    for (auto& v : n_vis) v = static_cast<int64_t>(rng() % (n_keys + 1));
    const float scale = 1.0f / std::sqrt(static_cast<float>(dI * nI));
    Guarded want(static_cast<size_t>(n * ld));
    ref.indexer_scores(qI.data(), wI.data(), n, nI, dI, keys.data(), n_vis.data(), scale, want.data(), ld);
    for (SimdLevel l : levels()) {
      auto ops = dsv4::backend::make_cpu_ops(2, l);
      Guarded got(want.n);
      ops->indexer_scores(qI.data(), wI.data(), n, nI, dI, keys.data(), n_vis.data(), scale, got.data(), ld);
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
      EXPECT_LE(track("indexer", e.value()), 1e-9) << "n=" << n << " " << ops->name();
    }
  }
}

// ---- MoE -------------------------------------------------------------------------------------------

struct MoeSetup {
  OwnedWeight gate, up, down;
  ExpertWeights ew;
  int64_t E;
};

MoeSetup make_moe(QType type, int64_t E, int64_t D, int64_t I, uint64_t seed) {
  MoeSetup m;
  m.E = E;
  m.gate = random_weight(type, E * I, D, seed, 0.1f);
  m.up = random_weight(type, E * I, D, seed + 1, 0.1f);
  m.down = random_weight(type, E * D, I, seed + 2, 0.1f);
  m.ew = {m.gate.w, m.up.w, m.down.w, I, D};
  return m;
}

struct Routing {
  std::vector<int32_t> ids;
  std::vector<float> w;
};

// Distinct experts per token; about one slot in eight skipped (−1).
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

// Bound 1e-9: gate/up are float32 dots (as matmul, ≲ 1e-6 relative worst case), the clamped
// SwiGLU is a few float32 operations with a float exp (≲ 4u), the down dot adds another matmul
// error, and y accumulates ≤ n_used float32 sums. Worst case ~1e-5 relative (NMSE ≲ 1e-10);
// typical ~1e-13. Clamps are active (limit below the typical |gate·x|) and are continuous.
//
// ActQuant::kQ8: x is quantized identically on both sides; h is computed in float32 here and in
// float64 by the reference before each rounds it to 8 bits, so an element whose h/d lies within
// ~1e-7 of a rounding tie may land one step apart (probability ~1e-5 per element). One such
// step moves a down output by ≲ d_h·|w| ≈ |y|/(127·sqrt(I)), NMSE ≲ 1e-6 per flip; bound 1e-6.
void check_moe(QType type, int64_t D, int64_t I, const std::vector<int64_t>& ns,
               ActQuant aq = ActQuant::kF32) {
  const int64_t E = 5, n_used = 3;
  MoeSetup m = make_moe(type, E, D, I, 200 + static_cast<uint64_t>(type));
  RefOps ref;
  ref.set_act_quant(aq);
  const double bound = aq == ActQuant::kQ8 ? 1e-6 : 1e-9;
  for (int64_t n : ns) {
    const std::vector<float> x = randn(static_cast<size_t>(n * D), 300 + static_cast<uint64_t>(n));
    const std::vector<float> y0 = randn(static_cast<size_t>(n * D), 301);
    Routing r = make_routing(n, n_used, E, 302 + static_cast<uint64_t>(n));
    // limit: about the median |gate·x| of expert 0, token 0, so both sides of the clamp occur
    std::vector<float> g0(static_cast<size_t>(I));
    ref.matmul(m.ew.gate.expert(0, I), x.data(), D, 1, g0.data(), I);
    for (auto& v : g0) v = std::fabs(v);
    std::nth_element(g0.begin(), g0.begin() + I / 2, g0.end());
    const float limit = std::max(g0[static_cast<size_t>(I / 2)], 1e-3f);
    Guarded want(static_cast<size_t>(n * D));
    std::copy(y0.begin(), y0.end(), want.data());
    ref.moe(m.ew, x.data(), n, n_used, r.ids.data(), r.w.data(), limit, want.data());
    for (SimdLevel l : levels()) {
      auto ops = dsv4::backend::make_cpu_ops(2, l);
      ops->set_act_quant(aq);
      Guarded got(want.n);
      std::copy(y0.begin(), y0.end(), got.data());
      ops->moe(m.ew, x.data(), n, n_used, r.ids.data(), r.w.data(), limit, got.data());
      ASSERT_TRUE(got.guards_ok());
      Nmse e;
      for (size_t i = 0; i < got.n; ++i) e.add(got[i] - y0[i], want[i] - y0[i]);  // the added part
      EXPECT_LE(track(aq == ActQuant::kQ8 ? "moe_q8" : "moe", e.value()), bound)
          << tname(type) << " n=" << n << " " << ops->name();
    }
  }
}

TEST(CpuOps, MoeVsRef) {
  check_moe(QType::kF32, 67, 41, {1, 7, 64, 513});
  check_moe(QType::kF16, 72, 40, {1, 7});
  for (QType t : {QType::kQ8_0, QType::kMXFP4, QType::kIQ4_NL}) check_moe(t, 64, 96, {1, 7, 64});
  check_moe(QType::kF8_E4M3_B128, 128, 128, {1, 7});
  for (QType t : {QType::kQ2_K, QType::kQ4_K, QType::kIQ2_XXS, QType::kQ6_K})
    check_moe(t, 256, 256, {1, 7});
}

TEST(CpuOps, MoeQ8VsRef) {
  for (QType t : {QType::kQ8_0, QType::kMXFP4, QType::kIQ4_NL}) check_moe(t, 64, 96, {1, 7, 64, 513}, ActQuant::kQ8);
  for (QType t : {QType::kQ2_K, QType::kQ4_K, QType::kIQ2_XXS}) check_moe(t, 256, 256, {1, 7, 64}, ActQuant::kQ8);
  // no integer kernel: x and h rounded through the vec_dot_type (f16; q8_K), float dots
  check_moe(QType::kF16, 72, 40, {1, 7}, ActQuant::kQ8);
  check_moe(QType::kQ6_K, 256, 256, {1, 7}, ActQuant::kQ8);
}

// Shared-expert form: one unstacked expert, n_used = 1, ids 0, weight 1.
TEST(CpuOps, MoeSharedExpertForm) {
  const int64_t D = 64, I = 96;
  MoeSetup m = make_moe(QType::kQ8_0, 1, D, I, 400);
  RefOps ref;
  const int64_t n = 7;
  const std::vector<float> x = randn(static_cast<size_t>(n * D), 401);
  const std::vector<int32_t> ids(static_cast<size_t>(n), 0);
  const std::vector<float> w(static_cast<size_t>(n), 1.0f);
  Guarded want(static_cast<size_t>(n * D), false);
  ref.moe(m.ew, x.data(), n, 1, ids.data(), w.data(), 10.0f, want.data());
  for (SimdLevel l : levels()) {
    auto ops = dsv4::backend::make_cpu_ops(2, l);
    Guarded got(want.n, false);
    ops->moe(m.ew, x.data(), n, 1, ids.data(), w.data(), 10.0f, got.data());
    ASSERT_TRUE(got.guards_ok());
    Nmse e;
    for (size_t i = 0; i < got.n; ++i) e.add(got[i], want[i]);
    EXPECT_LE(track("moe", e.value()), 1e-9) << ops->name();
  }
}

// ---- determinism: a token's row is bit-identical alone, inside a batch, with 1 or 2 threads ----------

bool same_bits(const float* a, const float* b, int64_t n) {
  return std::memcmp(a, b, static_cast<size_t>(n) * sizeof(float)) == 0;
}

// The prefill micro-kernel computes every (row, token) dot exactly as dot() does, whatever the
// tile shape (nr × nt), the length (tails of every residue mod 8/16/32/64) or the strides; and
// dot_rows agrees too. This is what makes prefill tiles batch invariant.
TEST(CpuKernels, DotTileBitIdenticalToDot) {
  std::vector<const dsv4::backend::cpu::Kernels*> tables = {&dsv4::backend::cpu::kernels_scalar()};
  if (dsv4::backend::simd_level_supported(SimdLevel::kAvx2)) tables.push_back(dsv4::backend::cpu::kernels_avx2());
  if (dsv4::backend::simd_level_supported(SimdLevel::kAvx512)) tables.push_back(dsv4::backend::cpu::kernels_avx512());
  constexpr int kT = dsv4::backend::cpu::kTileTokens;
  for (const auto* k : tables) {
    for (int64_t n : {1, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 100, 127, 203, 256, 515}) {
      const int64_t ldw = n + 3;
      const std::vector<float> w = randn(static_cast<size_t>(4 * ldw), 900 + static_cast<uint64_t>(n));
      std::vector<std::vector<float>> xs;
      for (int t = 0; t < kT; ++t) xs.push_back(randn(static_cast<size_t>(n), 950 + static_cast<uint64_t>(t * 1000 + n)));
      const float* xp[kT];
      for (int t = 0; t < kT; ++t) xp[t] = xs[static_cast<size_t>(t)].data();
      for (int nr = 1; nr <= 4; ++nr)
        for (int nt = 1; nt <= kT; ++nt) {
          const int64_t ldo = 7;
          std::vector<float> out(static_cast<size_t>(kT * ldo), -1.0f);
          k->dot_tile(w.data(), ldw, nr, xp, nt, n, out.data(), ldo);
          for (int t = 0; t < kT; ++t)
            for (int i = 0; i < ldo; ++i) {
              const float got = out[static_cast<size_t>(t * ldo + i)];
              if (t >= nt || i >= nr) {
                ASSERT_EQ(got, -1.0f) << "wrote outside the tile";
                continue;
              }
              const float want = k->dot(w.data() + i * ldw, xp[t], n);
              ASSERT_TRUE(same_bits(&got, &want, 1)) << "n=" << n << " nr=" << nr << " nt=" << nt << " t=" << t << " i=" << i;
            }
          float o4[4];
          k->dot_rows(w.data(), ldw, nr, xp[0], n, o4);
          for (int i = 0; i < nr; ++i) ASSERT_TRUE(same_bits(&o4[i], &out[static_cast<size_t>(i)], 1));
        }
    }
  }
}

// qk16 / pv16 (the attention and indexer tiles, kernels.h): every (row, head) value is the same
// bits whatever block it landed in (computed alone: nr = 1 / n = 1), whatever the other 15 head
// columns hold, and within the float32 chain bound of a double reference: |got − exact| ≤
// n·u·Σ|terms| (u = 2^-24; n sequential roundings, FMA or product + sum each ≤ 2u, so 2n·u).
TEST(CpuKernels, HeadTilesBlockIndependentAndExact) {
  constexpr int G = dsv4::backend::cpu::kHeadBlock;
  std::vector<const dsv4::backend::cpu::Kernels*> tables = {&dsv4::backend::cpu::kernels_scalar()};
  if (dsv4::backend::simd_level_supported(SimdLevel::kAvx2)) tables.push_back(dsv4::backend::cpu::kernels_avx2());
  if (dsv4::backend::simd_level_supported(SimdLevel::kAvx512)) tables.push_back(dsv4::backend::cpu::kernels_avx512());
  // |got − Σ_i term(i)| ≤ 2·n_terms·u·Σ|term(i)|, the sum and magnitude in double
  auto within_chain_bound = [](float got, int64_t n_terms, auto term) {
    double exact = 0, mag = 0;
    for (int64_t i = 0; i < n_terms; ++i) {
      const double v = term(i);
      exact += v;
      mag += std::fabs(v);
    }
    return std::fabs(got - exact) <= 2.0 * static_cast<double>(n_terms) * 0x1p-24 * mag;
  };
  for (const auto* k : tables) {
    for (int64_t n : {1, 7, 16, 37, 128, 515}) {
      for (int64_t nr : {1, 2, 3, 5, 6, 9, 13, 17, 40}) {
        std::vector<std::vector<float>> rows;
        std::vector<const float*> rp;
        for (int64_t i = 0; i < nr; ++i) rows.push_back(randn(static_cast<size_t>(n), 2000 + static_cast<uint64_t>(i * 7 + n)));
        for (auto& r : rows) rp.push_back(r.data());
        // qk16: rows · qt
        const std::vector<float> qt = randn(static_cast<size_t>(n * G), 2100 + static_cast<uint64_t>(n));
        std::vector<float> out(static_cast<size_t>((nr + 1) * G), -1.0f);
        k->qk16(qt.data(), rp.data(), nr, n, out.data());
        for (int j = 0; j < G; ++j) ASSERT_EQ(out[static_cast<size_t>(nr * G + j)], -1.0f) << "wrote past nr rows";
        std::vector<float> qt1 = randn(static_cast<size_t>(n * G), 2300);  // other columns: noise
        for (int64_t r = 0; r < nr; ++r) {
          const int j = static_cast<int>((r * 5) % G);
          for (int64_t d = 0; d < n; ++d) qt1[static_cast<size_t>(d * G + j)] = qt[static_cast<size_t>(d * G + j)];
          float one[G];
          k->qk16(qt1.data(), &rp[static_cast<size_t>(r)], 1, n, one);
          ASSERT_TRUE(same_bits(&one[j], &out[static_cast<size_t>(r * G + j)], 1)) << "qk16 n=" << n << " nr=" << nr << " r=" << r;
          for (int jj = 0; jj < G; ++jj)
            ASSERT_TRUE(within_chain_bound(out[static_cast<size_t>(r * G + jj)], n, [&](int64_t d) {
              return static_cast<double>(rp[static_cast<size_t>(r)][d]) * qt[static_cast<size_t>(d * G + jj)];
            })) << "qk16 n=" << n << " nr=" << nr << " r=" << r << " head " << jj;
        }
        // pv16: Σ_k rows[k] ⊗ p[k] (nr plays nk), n columns
        const std::vector<float> pw = randn(static_cast<size_t>(nr * G), 2200 + static_cast<uint64_t>(nr));
        std::vector<float> ot(static_cast<size_t>((n + 1) * G), -1.0f);
        k->pv16(pw.data(), rp.data(), nr, n, ot.data());
        for (int j = 0; j < G; ++j) ASSERT_EQ(ot[static_cast<size_t>(n * G + j)], -1.0f) << "wrote past n columns";
        for (int64_t c = 0; c < n; ++c) {
          std::vector<const float*> shifted;
          for (const float* r : rp) shifted.push_back(r + c);
          float one[G];
          k->pv16(pw.data(), shifted.data(), nr, 1, one);
          ASSERT_TRUE(same_bits(one, &ot[static_cast<size_t>(c * G)], G)) << "pv16 n=" << n << " nk=" << nr << " c=" << c;
          for (int j = 0; j < G; ++j)
            ASSERT_TRUE(within_chain_bound(ot[static_cast<size_t>(c * G + j)], nr, [&](int64_t i) {
              return static_cast<double>(rp[static_cast<size_t>(i)][c]) * pw[static_cast<size_t>(i * G + j)];
            })) << "pv16 n=" << n << " nk=" << nr << " c=" << c << " head " << j;
        }
      }
    }
  }
}

// The SIMD bf16 / f16 rounding of activation rows (ActQuant::kQ8, 16-bit weights) equals
// quant::act_round_trip bit for bit, specials included (ties, subnormals, overflow, inf, NaN).
TEST(CpuKernels, Round16BitIdenticalToReference) {
  std::vector<float> x = randn(1000, 1900, 3.0f);
  const float specials[] = {0.0f, -0.0f, 1e-40f, -1e-40f, 6e-8f, 3e-8f, 65504.0f, 65520.0f, 70000.0f, -1e38f,
                            3.4e38f, std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN(), 1.00390625f, 1.01171875f, 1.0009765625f,
                            2049.0f, 2051.0f, -1.0000001f};
  for (float v : specials) x.push_back(v);
  for (uint32_t u = 0x3f800000u; u < 0x3f800000u + 300; u += 7) x.push_back(dsv4::bits_to_f32(u | 0x8000u));
  const int64_t n = static_cast<int64_t>(x.size());
  for (SimdLevel l : levels()) {
    const auto fn = dsv4::backend::cpu::round16_for_level(static_cast<int>(l));
    if (fn == nullptr) continue;
    for (bool bf16 : {true, false}) {
      std::vector<float> want(x.size()), got(x.size());
      dsv4::quant::act_round_trip(bf16 ? dsv4::quant::ActFormat::kBF16 : dsv4::quant::ActFormat::kF16, x.data(),
                                  want.data(), n);
      fn(bf16, x.data(), got.data(), n);
      for (size_t i = 0; i < x.size(); ++i) {
        if (std::isnan(want[i])) {
          EXPECT_TRUE(std::isnan(got[i])) << i;
          continue;
        }
        ASSERT_TRUE(same_bits(&got[i], &want[i], 1)) << (bf16 ? "bf16 " : "f16 ") << x[i] << " -> " << got[i]
                                                     << " want " << want[i];
      }
    }
  }
}

// Prefill (tiled) vs decode (fused or single) rows of matmul and moe at realistic shapes: every
// token of a 19-token batch equals the same token alone, for the types of both benchmark mixes.
TEST(CpuOps, MatmulTiledEqualsAloneEveryToken) {
  const int64_t n = 19, rows = 70;
  for (ActQuant aq : {ActQuant::kF32, ActQuant::kQ8})
  for (QType type : {QType::kBF16, QType::kF16, QType::kQ8_0, QType::kMXFP4, QType::kQ2_K, QType::kIQ2_XXS, QType::kF32,
                     QType::kQ4_K, QType::kIQ4_NL}) {
    const int64_t K = 512;
    OwnedWeight w = random_weight(type, rows, K, 1500 + static_cast<uint64_t>(type));
    const std::vector<float> x = randn(static_cast<size_t>(n * K), 1501);
    for (SimdLevel l : levels()) {
      auto ops = dsv4::backend::make_cpu_ops(2, l);
      ops->set_act_quant(aq);
      std::vector<float> batch(static_cast<size_t>(n * rows)), alone(static_cast<size_t>(rows));
      ops->matmul(w.w, x.data(), K, n, batch.data(), rows);
      for (int64_t t = 0; t < n; ++t) {
        ops->matmul(w.w, x.data() + t * K, K, 1, alone.data(), rows);
        ASSERT_TRUE(same_bits(alone.data(), batch.data() + t * rows, rows)) << tname(type) << " t=" << t << " " << ops->name();
      }
    }
  }
}

TEST(CpuOps, MatmulBatchAndThreadInvariant) {
  const int64_t n = 64, probe = 37, rows = 45;
  for (ActQuant aq : {ActQuant::kF32, ActQuant::kQ8})
  for (QType type : {QType::kF32, QType::kF16, QType::kQ8_0, QType::kMXFP4, QType::kQ2_K, QType::kIQ2_XXS,
                     QType::kF8_E4M3_B128}) {
    const int64_t K = test_cols(type);
    OwnedWeight w = random_weight(type, rows, K, 500 + static_cast<uint64_t>(type));
    const std::vector<float> x = randn(static_cast<size_t>(n * K), 501);
    for (SimdLevel l : levels()) {
      auto ops = dsv4::backend::make_cpu_ops(1, l);
      ops->set_act_quant(aq);
      std::vector<float> alone(static_cast<size_t>(rows)), batch(static_cast<size_t>(n * rows)),
          batch2(static_cast<size_t>(n * rows));
      ops->matmul(w.w, x.data() + probe * K, K, 1, alone.data(), rows);
      ops->matmul(w.w, x.data(), K, n, batch.data(), rows);
      ops->set_threads(2);
      ops->matmul(w.w, x.data(), K, n, batch2.data(), rows);
      EXPECT_TRUE(same_bits(alone.data(), batch.data() + probe * rows, rows)) << tname(type) << " " << ops->name();
      EXPECT_TRUE(same_bits(batch.data(), batch2.data(), n * rows)) << tname(type) << " " << ops->name();
    }
  }
}

// (IQ2_XXS in q8: many slots per expert take the packed-panel GEMM, a lone token the per-token
// tiles.)
TEST(CpuOps, MoeBatchAndThreadInvariant) {
  const int64_t n = 64, probe = 21, D = 512, I = 256, E = 5, n_used = 3;
  for (ActQuant aq : {ActQuant::kF32, ActQuant::kQ8})
  for (QType type : {QType::kQ8_0, QType::kMXFP4, QType::kIQ2_XXS}) {
    if (type == QType::kIQ2_XXS && D % 256 != 0) continue;
    MoeSetup m = make_moe(type, E, D, I, 600);
    const std::vector<float> x = randn(static_cast<size_t>(n * D), 601);
    Routing r = make_routing(n, n_used, E, 602);
    for (SimdLevel l : levels()) {
      auto ops = dsv4::backend::make_cpu_ops(1, l);
      ops->set_act_quant(aq);
      std::vector<float> alone(static_cast<size_t>(D), 0.5f), batch(static_cast<size_t>(n * D), 0.5f),
          batch2(static_cast<size_t>(n * D), 0.5f);
      ops->moe(m.ew, x.data() + probe * D, 1, n_used, r.ids.data() + probe * n_used, r.w.data() + probe * n_used,
               0.3f, alone.data());
      ops->moe(m.ew, x.data(), n, n_used, r.ids.data(), r.w.data(), 0.3f, batch.data());
      ops->set_threads(2);
      ops->moe(m.ew, x.data(), n, n_used, r.ids.data(), r.w.data(), 0.3f, batch2.data());
      EXPECT_TRUE(same_bits(alone.data(), batch.data() + probe * D, D)) << tname(type) << " " << ops->name();
      EXPECT_TRUE(same_bits(batch.data(), batch2.data(), n * D)) << tname(type) << " " << ops->name();
    }
  }
}

TEST(CpuOps, AttentionBatchAndThreadInvariant) {
  const int64_t n = 64, H = 3, Dh = 72;
  AttnCase c = make_attn(n, H, Dh, 97, 700);
  const float scale = 0.125f;
  for (int64_t probe : {0, 6, 40}) {
    const int64_t k0 = c.offsets[static_cast<size_t>(probe)], k1 = c.offsets[static_cast<size_t>(probe + 1)];
    const std::vector<int64_t> off1 = {0, k1 - k0};
    for (SimdLevel l : levels()) {
      auto ops = dsv4::backend::make_cpu_ops(1, l);
      std::vector<float> alone(static_cast<size_t>(H * Dh)), batch(static_cast<size_t>(n * H * Dh)),
          batch2(static_cast<size_t>(n * H * Dh));
      ops->attention(c.q.data() + probe * H * Dh, 1, H, Dh, c.kv.data(), off1.data(), c.indices.data() + k0,
                     c.sinks.data(), scale, alone.data());
      ops->attention(c.q.data(), n, H, Dh, c.kv.data(), c.offsets.data(), c.indices.data(), c.sinks.data(), scale,
                     batch.data());
      ops->set_threads(2);
      ops->attention(c.q.data(), n, H, Dh, c.kv.data(), c.offsets.data(), c.indices.data(), c.sinks.data(), scale,
                     batch2.data());
      EXPECT_TRUE(same_bits(alone.data(), batch.data() + probe * H * Dh, H * Dh)) << ops->name();
      EXPECT_TRUE(same_bits(batch.data(), batch2.data(), n * H * Dh)) << ops->name();
    }
  }
}

}  // namespace
