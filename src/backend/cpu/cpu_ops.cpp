// dsv4 backend/cpu: CpuOps (see cpu_ops.h). Section numbers refer to dsv4-architecture.md.
#include "dsv4/backend/cpu/cpu_ops.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "dsv4/core/status.h"
#include "dsv4/quant/act_quant.h"
#include "kernels.h"
#include "qdot.h"

namespace dsv4::backend {

using cpu::Kernels;

// ---- SIMD levels -------------------------------------------------------------------------------

const char* simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::kScalar: return "scalar";
    case SimdLevel::kAvx2: return "avx2";
    case SimdLevel::kAvx512: return "avx512";
  }
  return "?";
}

bool simd_level_supported(SimdLevel level) {
  switch (level) {
    case SimdLevel::kScalar: return true;
#if defined(__x86_64__)
    case SimdLevel::kAvx2:
      // (clang's __builtin_cpu_supports has no "f16c"; every AVX2 CPU has it in practice)
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")
#if !defined(__clang__)
             && __builtin_cpu_supports("f16c")
#endif
          ;
    case SimdLevel::kAvx512:
      return simd_level_supported(SimdLevel::kAvx2) && __builtin_cpu_supports("avx512f") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#else
    default: return false;
#endif
  }
  return false;
}

SimdLevel best_simd_level() {
  if (simd_level_supported(SimdLevel::kAvx512)) return SimdLevel::kAvx512;
  if (simd_level_supported(SimdLevel::kAvx2)) return SimdLevel::kAvx2;
  return SimdLevel::kScalar;
}

namespace {

const Kernels* kernels_for(SimdLevel level) {
  switch (level) {
    case SimdLevel::kAvx512: return cpu::kernels_avx512();
    case SimdLevel::kAvx2: return cpu::kernels_avx2();
    case SimdLevel::kScalar: break;
  }
  return &cpu::kernels_scalar();
}

SimdLevel checked_level(SimdLevel want) {
  if (simd_level_supported(want)) return want;
  const SimdLevel best = best_simd_level();
  std::fprintf(stderr, "dsv4: SIMD level %s is not supported here; using %s\n",
               simd_level_name(want), simd_level_name(best));
  return best;
}

constexpr int64_t kRowTile = 4;  // weight rows dequantized together (dot_rows' maximum)
constexpr int64_t kFusedMaxTokens = 2;  // up to this many tokens: fused dequant-dot kernels
constexpr int64_t kBlockFloats = 32768;  // prefill: dequantized rows per block (≤ 128 KiB)
// Below this many multiply-adds (or element updates) an op runs on the calling thread only: a
// worker round trip costs more than it saves. Results are the same (each row's computation is
// unchanged, only which thread runs it).
constexpr int64_t kInlineWork = int64_t{1} << 15;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Up to cpu::kHeadBlock heads of dim elements each (head j at qh + j·dim, nh of them) as the
// transposed block qt [dim][kHeadBlock] that qk16 takes, the columns past nh zero.
void pack_heads_t(const float* qh, int64_t nh, int64_t dim, float* qt) {
  constexpr int64_t G = cpu::kHeadBlock;
  for (int64_t d = 0; d < dim; ++d) {
    for (int64_t j = 0; j < nh; ++j) qt[d * G + j] = qh[j * dim + d];
    for (int64_t j = nh; j < G; ++j) qt[d * G + j] = 0.0f;
  }
}
inline float sigmoidf(float v) { return 1.0f / (1.0f + std::exp(-v)); }
inline double sigmoidd(double v) { return 1.0 / (1.0 + std::exp(-v)); }
}  // namespace

// ---- construction ------------------------------------------------------------------------------

CpuOps::CpuOps(int n_threads, SimdLevel level)
    : level_(checked_level(level)),
      k_(kernels_for(level_)),
      qk_(&cpu::qdot_kernels(static_cast<int>(level_))),
      qk_scalar_(&cpu::qdot_kernels(0)),
      round16_(cpu::round16_for_level(static_cast<int>(level_))) {
  n_threads_ = std::max(1, n_threads);
  pool_ = std::make_unique<ThreadPool>(n_threads_);
  scratch_.resize(static_cast<size_t>(n_threads_));
  row_scratch_.resize(static_cast<size_t>(n_threads_));
}

CpuOps::~CpuOps() = default;

std::string CpuOps::name() const { return std::string("cpu[") + simd_level_name(level_) + "]"; }

void CpuOps::set_threads(int n_threads) {
  n_threads_ = std::max(1, n_threads);
  if (n_threads_ > pool_->threads()) {
    pool_.reset();
    pool_ = std::make_unique<ThreadPool>(n_threads_);
  }
  if (scratch_.size() < static_cast<size_t>(pool_->threads()))
    scratch_.resize(static_cast<size_t>(pool_->threads()));
  if (row_scratch_.size() < static_cast<size_t>(pool_->threads()))
    row_scratch_.resize(static_cast<size_t>(pool_->threads()));
}

int CpuOps::threads_for(int64_t work) const { return work < kInlineWork ? 1 : n_threads_; }

float* CpuOps::scratch(int thread, size_t n_floats) {
  std::vector<float>& s = scratch_[static_cast<size_t>(thread)];
  if (s.size() < n_floats) s.resize(n_floats);
  return s.data();
}

const float** CpuOps::row_scratch(int thread, size_t n) {
  std::vector<const float*>& s = row_scratch_[static_cast<size_t>(thread)];
  if (s.size() < n) s.resize(n);
  return s.data();
}

bool CpuOps::dequantize_row(quant::QType type, const void* src, float* dst, int64_t n) const {
  const quant::QTypeInfo* info = quant::qtype_info(type);
  if (info == nullptr || n < 0 || n % info->block_size != 0) return false;
  return k_->dequant(type, static_cast<const uint8_t*>(src), dst, n);
}

std::unique_ptr<Ops> make_cpu_ops(int n_threads) {
  SimdLevel level = best_simd_level();
  if (const char* env = std::getenv("DSV4_SIMD"); env != nullptr && *env != '\0') {
    SimdLevel want = level;
    bool known = true;
    if (std::strcmp(env, "scalar") == 0) want = SimdLevel::kScalar;
    else if (std::strcmp(env, "avx2") == 0) want = SimdLevel::kAvx2;
    else if (std::strcmp(env, "avx512") == 0) want = SimdLevel::kAvx512;
    else known = false;
    if (!known)
      std::fprintf(stderr, "dsv4: DSV4_SIMD=%s is not one of scalar|avx2|avx512; using %s\n", env,
                   simd_level_name(level));
    else
      level = want;  // an unsupported request falls back (with a warning) in the constructor
  }
  return std::make_unique<CpuOps>(n_threads, level);
}

std::unique_ptr<CpuOps> make_cpu_ops(int n_threads, SimdLevel level) {
  return std::make_unique<CpuOps>(n_threads, level);
}

// ---- matmul (§1) -------------------------------------------------------------------------------

void CpuOps::matmul_rows(const Weight& w, int64_t r0, int64_t r1, const float* x, int64_t ldx,
                         int64_t n, float* y, int64_t ldy, int thread) {
  const int64_t K = w.cols;
  // Few tokens: dequantize in registers (fused kernel), bit-identical to the scratch path.
  if (n <= kFusedMaxTokens && k_->has_fused != nullptr && k_->has_fused(w.type, K)) {
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* row = w.data + static_cast<size_t>(r) * w.row_bytes;
      for (int64_t t = 0; t < n; ++t) k_->dot_fused(w.type, row, x + t * ldx, K, y + t * ldy + r);
    }
    return;
  }
  // Prefill: dequantize a block of rows into scratch once, then run the register-blocked
  // micro-kernel over (4 rows × kTileTokens tokens) tiles; each (token, row) dot is exactly
  // dot(dequant(row), x[t]) whatever tile it lands in (kernels.h).
  const int64_t block = std::clamp<int64_t>((kBlockFloats / K) / kRowTile * kRowTile, kRowTile, 64);
  float* s = scratch(thread, static_cast<size_t>(block * K));
  for (int64_t rb = r0; rb < r1; rb += block) {
    const int64_t nb = std::min(block, r1 - rb);
    for (int64_t i = 0; i < nb; ++i)
      DSV4_CHECK(k_->dequant(w.type, w.data + static_cast<size_t>(rb + i) * w.row_bytes, s + i * K, K));
    const float* xp[cpu::kTileTokens];
    for (int64_t t0 = 0; t0 < n; t0 += cpu::kTileTokens) {
      const int nt = static_cast<int>(std::min<int64_t>(cpu::kTileTokens, n - t0));
      for (int i = 0; i < nt; ++i) xp[i] = x + (t0 + i) * ldx;
      for (int64_t q = 0; q < nb; q += kRowTile) {
        const int nr = static_cast<int>(std::min(kRowTile, nb - q));
        k_->dot_tile(s + q * K, K, nr, xp, nt, K, y + t0 * ldy + rb + q, ldy);
      }
    }
  }
}

// ---- integer dots over quantized activations (ActQuant::kQ8) ----------------------------------

namespace {
// x·0 is 0 for finite x and NaN otherwise; eight independent sums (vectorizable, order fixed).
bool all_finite(const float* x, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t c = 0;
  for (; c + 8 <= n; c += 8)
    for (int l = 0; l < 8; ++l) acc[l] += x[c + l] * 0.0f;
  for (; c < n; ++c) acc[0] += x[c] * 0.0f;
  bool ok = true;
  for (int l = 0; l < 8; ++l) ok = ok && acc[l] == 0.0f;
  return ok;
}

void mark_nan(quant::ActFormat f, uint8_t* row, int64_t k) {
  if (f == quant::ActFormat::kQ8_0) {
    auto* b = reinterpret_cast<quant::BlockQ8_0*>(row);
    for (int64_t i = 0; i < k / 32; ++i) b[i].d = 0x7E00;  // fp16 quiet NaN
  } else {
    auto* b = reinterpret_cast<quant::BlockQ8_K*>(row);
    for (int64_t i = 0; i < k / quant::kQK_K; ++i) b[i].d = std::numeric_limits<float>::quiet_NaN();
  }
}

// Rows and tokens of one cache block of the integer GEMM: 32 weight rows and 32 activation rows
// (≤ 140 KiB each at k = 4096 q8_0) stay in L2 while the 4 × 4 tiles run over them.
constexpr int64_t kQRowBlock = 32, kQTokBlock = 32;

// Weight rows per tile call: with few tokens (decode) a weight row is read once and used for at
// most kQTileTokens tokens, so the kernel is bound by memory, and one row at a time (one
// sequential stream per thread, which the hardware prefetcher follows) reads ~30 GB/s on 2 Zen 4
// cores against ~20 GB/s for 4 interleaved rows; with many tokens the tile is compute-bound and
// 4 rows reuse each activation load 4 times. Results do not depend on it (qdot.h).
int64_t q8_tile_rows(int64_t tokens) { return tokens <= cpu::kQTileTokens ? 1 : cpu::kQTileRows; }

// Chunks per thread of the weight-streaming ops (matmul_q8, the MoE's gate/up and down), claimed
// one at a time (ThreadPool::parallel_for_chunks): on a shared machine one vCPU often runs slower
// than the other for seconds (its host core busy with another guest), and with one fixed half per
// thread every such op waited for the slow half. Measured on the 2-core VM (bench/RESULTS.md,
// session 6): paired decode runs where llama.cpp (whose threads claim matmul chunks the same way)
// was 20-25 % ahead while the bus was no faster. Which thread computes a row does not change its
// value (qdot.h), so results stay bit-identical.
constexpr int64_t kChunksPerThread = 8;
}  // namespace

bool CpuOps::has_qdot(quant::QType type) const {
  const quant::ActFormat f = quant::act_format_of(type);
  if (f == quant::ActFormat::kNone || cpu::qdot_fn(*qk_, type) == nullptr) return false;
  if (f == quant::ActFormat::kBF16) return qk_->quantize_bf16 != nullptr;
  return f == quant::ActFormat::kQ8_0 ? qk_scalar_->quantize_q8_0 != nullptr
                                       : qk_scalar_->quantize_q8_K != nullptr;
}

const uint8_t* CpuOps::quantize_act(quant::QType type, const float* x, int64_t ldx, int64_t n,
                                    int64_t k, std::vector<uint8_t>& qbuf, std::vector<uint8_t>& pbuf,
                                    size_t& stride, const int32_t* skip) {
  const quant::ActFormat f = quant::act_format_of(type);
  const size_t rb = cpu::act_row_bytes(f, k);
  const size_t pb = qk_->prepare != nullptr ? qk_->prepared_bytes(type, k) : 0;
  if (qbuf.size() < static_cast<size_t>(n) * rb) qbuf.resize(static_cast<size_t>(n) * rb);
  if (pb > 0 && pbuf.size() < static_cast<size_t>(n) * pb) pbuf.resize(static_cast<size_t>(n) * pb);
  cpu::QuantizeActFn q = f == quant::ActFormat::kQ8_0 ? qk_->quantize_q8_0
                        : f == quant::ActFormat::kBF16 ? qk_->quantize_bf16
                                                        : qk_->quantize_q8_K;
  if (q == nullptr)
    q = f == quant::ActFormat::kQ8_0 ? qk_scalar_->quantize_q8_0 : qk_scalar_->quantize_q8_K;
  // bf16 rows carry inf / NaN themselves (as upstream's); the 8-bit formats mark the row NaN
  const bool mark = f != quant::ActFormat::kBF16;
  uint8_t* qd = qbuf.data();
  uint8_t* pd = pbuf.data();
  pool_->parallel_for(
      n,
      [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t) {
          if (skip != nullptr && skip[t] < 0) continue;
          const float* xt = x + t * ldx;
          uint8_t* d = qd + static_cast<size_t>(t) * rb;
          q(xt, d, k);
          if (mark && !all_finite(xt, k)) mark_nan(f, d, k);
          if (pb > 0) qk_->prepare(type, d, k, pd + static_cast<size_t>(t) * pb);
        }
      },
      threads_for(n * k * 8));
  stride = pb > 0 ? pb : rb;
  return pb > 0 ? pd : qd;
}

const float* CpuOps::round_act(quant::QType type, const float* x, int64_t ldx, int64_t n, int64_t k,
                               std::vector<float>& buf) {
  if (buf.size() < static_cast<size_t>(n * k)) buf.resize(static_cast<size_t>(n * k));
  round_act(type, x, ldx, n, k, buf.data());
  return buf.data();
}

void CpuOps::round_act(quant::QType type, const float* x, int64_t ldx, int64_t n, int64_t k, float* d,
                       const int32_t* skip) {
  const quant::ActFormat f = quant::act_format_of(type);
  pool_->parallel_for(
      n,
      [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t) {
          if (skip != nullptr && skip[t] < 0) continue;
          if (round16_ != nullptr && (f == quant::ActFormat::kBF16 || f == quant::ActFormat::kF16))
            round16_(f == quant::ActFormat::kBF16, x + t * ldx, d + t * k, k);
          else
            quant::act_round_trip(f, x + t * ldx, d + t * k, k);
        }
      },
      threads_for(n * k * 8));
}

void CpuOps::matmul_q8(const Weight& w, const float* x, int64_t ldx, int64_t n, float* y,
                       int64_t ldy) {
  const int64_t K = w.cols;
  size_t rb = 0;
  const uint8_t* xq = quantize_act(w.type, x, ldx, n, K, qbuf_a_, pbuf_a_, rb);
  const cpu::QDotTileFn fn = cpu::qdot_fn(*qk_, w.type);
  const int64_t tiles = ceil_div(w.rows, cpu::kQTileRows);
  const int64_t tr = q8_tile_rows(n);
  pool_->parallel_for_chunks(
      tiles, n_threads_ * kChunksPerThread,
      [&](int64_t b, int64_t e) {
        const int64_t r0 = b * cpu::kQTileRows, r1 = std::min(e * cpu::kQTileRows, w.rows);
        const void* xp[cpu::kQTileTokens];
        for (int64_t rb0 = r0; rb0 < r1; rb0 += kQRowBlock) {
          const int64_t rb1 = std::min(r1, rb0 + kQRowBlock);
          for (int64_t t0 = 0; t0 < n; t0 += kQTokBlock) {
            const int64_t t1 = std::min(n, t0 + kQTokBlock);
            for (int64_t tt = t0; tt < t1; tt += cpu::kQTileTokens) {
              const int nt = static_cast<int>(std::min<int64_t>(cpu::kQTileTokens, t1 - tt));
              for (int i = 0; i < nt; ++i) xp[i] = xq + static_cast<size_t>(tt + i) * rb;
              for (int64_t r = rb0; r < rb1; r += tr) {
                const int nr = static_cast<int>(std::min<int64_t>(tr, rb1 - r));
                fn(w.data + static_cast<size_t>(r) * w.row_bytes, w.row_bytes, nr, xp, nt, K,
                   y + tt * ldy + r, ldy);
              }
            }
          }
        }
      },
      threads_for(n * w.rows * w.cols));
}

void CpuOps::matmul(const Weight& w, const float* x, int64_t ldx, int64_t n, float* y,
                    int64_t ldy) {
  if (n <= 0 || w.rows <= 0) return;
  check_weight_layout(w);
  DSV4_CHECK(ldx >= w.cols && ldy >= w.rows);
  if (act_quant_ == ActQuant::kQ8 && has_qdot(w.type)) {
    matmul_q8(w, x, ldx, n, y, ldy);
    return;
  }
  if (act_quant_ == ActQuant::kQ8 && quant::act_format_of(w.type) != quant::ActFormat::kNone) {
    // no integer kernel: x rounded through the type's vec_dot_type, then the float path
    x = round_act(w.type, x, ldx, n, w.cols, rbuf_);
    ldx = w.cols;
  }
  const int64_t tiles = ceil_div(w.rows, kRowTile);
  pool_->parallel_for(
      tiles,
      [&](int64_t b, int64_t e, int t) {
        matmul_rows(w, b * kRowTile, std::min(e * kRowTile, w.rows), x, ldx, n, y, ldy, t);
      },
      threads_for(n * w.rows * w.cols));
}

// ---- RMSNorm (§1) ------------------------------------------------------------------------------

void CpuOps::rms_norm(const float* x, const float* w, int64_t n, int64_t dim, float eps,
                      float* y) {
  if (n <= 0 || dim <= 0) return;
  pool_->parallel_for(
      n,
      [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t) {
          const float* xt = x + t * dim;
          float* yt = y + t * dim;
          double acc[4] = {0, 0, 0, 0};
          int64_t c = 0;
          for (; c + 4 <= dim; c += 4)
            for (int l = 0; l < 4; ++l) acc[l] += static_cast<double>(xt[c + l]) * xt[c + l];
          for (int l = 0; c < dim; ++c, ++l) acc[l] += static_cast<double>(xt[c]) * xt[c];
          const double ss = (acc[0] + acc[1]) + (acc[2] + acc[3]);
          const float r = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(dim) + eps));
          if (w != nullptr) {
            for (int64_t i = 0; i < dim; ++i) yt[i] = xt[i] * r * w[i];
          } else {
            for (int64_t i = 0; i < dim; ++i) yt[i] = xt[i] * r;
          }
        }
      },
      threads_for(n * dim));
}

// ---- hyper-connections (§5) --------------------------------------------------------------------

void CpuOps::hc_mix(const float* X, int64_t n, int64_t hc, int64_t D, const Weight& fn,
                    float norm_eps, float* m) {
  const int64_t F = hc * D;
  DSV4_CHECK(fn.cols == F);
  matmul(fn, X, F, n, m, fn.rows);
  pool_->parallel_for(
      n,
      [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t) {
          const float* xt = X + t * F;
          double acc[4] = {0, 0, 0, 0};
          int64_t c = 0;
          for (; c + 4 <= F; c += 4)
            for (int l = 0; l < 4; ++l) acc[l] += static_cast<double>(xt[c + l]) * xt[c + l];
          for (int l = 0; c < F; ++c, ++l) acc[l] += static_cast<double>(xt[c]) * xt[c];
          const double ss = (acc[0] + acc[1]) + (acc[2] + acc[3]);
          const float r = static_cast<float>(1.0 / std::sqrt(ss / static_cast<double>(F) + norm_eps));
          for (int64_t i = 0; i < fn.rows; ++i) m[t * fn.rows + i] *= r;
        }
      },
      threads_for(n * F));
}

void CpuOps::hc_coeffs(const float* X, int64_t n, int64_t hc, int64_t D, const HcWeights& p,
                       float norm_eps, float hc_eps, int64_t sinkhorn_iters, float* pre,
                       float* post, float* comb) {
  if (n <= 0) return;
  const int64_t nm = (2 + hc) * hc;
  DSV4_CHECK(p.fn.rows == nm && hc <= 64);
  if (buf_a_.size() < static_cast<size_t>(n * nm)) buf_a_.resize(static_cast<size_t>(n * nm));
  float* m = buf_a_.data();
  hc_mix(X, n, hc, D, p.fn, norm_eps, m);
  // §5.1, §5.2 per token, in double (hc² values: cheap).
  pool_->parallel_for(
      n,
      [&](int64_t b, int64_t e, int th) {
        double* C = reinterpret_cast<double*>(scratch(th, static_cast<size_t>(2 * hc * hc)));
        const double eps = hc_eps;
        for (int64_t t = b; t < e; ++t) {
          const float* mt = m + t * nm;
          for (int64_t j = 0; j < hc; ++j) {
            pre[t * hc + j] = static_cast<float>(sigmoidd(static_cast<double>(mt[j]) * p.scale[0] + p.base[j]) + eps);
            post[t * hc + j] = static_cast<float>(
                2.0 * sigmoidd(static_cast<double>(mt[hc + j]) * p.scale[1] + p.base[hc + j]));
          }
          for (int64_t j = 0; j < hc; ++j) {
            double mx = -std::numeric_limits<double>::infinity();
            for (int64_t k = 0; k < hc; ++k) {
              const int64_t i = 2 * hc + j * hc + k;
              C[j * hc + k] = static_cast<double>(mt[i]) * p.scale[2] + p.base[i];
              mx = std::max(mx, C[j * hc + k]);
            }
            double s = 0;
            for (int64_t k = 0; k < hc; ++k) s += (C[j * hc + k] = std::exp(C[j * hc + k] - mx));
            for (int64_t k = 0; k < hc; ++k) C[j * hc + k] = C[j * hc + k] / s + eps;
          }
          auto col_norm = [&] {
            for (int64_t k = 0; k < hc; ++k) {
              double s = 0;
              for (int64_t j = 0; j < hc; ++j) s += C[j * hc + k];
              for (int64_t j = 0; j < hc; ++j) C[j * hc + k] /= (s + eps);
            }
          };
          col_norm();
          for (int64_t it = 0; it < sinkhorn_iters - 1; ++it) {
            for (int64_t j = 0; j < hc; ++j) {
              double s = 0;
              for (int64_t k = 0; k < hc; ++k) s += C[j * hc + k];
              for (int64_t k = 0; k < hc; ++k) C[j * hc + k] /= (s + eps);
            }
            col_norm();
          }
          for (int64_t i = 0; i < hc * hc; ++i) comb[t * hc * hc + i] = static_cast<float>(C[i]);
        }
      },
      threads_for(n * 1024));
}

void CpuOps::hc_pre(const float* X, int64_t n, int64_t hc, int64_t D, const float* pre,
                    float* u) {
  if (n <= 0) return;
  pool_->parallel_for(
      n,
      [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t) {
          const float* xt = X + t * hc * D;
          float* ut = u + t * D;
          const float p0 = pre[t * hc];
          for (int64_t c = 0; c < D; ++c) ut[c] = p0 * xt[c];
          for (int64_t j = 1; j < hc; ++j) k_->axpy(pre[t * hc + j], xt + j * D, ut, D);
        }
      },
      threads_for(n * hc * D));
}

void CpuOps::hc_post(float* X, int64_t n, int64_t hc, int64_t D, const float* post,
                     const float* comb, const float* F) {
  if (n <= 0) return;
  pool_->parallel_for(
      n,
      [&](int64_t b, int64_t e, int th) {
        float* old = scratch(th, static_cast<size_t>(hc * D));
        for (int64_t t = b; t < e; ++t) {
          float* xt = X + t * hc * D;
          std::memcpy(old, xt, static_cast<size_t>(hc * D) * sizeof(float));
          const float* ft = F + t * D;
          const float* ct = comb + t * hc * hc;
          for (int64_t k = 0; k < hc; ++k) {
            float* o = xt + k * D;
            const float pk = post[t * hc + k];
            for (int64_t c = 0; c < D; ++c) o[c] = pk * ft[c];
            for (int64_t j = 0; j < hc; ++j) k_->axpy(ct[j * hc + k], old + j * D, o, D);
          }
        }
      },
      threads_for(n * hc * hc * D));
}

void CpuOps::hc_head(const float* X, int64_t n, int64_t hc, int64_t D, const HcWeights& p,
                     float norm_eps, float hc_eps, float* y) {
  if (n <= 0) return;
  DSV4_CHECK(p.fn.rows == hc && hc <= 64);
  if (buf_a_.size() < static_cast<size_t>(n * hc)) buf_a_.resize(static_cast<size_t>(n * hc));
  float* m = buf_a_.data();
  hc_mix(X, n, hc, D, p.fn, norm_eps, m);
  pool_->parallel_for(
      n,
      [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t) {
          const float* xt = X + t * hc * D;
          float* yt = y + t * D;
          for (int64_t j = 0; j < hc; ++j) {
            const float wj = static_cast<float>(
                sigmoidd(static_cast<double>(m[t * hc + j]) * p.scale[0] + p.base[j]) + hc_eps);
            if (j == 0) {
              for (int64_t c = 0; c < D; ++c) yt[c] = wj * xt[c];
            } else {
              k_->axpy(wj, xt + j * D, yt, D);
            }
          }
        }
      },
      threads_for(n * hc * D));
}

// ---- RoPE (§7.1) -------------------------------------------------------------------------------

void CpuOps::rope(float* x, int64_t n, int64_t heads, int64_t dim, const float* freqs,
                  int64_t n_freq, const int64_t* pos, bool inverse) {
  if (n <= 0 || n_freq <= 0) return;
  DSV4_CHECK(2 * n_freq <= dim);
  const int64_t off = dim - 2 * n_freq;
  pool_->parallel_for(
      n,
      [&](int64_t b, int64_t e, int th) {
        float* cs = scratch(th, static_cast<size_t>(2 * n_freq));
        for (int64_t t = b; t < e; ++t) {
          for (int64_t i = 0; i < n_freq; ++i) {
            const float ang = static_cast<float>(pos[t]) * freqs[i];  // one fp32 rounding
            cs[2 * i] = std::cos(ang);
            cs[2 * i + 1] = inverse ? -std::sin(ang) : std::sin(ang);
          }
          for (int64_t h = 0; h < heads; ++h) {
            float* v = x + (t * heads + h) * dim + off;
            for (int64_t i = 0; i < n_freq; ++i) {
              const float c = cs[2 * i], s = cs[2 * i + 1];
              const float x0 = v[2 * i], x1 = v[2 * i + 1];
              v[2 * i] = x0 * c - x1 * s;
              v[2 * i + 1] = x0 * s + x1 * c;
            }
          }
        }
      },
      threads_for(n * heads * n_freq * 4));
}

// ---- sparse attention with sinks (§7.6) --------------------------------------------------------

void CpuOps::attention(const float* q, int64_t n, int64_t H, int64_t Dh, const float* kv,
                       const int64_t* offsets, const int32_t* indices, const float* sinks,
                       float scale, float* out) {
  if (n <= 0 || H <= 0) return;
  int64_t max_rows = 0;
  for (int64_t t = 0; t < n; ++t) max_rows = std::max(max_rows, offsets[t + 1] - offsets[t]);
  // Heads of one token share its rows (one K = V row set). A task is one token and up to
  // G = kHeadBlock of its heads, the heads being the vector dimension: q^T [Dh][G] packed once,
  // scores S [rows][G] = rows · q^T (qk16), the softmax per head, then the weighted rows
  // O^T [Dh][G] = Σ_k row_k ⊗ P[k] (pv16). Each row is read once per task (not once per head) and
  // every (row, head) value is one chain in a fixed order (kernels.h), so results do not depend
  // on the grouping, the batch or the threads.
  constexpr int64_t G = cpu::kHeadBlock;
  const int64_t groups = ceil_div(H, G);
  const size_t rows = static_cast<size_t>(std::max<int64_t>(max_rows, 1));
  pool_->parallel_for(
      n * groups,
      [&](int64_t b, int64_t e, int th) {
        float* qt = scratch(th, static_cast<size_t>(2 * Dh * G) + rows * G);
        float* ot = qt + Dh * G;
        float* s = ot + Dh * G;
        const float** rp = row_scratch(th, rows);
        for (int64_t task = b; task < e; ++task) {
          const int64_t t = task / groups, h0 = (task % groups) * G;
          const int64_t nh = std::min(G, H - h0);
          const int64_t k0 = offsets[t], nk = offsets[t + 1] - offsets[t];
          float* o = out + (t * H + h0) * Dh;
          if (nk <= 0) {
            std::fill(o, o + nh * Dh, 0.0f);
            continue;
          }
          pack_heads_t(q + (t * H + h0) * Dh, nh, Dh, qt);
          for (int64_t k = 0; k < nk; ++k) rp[k] = kv + static_cast<int64_t>(indices[k0 + k]) * Dh;
          k_->qk16(qt, rp, nk, Dh, s);
          // softmax over the rows and the sink, per head (normaliser in double); the padded
          // columns j ≥ nh are left as they are: pv16's columns are independent and theirs are
          // not copied out
          for (int64_t j = 0; j < nh; ++j) {
            const int64_t h = h0 + j;
            float mx = (sinks != nullptr) ? sinks[h] : -std::numeric_limits<float>::infinity();
            for (int64_t k = 0; k < nk; ++k) mx = std::max(mx, s[k * G + j] *= scale);
            double den = (sinks != nullptr) ? static_cast<double>(std::exp(sinks[h] - mx)) : 0.0;
            for (int64_t k = 0; k < nk; ++k) den += (s[k * G + j] = std::exp(s[k * G + j] - mx));
            const float inv = static_cast<float>(1.0 / den);
            for (int64_t k = 0; k < nk; ++k) s[k * G + j] *= inv;
          }
          k_->pv16(s, rp, nk, Dh, ot);
          for (int64_t j = 0; j < nh; ++j)
            for (int64_t d = 0; d < Dh; ++d) o[j * Dh + d] = ot[d * G + j];
        }
      },
      threads_for(n * H * max_rows * Dh * 2));
}

// ---- lightning indexer scores (§7.5) -----------------------------------------------------------

void CpuOps::indexer_scores(const float* qI, const float* wI, int64_t n, int64_t nI, int64_t dI,
                            const float* keys, const int64_t* n_vis, float scale, float* score,
                            int64_t ld_score) {
  if (n <= 0) return;
  // A task is one token and up to kKeyChunk of its keys: the token's heads packed as q^T in
  // groups of G = kHeadBlock ([groups][dI][G], zero-padded), the dots of every key with every head
  // by qk16 (one chain in increasing d per pair), then per key the sum over heads in head order.
  constexpr int64_t kKeyChunk = 64;
  constexpr int64_t G = cpu::kHeadBlock;
  const int64_t groups = ceil_div(nI, G);
  int64_t max_chunks = 0;
  for (int64_t t = 0; t < n; ++t) max_chunks = std::max(max_chunks, ceil_div(n_vis[t], kKeyChunk));
  if (max_chunks == 0) return;
  pool_->parallel_for(
      n * max_chunks,
      [&](int64_t b, int64_t e, int th) {
        float* qt = scratch(th, static_cast<size_t>(groups * dI * G + groups * kKeyChunk * G));
        float* d = qt + groups * dI * G;
        const float** rp = row_scratch(th, static_cast<size_t>(kKeyChunk));
        int64_t packed = -1;
        for (int64_t task = b; task < e; ++task) {
          const int64_t t = task / max_chunks, j0 = (task % max_chunks) * kKeyChunk;
          const int64_t j1 = std::min(n_vis[t], j0 + kKeyChunk);
          if (j1 <= j0) continue;
          if (packed != t) {
            for (int64_t g = 0; g < groups; ++g)
              pack_heads_t(qI + (t * nI + g * G) * dI, std::min(G, nI - g * G), dI, qt + g * dI * G);
            packed = t;
          }
          const int64_t nk = j1 - j0;
          for (int64_t j = 0; j < nk; ++j) rp[j] = keys + (j0 + j) * dI;
          for (int64_t g = 0; g < groups; ++g) k_->qk16(qt + g * dI * G, rp, nk, dI, d + g * kKeyChunk * G);
          const float* wt = wI + t * nI;
          for (int64_t j = 0; j < nk; ++j) {
            float acc = 0.0f;
            for (int64_t g = 0; g < groups; ++g) {
              const float* dj = d + (g * kKeyChunk + j) * G;
              const int64_t nh = std::min(G, nI - g * G);
              for (int64_t i = 0; i < nh; ++i) acc += (wt[g * G + i] * scale) * std::max(dj[i], 0.0f);
            }
            score[t * ld_score + j0 + j] = acc;
          }
        }
      },
      threads_for(n * max_chunks * kKeyChunk * nI * dI));
}

// ---- MoE experts (§8.2) ------------------------------------------------------------------------

void CpuOps::moe(const ExpertWeights& ew, const float* x, int64_t n, int64_t n_used,
                 const int32_t* ids, const float* weights, float limit, float* y) {
  if (n <= 0 || n_used <= 0) return;
  const int64_t E = n_expert_of(ew);
  const int64_t I = ew.n_ff, D = ew.n_embd;
  const int64_t S = n * n_used;  // slots (t, k), slot = t·n_used + k

  // Group slots by expert, each expert's slots in (t, k) order.
  ibuf_a_.assign(static_cast<size_t>(E + 1), 0);  // start of expert e's slots in ibuf_b_
  int64_t* start = ibuf_a_.data();
  for (int64_t s = 0; s < S; ++s) {
    const int32_t e = ids[s];
    if (e < 0) continue;
    DSV4_CHECK(e < E);
    ++start[e + 1];
  }
  for (int64_t e = 0; e < E; ++e) start[e + 1] += start[e];
  if (ibuf_b_.size() < static_cast<size_t>(S)) ibuf_b_.resize(static_cast<size_t>(S));
  int64_t* slots = ibuf_b_.data();
  {
    if (ibuf_c_.size() < static_cast<size_t>(E)) ibuf_c_.resize(static_cast<size_t>(E));
    int64_t* fill = ibuf_c_.data();
    for (int64_t e = 0; e < E; ++e) fill[e] = start[e];
    for (int64_t s = 0; s < S; ++s)
      if (ids[s] >= 0) slots[fill[ids[s]]++] = s;
  }
  // Tasks: (expert, first row) chunks of one expert's rows; gate/up first, then down.
  constexpr int64_t kUpChunk = 16, kDownChunk = 16;
  ibuf_c_.clear();
  for (int64_t e = 0; e < E; ++e)
    if (start[e + 1] > start[e])
      for (int64_t r = 0; r < I; r += kUpChunk) ibuf_c_.push_back(e * I + r);
  const size_t n_up_tasks = ibuf_c_.size();
  for (int64_t e = 0; e < E; ++e)
    if (start[e + 1] > start[e])
      for (int64_t r = 0; r < D; r += kDownChunk) ibuf_c_.push_back(e * D + r);
  const int64_t* tasks = ibuf_c_.data();

  if (buf_a_.size() < static_cast<size_t>(S * I)) buf_a_.resize(static_cast<size_t>(S * I));
  if (buf_b_.size() < static_cast<size_t>(S * D)) buf_b_.resize(static_cast<size_t>(S * D));
  float* hbuf = buf_a_.data();  // h [slot][I]
  float* obuf = buf_b_.data();  // down_e·h [slot][D]

  const bool q8 = act_quant_ == ActQuant::kQ8 && has_qdot(ew.gate.type) && has_qdot(ew.up.type) &&
                  has_qdot(ew.down.type);
  if (q8) {
    // Integer path: x quantized once per format, h once per slot; 4 rows × 4 slots per tile.
    // x once for gate and up when they share a type, else once each; h after gate/up
    size_t rbg = 0, rbu = 0, rbd = 0;
    const bool same_gu = ew.gate.type == ew.up.type;
    const uint8_t* xqg = quantize_act(ew.gate.type, x, D, n, D, qbuf_a_, pbuf_a_, rbg);
    const uint8_t* xqu = xqg;
    rbu = rbg;
    if (!same_gu) xqu = quantize_act(ew.up.type, x, D, n, D, qbuf_b_, pbuf_b_, rbu);
    const cpu::QDotTileFn fg = cpu::qdot_fn(*qk_, ew.gate.type);
    const cpu::QDotTileFn fu = cpu::qdot_fn(*qk_, ew.up.type);
    const cpu::QDotTileFn fd = cpu::qdot_fn(*qk_, ew.down.type);
    constexpr int TR = cpu::kQTileRows, TT = cpu::kQTileTokens, TP = cpu::kQPanelTokens;
    // IQ2_XXS gate/up, experts with more than TT slots: their slots' rows packed once into
    // panels of TP (qdot.h iq2_xxs_pack; gate and up share them), each decoded weight row then
    // serving a whole panel; values identical to the per-token tiles (qdot.h).
    const bool panel = ew.gate.type == quant::QType::kIQ2_XXS &&
                       ew.up.type == quant::QType::kIQ2_XXS && qk_->iq2_xxs_panel != nullptr;
    const int64_t* pstart = nullptr;  // expert e's panels: pstart[e] .. pstart[e + 1]
    const uint8_t* panels = nullptr;
    size_t pbytes = 0;
    if (panel) {
      ibuf_d_.assign(static_cast<size_t>(E + 1), 0);
      for (int64_t e = 0; e < E; ++e) {
        const int64_t ne = start[e + 1] - start[e];
        ibuf_d_[static_cast<size_t>(e + 1)] = ibuf_d_[static_cast<size_t>(e)] + (ne > TT ? ceil_div(ne, TP) : 0);
      }
      pstart = ibuf_d_.data();
      const int64_t np = pstart[E];
      pbytes = qk_->iq2_xxs_panel_bytes(D);
      if (panel_buf_.size() < static_cast<size_t>(np) * pbytes) panel_buf_.resize(static_cast<size_t>(np) * pbytes);
      uint8_t* pb = panel_buf_.data();
      panels = pb;
      pool_->parallel_for(
          np,
          [&](int64_t b, int64_t e_) {
            const void* xs[TP];
            for (int64_t p = b; p < e_; ++p) {
              const int64_t e = std::upper_bound(pstart, pstart + E + 1, p) - pstart - 1;
              const int64_t s0 = start[e] + (p - pstart[e]) * TP;
              const int nt = static_cast<int>(std::min<int64_t>(TP, start[e + 1] - s0));
              for (int i = 0; i < nt; ++i)
                xs[i] = xqg + static_cast<size_t>(slots[s0 + i] / n_used) * rbg;
              qk_->iq2_xxs_pack(xs, nt, D, pb + static_cast<size_t>(p) * pbytes);
            }
          },
          threads_for(np * TP * D));
    }
    pool_->parallel_for_chunks(
        static_cast<int64_t>(n_up_tasks), n_threads_ * kChunksPerThread,
        [&](int64_t b, int64_t e_) {
          const void* xg[TT];
          const void* xu[TT];
          float og[TP * kUpChunk], ou[TP * kUpChunk];
          // h for slots s0 .. s0+nt-1 and rows r .. r+nr-1 from og / ou (out[t·ldo + i])
          auto swiglu = [&](int64_t s0, int nt, int64_t r, int nr, int64_t ldo) {
            for (int ti = 0; ti < nt; ++ti) {
              const int64_t slot = slots[s0 + ti];
              for (int i = 0; i < nr; ++i) {
                const float g = std::min(og[ti * ldo + i], limit);
                const float u = std::clamp(ou[ti * ldo + i], -limit, limit);
                hbuf[slot * I + r + i] = (g * sigmoidf(g)) * u;  // weight after down (below)
              }
            }
          };
          for (int64_t task = b; task < e_; ++task) {
            const int64_t e = tasks[task] / I, r0 = tasks[task] % I;
            const int64_t r1 = std::min(I, r0 + kUpChunk);
            if (panel && start[e + 1] - start[e] > TT) {
              const int nr = static_cast<int>(r1 - r0);
              const size_t row = static_cast<size_t>(e * I + r0);
              for (int64_t p = pstart[e]; p < pstart[e + 1]; ++p) {
                const int64_t s0 = start[e] + (p - pstart[e]) * TP;
                const int nt = static_cast<int>(std::min<int64_t>(TP, start[e + 1] - s0));
                const uint8_t* pp = panels + static_cast<size_t>(p) * pbytes;
                qk_->iq2_xxs_panel(ew.gate.data + row * ew.gate.row_bytes, ew.gate.row_bytes, nr, pp,
                                   nt, D, og, kUpChunk);
                qk_->iq2_xxs_panel(ew.up.data + row * ew.up.row_bytes, ew.up.row_bytes, nr, pp, nt, D,
                                   ou, kUpChunk);
                swiglu(s0, nt, r0, nr, kUpChunk);
              }
              continue;
            }
            const int64_t tr = q8_tile_rows(start[e + 1] - start[e]);
            for (int64_t r = r0; r < r1; r += tr) {
              const int nr = static_cast<int>(std::min<int64_t>(tr, r1 - r));
              const size_t row = static_cast<size_t>(e * I + r);
              for (int64_t s0 = start[e]; s0 < start[e + 1]; s0 += TT) {
                const int nt = static_cast<int>(std::min<int64_t>(TT, start[e + 1] - s0));
                for (int i = 0; i < nt; ++i) {
                  const int64_t tok = slots[s0 + i] / n_used;
                  xg[i] = xqg + static_cast<size_t>(tok) * rbg;
                  xu[i] = xqu + static_cast<size_t>(tok) * rbu;
                }
                fg(ew.gate.data + row * ew.gate.row_bytes, ew.gate.row_bytes, nr, xg, nt, D, og, TR);
                fu(ew.up.data + row * ew.up.row_bytes, ew.up.row_bytes, nr, xu, nt, D, ou, TR);
                swiglu(s0, nt, r, nr, TR);
              }
            }
          }
        },
        threads_for(S * I * D * 2));
    const uint8_t* hq = quantize_act(ew.down.type, hbuf, I, S, I, qbuf_c_, pbuf_c_, rbd, ids);
    pool_->parallel_for_chunks(
        static_cast<int64_t>(ibuf_c_.size() - n_up_tasks), n_threads_ * kChunksPerThread,
        [&](int64_t b, int64_t e_) {
          const void* hp[TT];
          float o[TT * TR];
          for (int64_t task = b; task < e_; ++task) {
            const int64_t v = tasks[n_up_tasks + static_cast<size_t>(task)];
            const int64_t e = v / D, r0 = v % D;
            const int64_t r1 = std::min(D, r0 + kDownChunk);
            const int64_t tr = q8_tile_rows(start[e + 1] - start[e]);
            for (int64_t r = r0; r < r1; r += tr) {
              const int nr = static_cast<int>(std::min<int64_t>(tr, r1 - r));
              const size_t row = static_cast<size_t>(e * D + r);
              for (int64_t s0 = start[e]; s0 < start[e + 1]; s0 += TT) {
                const int nt = static_cast<int>(std::min<int64_t>(TT, start[e + 1] - s0));
                for (int i = 0; i < nt; ++i) hp[i] = hq + static_cast<size_t>(slots[s0 + i]) * rbd;
                fd(ew.down.data + row * ew.down.row_bytes, ew.down.row_bytes, nr, hp, nt, I, o, TR);
                for (int ti = 0; ti < nt; ++ti)
                  for (int i = 0; i < nr; ++i) obuf[slots[s0 + ti] * D + r + i] = o[ti * TR + i];
              }
            }
          }
        },
        threads_for(S * D * I));
  } else {
  // ActQuant::kQ8 without integer kernels: x rounded per gate / up type (upstream's vec_dot_type),
  // h rounded per down type before the down projection, the weight applied after it.
  const float* xg_rows = x;
  const float* xu_rows = x;
  if (act_quant_ == ActQuant::kQ8) {
    if (quant::act_format_of(ew.gate.type) != quant::ActFormat::kNone)
      xg_rows = round_act(ew.gate.type, x, D, n, D, rbuf_);
    if (ew.up.type == ew.gate.type)
      xu_rows = xg_rows;
    else if (quant::act_format_of(ew.up.type) != quant::ActFormat::kNone)
      xu_rows = round_act(ew.up.type, x, D, n, D, rbuf_b_);
  }
  const bool weight_in_h = act_quant_ != ActQuant::kQ8;
  // Whether the fused kernels take these types / lengths.
  const bool fused_gu = k_->has_fused != nullptr && k_->has_fused(ew.gate.type, D) &&
                        k_->has_fused(ew.up.type, D);
  const bool fused_down = k_->has_fused != nullptr && k_->has_fused(ew.down.type, I);

  // gate + up → h = w · silu(min(g, limit)) ⊙ clamp(u, ±limit), rows two at a time:
  // scratch = [gate r, gate r+1, up r, up r+1] (or [gate r, up r]).
  pool_->parallel_for(
      static_cast<int64_t>(n_up_tasks),
      [&](int64_t b, int64_t e_, int th) {
        float* s = scratch(th, static_cast<size_t>(2 * kRowTile * D));
        for (int64_t task = b; task < e_; ++task) {
          const int64_t e = tasks[task] / I, r0 = tasks[task] % I;
          const int64_t r1 = std::min(I, r0 + kUpChunk);
          const int64_t n_slots = start[e + 1] - start[e];
          if (n_slots <= kFusedMaxTokens && fused_gu) {
            for (int64_t r = r0; r < r1; ++r) {
              const size_t row = static_cast<size_t>(e * I + r);
              for (int64_t si = start[e]; si < start[e + 1]; ++si) {
                const int64_t slot = slots[si];
                float g = 0, u = 0;
                k_->dot_fused(ew.gate.type, ew.gate.data + row * ew.gate.row_bytes,
                              xg_rows + (slot / n_used) * D, D, &g);
                k_->dot_fused(ew.up.type, ew.up.data + row * ew.up.row_bytes, xu_rows + (slot / n_used) * D,
                              D, &u);
                g = std::min(g, limit);
                u = std::clamp(u, -limit, limit);
                hbuf[slot * I + r] = (weight_in_h ? weights[slot] : 1.0f) * (g * sigmoidf(g)) * u;
              }
            }
            continue;
          }
          // Several slots: dequantize ≤ 4 gate and 4 up rows, then tiles of slots.
          for (int64_t r = r0; r < r1; r += kRowTile) {
            const int nr = static_cast<int>(std::min(kRowTile, r1 - r));
            for (int i = 0; i < nr; ++i) {
              const size_t row = static_cast<size_t>(e * I + r + i);
              DSV4_CHECK(k_->dequant(ew.gate.type, ew.gate.data + row * ew.gate.row_bytes, s + i * D, D));
              DSV4_CHECK(k_->dequant(ew.up.type, ew.up.data + row * ew.up.row_bytes, s + (kRowTile + i) * D, D));
            }
            const float* xp[cpu::kTileTokens];
            const float* xq[cpu::kTileTokens];
            float og[cpu::kTileTokens * kRowTile], ou[cpu::kTileTokens * kRowTile];
            for (int64_t s0 = start[e]; s0 < start[e + 1]; s0 += cpu::kTileTokens) {
              const int nt = static_cast<int>(std::min<int64_t>(cpu::kTileTokens, start[e + 1] - s0));
              for (int i = 0; i < nt; ++i) {
                xp[i] = xg_rows + (slots[s0 + i] / n_used) * D;
                xq[i] = xu_rows + (slots[s0 + i] / n_used) * D;
              }
              k_->dot_tile(s, D, nr, xp, nt, D, og, kRowTile);
              k_->dot_tile(s + kRowTile * D, D, nr, xq, nt, D, ou, kRowTile);
              for (int ti = 0; ti < nt; ++ti) {
                const int64_t slot = slots[s0 + ti];
                const float w = weight_in_h ? weights[slot] : 1.0f;
                for (int i = 0; i < nr; ++i) {
                  const float g = std::min(og[ti * kRowTile + i], limit);
                  const float u = std::clamp(ou[ti * kRowTile + i], -limit, limit);
                  hbuf[slot * I + r + i] = w * (g * sigmoidf(g)) * u;
                }
              }
            }
          }
        }
      },
      threads_for(S * I * D * 2));

  if (!weight_in_h && quant::act_format_of(ew.down.type) != quant::ActFormat::kNone)
    round_act(ew.down.type, hbuf, I, S, I, hbuf, ids);  // in place, valid slots only
  // down: obuf[slot] = down_e · h[slot], four rows at a time.
  pool_->parallel_for(
      static_cast<int64_t>(ibuf_c_.size() - n_up_tasks),
      [&](int64_t b, int64_t e_, int th) {
        float* s = scratch(th, static_cast<size_t>(kRowTile * I));
        for (int64_t task = b; task < e_; ++task) {
          const int64_t v = tasks[n_up_tasks + static_cast<size_t>(task)];
          const int64_t e = v / D, r0 = v % D;
          const int64_t r1 = std::min(D, r0 + kDownChunk);
          if (start[e + 1] - start[e] <= kFusedMaxTokens && fused_down) {
            for (int64_t r = r0; r < r1; ++r) {
              const uint8_t* row = ew.down.data + static_cast<size_t>(e * D + r) * ew.down.row_bytes;
              for (int64_t si = start[e]; si < start[e + 1]; ++si) {
                const int64_t slot = slots[si];
                k_->dot_fused(ew.down.type, row, hbuf + slot * I, I, obuf + slot * D + r);
              }
            }
            continue;
          }
          for (int64_t r = r0; r < r1; r += kRowTile) {
            const int nr = static_cast<int>(std::min(kRowTile, r1 - r));
            for (int i = 0; i < nr; ++i) {
              const size_t row = static_cast<size_t>(e * D + r + i);
              DSV4_CHECK(k_->dequant(ew.down.type, ew.down.data + row * ew.down.row_bytes, s + i * I, I));
            }
            const float* xp[cpu::kTileTokens];
            float o[cpu::kTileTokens * kRowTile];
            for (int64_t s0 = start[e]; s0 < start[e + 1]; s0 += cpu::kTileTokens) {
              const int nt = static_cast<int>(std::min<int64_t>(cpu::kTileTokens, start[e + 1] - s0));
              for (int i = 0; i < nt; ++i) xp[i] = hbuf + slots[s0 + i] * I;
              k_->dot_tile(s, I, nr, xp, nt, I, o, kRowTile);
              for (int ti = 0; ti < nt; ++ti)
                for (int i = 0; i < nr; ++i) obuf[slots[s0 + ti] * D + r + i] = o[ti * kRowTile + i];
            }
          }
        }
      },
      threads_for(S * D * I));

  }  // float32 path

  // y[t] += Σ_k obuf[t, k], in k order. The integer path applies the routing weight here, after
  // the down projection, as upstream does (its h is quantized without the weight).
  const bool weight_after = act_quant_ == ActQuant::kQ8;
  pool_->parallel_for(
      n,
      [&](int64_t b, int64_t e) {
        for (int64_t t = b; t < e; ++t) {
          float* yt = y + t * D;
          for (int64_t k = 0; k < n_used; ++k) {
            if (ids[t * n_used + k] < 0) continue;
            const float* o = obuf + (t * n_used + k) * D;
            if (weight_after) {
              const float w = weights[t * n_used + k];
              for (int64_t c = 0; c < D; ++c) yt[c] += w * o[c];
            } else {
              for (int64_t c = 0; c < D; ++c) yt[c] += o[c];
            }
          }
        }
      },
      threads_for(n * n_used * D));
}

}  // namespace dsv4::backend
