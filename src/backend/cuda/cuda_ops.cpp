// dsv4 backend/cuda: CudaOps (see cuda_ops.h): host side. Copies, the weight cache and the
// launch sequence of each op; the kernels are in the shared library dsv4_cuda (kernels.h).
// Section numbers refer to dsv4-architecture.md.
#include "dsv4/backend/cuda/cuda_ops.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <unordered_map>
#include <vector>

#include "dsv4/quant/iq_tables.h"
#include "kernels.h"

namespace dsv4::backend {
namespace {

// A CUDA failure after construction: abort with the message (ops.h ops return nothing).
void ck(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return;
  std::fprintf(stderr, "dsv4: CUDA error in %s: %s\n", what, cudaGetErrorString(e));
  std::abort();
}
void ck(const std::string& err) {
  if (err.empty()) return;
  std::fprintf(stderr, "dsv4: CUDA launch failed: %s\n", err.c_str());
  std::abort();
}

bool is_elem_type(quant::QType t) {
  return t == quant::QType::kF32 || t == quant::QType::kF16 || t == quant::QType::kBF16;
}

// A weight's geometry and type (a broken one is our own bug: the loader validates files).
void check_weight(const Weight& w) {
  const quant::QTypeInfo* info = quant::qtype_info(w.type);
  DSV4_CHECK(info != nullptr);
  if (!CudaOps::supports(w.type)) {
    std::fprintf(stderr, "dsv4: the CUDA backend has no kernel for weight type %s\n",
                 std::string(info->name).c_str());
    std::abort();
  }
  check_weight_layout(w);
  // the per-element kernels load whole f32 / 16-bit values
  if (w.type == quant::QType::kF32) DSV4_CHECK(w.row_bytes % 4 == 0);
  if (w.type == quant::QType::kF16 || w.type == quant::QType::kBF16) DSV4_CHECK(w.row_bytes % 2 == 0);
  // the block kernels read x in 32-float chunks with 16-byte loads (rows of cols floats)
  if (!is_elem_type(w.type)) DSV4_CHECK(w.cols % 32 == 0);
}

// FNV-1a of the first bytes: the address-reuse guard of the weight cache.
uint64_t probe_hash(const uint8_t* p, size_t bytes) {
  uint64_t h = 1469598103934665603ull;
  const size_t n = std::min<size_t>(bytes, 256);
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

}  // namespace

// ---- device state ------------------------------------------------------------------------------

struct CudaOps::Impl {
  // Device buffers, grown only. One slot per role so one op can hold several at once.
  enum Slot { kX, kY, kA, kB, kC, kD, kE, kP0, kP1, kP2, kP3, kP4, kNumSlots };
  struct Buf {
    void* p = nullptr;
    size_t cap = 0;
  };
  struct CachedWeight {
    void* p = nullptr;
    size_t bytes = 0;
    uint64_t probe = 0;
  };

  int device = 0;
  std::string name;
  cudaStream_t stream = nullptr;
  Buf bufs[kNumSlots];
  std::unordered_map<const uint8_t*, CachedWeight> weights;
  size_t weight_bytes = 0;
  // host staging (grown only)
  std::vector<int32_t> hi_a, hi_b, hi_c, hi_d;
  std::vector<int64_t> hl_a;
  std::vector<float> hf_a;

  ~Impl() {
    cudaSetDevice(device);
    for (auto& b : bufs)
      if (b.p != nullptr) cudaFree(b.p);
    for (auto& [k, w] : weights) cudaFree(w.p);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }

  void use() { ck(cudaSetDevice(device), "cudaSetDevice"); }

  template <class T>
  T* buf(Slot s, size_t count) {
    Buf& b = bufs[s];
    const size_t bytes = std::max<size_t>(count, 1) * sizeof(T);
    if (b.cap < bytes) {
      ck(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
      if (b.p != nullptr) ck(cudaFree(b.p), "cudaFree");
      b.p = nullptr;
      const size_t cap = std::max(bytes, b.cap + b.cap / 2);
      ck(cudaMalloc(&b.p, cap), "cudaMalloc (op buffer)");
      b.cap = cap;
    }
    return static_cast<T*>(b.p);
  }

  template <class T>
  T* upload(Slot s, const T* host, size_t count) {
    T* d = buf<T>(s, count);
    if (count > 0)
      ck(cudaMemcpyAsync(d, host, count * sizeof(T), cudaMemcpyHostToDevice, stream), "upload");
    return d;
  }

  template <class T>
  void download(T* host, const T* dev, size_t count) {
    if (count > 0)
      ck(cudaMemcpyAsync(host, dev, count * sizeof(T), cudaMemcpyDeviceToHost, stream), "download");
  }

  void sync() { ck(cudaStreamSynchronize(stream), "cudaStreamSynchronize"); }

  // The device copy of the first `rows` rows of w (uploaded on first use).
  const uint8_t* weight(const Weight& w, int64_t rows) {
    const size_t bytes = static_cast<size_t>(rows) * w.row_bytes;
    const uint64_t probe = probe_hash(w.data, bytes);
    auto it = weights.find(w.data);
    if (it != weights.end() && it->second.bytes >= bytes && it->second.probe == probe)
      return static_cast<const uint8_t*>(it->second.p);
    if (it != weights.end()) {
      sync();
      ck(cudaFree(it->second.p), "cudaFree (weight)");
      weight_bytes -= it->second.bytes;
      weights.erase(it);
    }
    CachedWeight c;
    c.bytes = bytes;
    c.probe = probe;
    ck(cudaMalloc(&c.p, std::max<size_t>(bytes, 1)), "cudaMalloc (weight)");
    ck(cudaMemcpy(c.p, w.data, bytes, cudaMemcpyHostToDevice), "weight upload");
    weights.emplace(w.data, c);
    weight_bytes += bytes;
    return static_cast<const uint8_t*>(c.p);
  }

  // y[t][r] (row stride ldy) = W·x[t] for t < n on device buffers; x rows compact (ldx = cols).
  void matmul_dev(const Weight& w, const uint8_t* dw, const float* dx, int64_t n, float* dy,
                  int64_t ldy) {
    cuda::MatmulArgs a;
    a.qtype = static_cast<uint32_t>(w.type);
    a.w = dw;
    a.row_bytes = w.row_bytes;
    a.rows = w.rows;
    a.cols = w.cols;
    a.x = dx;
    a.ldx = w.cols;
    a.y = dy;
    a.ldy = ldy;
    a.n = n;
    a.max_group_slots = n;
    ck(cuda::launch_matmul(a, stream));
  }
};

// ---- construction ------------------------------------------------------------------------------

CudaOps::CudaOps(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CudaOps::~CudaOps() = default;

std::string CudaOps::name() const { return impl_->name; }
int CudaOps::device() const { return impl_->device; }

bool CudaOps::supports(quant::QType type) {
  return cuda::ktype_supported(static_cast<uint32_t>(type));
}

void CudaOps::clear_weight_cache() {
  impl_->use();
  impl_->sync();
  for (auto& [k, w] : impl_->weights) ck(cudaFree(w.p), "cudaFree (weight)");
  impl_->weights.clear();
  impl_->weight_bytes = 0;
}

size_t CudaOps::weight_cache_bytes() const { return impl_->weight_bytes; }

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

Result<std::unique_ptr<Ops>> make_cuda_ops(int device) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return Status(ErrorCode::kUnavailable, std::string("cuda: no usable CUDA device: ") + cudaGetErrorString(e));
  }
  if (count == 0) return Status(ErrorCode::kUnavailable, "cuda: no CUDA device");
  if (device < 0 || device >= count)
    return Status(ErrorCode::kInvalidArgument,
                  "cuda: device " + std::to_string(device) + " out of range (" + std::to_string(count) + " visible)");
  auto impl = std::make_unique<CudaOps::Impl>();
  impl->device = device;
  cudaError_t st = cudaSetDevice(device);
  cudaDeviceProp prop{};
  if (st == cudaSuccess) st = cudaGetDeviceProperties(&prop, device);
  if (st == cudaSuccess) st = cudaStreamCreateWithFlags(&impl->stream, cudaStreamNonBlocking);
  if (st != cudaSuccess) {
    cudaGetLastError();
    return Status(ErrorCode::kUnavailable,
                  "cuda: device " + std::to_string(device) + ": " + cudaGetErrorString(st));
  }
  impl->name = "cuda[" + std::to_string(device) + ":" + prop.name + "]";
  const std::string err =
      cuda::upload_quant_tables(quant::kIq2xxsGrid, quant::kKsignsIq2xs, quant::kKvaluesMxfp4);
  if (!err.empty()) return Status(ErrorCode::kUnavailable, "cuda: " + err);
  return std::unique_ptr<Ops>(new CudaOps(std::move(impl)));
}

Result<double> measure_device_copy_bandwidth(int device, size_t bytes, int reps) {
  if (device < 0 || device >= cuda_device_count())
    return Status(ErrorCode::kUnavailable, "cuda: no device " + std::to_string(device));
  if (cudaSetDevice(device) != cudaSuccess) {
    cudaGetLastError();
    return Status(ErrorCode::kUnavailable, "cuda: cudaSetDevice failed");
  }
  std::string err;
  const double gbs = cuda::measure_d2d_bandwidth(bytes, reps, &err);
  if (gbs < 0) return Status(ErrorCode::kUnavailable, "cuda: copy bandwidth: " + err);
  return gbs;
}

// ---- matmul (§1) -------------------------------------------------------------------------------

void CudaOps::matmul(const Weight& w, const float* x, int64_t ldx, int64_t n, float* y,
                     int64_t ldy) {
  if (n <= 0 || w.rows <= 0) return;
  check_weight(w);
  DSV4_CHECK(ldx >= w.cols && ldy >= w.rows);
  Impl& m = *impl_;
  m.use();
  const uint8_t* dw = m.weight(w, w.rows);
  float* dx = m.buf<float>(Impl::kX, static_cast<size_t>(n * w.cols));
  ck(cudaMemcpy2DAsync(dx, static_cast<size_t>(w.cols) * 4, x, static_cast<size_t>(ldx) * 4,
                       static_cast<size_t>(w.cols) * 4, static_cast<size_t>(n), cudaMemcpyHostToDevice,
                       m.stream),
     "matmul upload");
  float* dy = m.buf<float>(Impl::kY, static_cast<size_t>(n * w.rows));
  m.matmul_dev(w, dw, dx, n, dy, w.rows);
  // only the rows·4 bytes of each output row: the ldy gap stays untouched
  ck(cudaMemcpy2DAsync(y, static_cast<size_t>(ldy) * 4, dy, static_cast<size_t>(w.rows) * 4,
                       static_cast<size_t>(w.rows) * 4, static_cast<size_t>(n), cudaMemcpyDeviceToHost,
                       m.stream),
     "matmul download");
  m.sync();
}

// ---- RMSNorm (§1) ------------------------------------------------------------------------------

void CudaOps::rms_norm(const float* x, const float* w, int64_t n, int64_t dim, float eps,
                       float* y) {
  if (n <= 0 || dim <= 0) return;
  Impl& m = *impl_;
  m.use();
  const size_t cnt = static_cast<size_t>(n * dim);
  float* dx = m.upload(Impl::kX, x, cnt);
  const float* dw = w != nullptr ? m.upload(Impl::kP0, w, static_cast<size_t>(dim)) : nullptr;
  ck(cuda::launch_rms_norm(dx, dw, n, dim, eps, dx, m.stream));
  m.download(y, dx, cnt);
  m.sync();
}

// ---- hyper-connections (§5) --------------------------------------------------------------------

void CudaOps::hc_coeffs(const float* X, int64_t n, int64_t hc, int64_t D, const HcWeights& p,
                        float norm_eps, float hc_eps, int64_t sinkhorn_iters, float* pre,
                        float* post, float* comb) {
  if (n <= 0) return;
  const int64_t nm = (2 + hc) * hc, F = hc * D;
  check_weight(p.fn);
  DSV4_CHECK(p.fn.rows == nm && p.fn.cols == F && hc <= cuda::kMaxHc);
  Impl& m = *impl_;
  m.use();
  const uint8_t* dw = m.weight(p.fn, p.fn.rows);
  float* dX = m.upload(Impl::kX, X, static_cast<size_t>(n * F));
  float* dm = m.buf<float>(Impl::kA, static_cast<size_t>(n * nm));
  m.matmul_dev(p.fn, dw, dX, n, dm, nm);
  ck(cuda::launch_rms_scale(dX, n, F, norm_eps, dm, nm, m.stream));
  const float* dbase = m.upload(Impl::kP0, p.base, static_cast<size_t>(nm));
  const float* dscale = m.upload(Impl::kP1, p.scale, 3);
  float* dpre = m.buf<float>(Impl::kB, static_cast<size_t>(n * hc));
  float* dpost = m.buf<float>(Impl::kC, static_cast<size_t>(n * hc));
  float* dcomb = m.buf<float>(Impl::kD, static_cast<size_t>(n * hc * hc));
  ck(cuda::launch_hc_coeffs_finish(dm, n, hc, dbase, dscale, hc_eps, sinkhorn_iters, dpre, dpost,
                                   dcomb, m.stream));
  m.download(pre, dpre, static_cast<size_t>(n * hc));
  m.download(post, dpost, static_cast<size_t>(n * hc));
  m.download(comb, dcomb, static_cast<size_t>(n * hc * hc));
  m.sync();
}

void CudaOps::hc_pre(const float* X, int64_t n, int64_t hc, int64_t D, const float* pre,
                     float* u) {
  if (n <= 0 || D <= 0) return;
  Impl& m = *impl_;
  m.use();
  const float* dX = m.upload(Impl::kX, X, static_cast<size_t>(n * hc * D));
  const float* dpre = m.upload(Impl::kP0, pre, static_cast<size_t>(n * hc));
  float* du = m.buf<float>(Impl::kY, static_cast<size_t>(n * D));
  ck(cuda::launch_hc_pre(dX, n, hc, D, dpre, du, m.stream));
  m.download(u, du, static_cast<size_t>(n * D));
  m.sync();
}

void CudaOps::hc_post(float* X, int64_t n, int64_t hc, int64_t D, const float* post,
                      const float* comb, const float* F) {
  if (n <= 0 || D <= 0) return;
  DSV4_CHECK(hc <= cuda::kMaxHc);
  Impl& m = *impl_;
  m.use();
  float* dX = m.upload(Impl::kX, X, static_cast<size_t>(n * hc * D));
  const float* dpost = m.upload(Impl::kP0, post, static_cast<size_t>(n * hc));
  const float* dcomb = m.upload(Impl::kP1, comb, static_cast<size_t>(n * hc * hc));
  const float* dF = m.upload(Impl::kA, F, static_cast<size_t>(n * D));
  ck(cuda::launch_hc_post(dX, n, hc, D, dpost, dcomb, dF, m.stream));
  m.download(X, dX, static_cast<size_t>(n * hc * D));
  m.sync();
}

void CudaOps::hc_head(const float* X, int64_t n, int64_t hc, int64_t D, const HcWeights& p,
                      float norm_eps, float hc_eps, float* y) {
  if (n <= 0 || D <= 0) return;
  const int64_t F = hc * D;
  check_weight(p.fn);
  DSV4_CHECK(p.fn.rows == hc && p.fn.cols == F);
  Impl& m = *impl_;
  m.use();
  const uint8_t* dw = m.weight(p.fn, p.fn.rows);
  float* dX = m.upload(Impl::kX, X, static_cast<size_t>(n * F));
  float* dm = m.buf<float>(Impl::kA, static_cast<size_t>(n * hc));
  m.matmul_dev(p.fn, dw, dX, n, dm, hc);
  ck(cuda::launch_rms_scale(dX, n, F, norm_eps, dm, hc, m.stream));
  const float* dbase = m.upload(Impl::kP0, p.base, static_cast<size_t>(hc));
  const float* dscale = m.upload(Impl::kP1, p.scale, 1);
  float* dy = m.buf<float>(Impl::kY, static_cast<size_t>(n * D));
  ck(cuda::launch_hc_head_finish(dX, dm, n, hc, D, dbase, dscale, hc_eps, dy, m.stream));
  m.download(y, dy, static_cast<size_t>(n * D));
  m.sync();
}

// ---- RoPE (§7.1) -------------------------------------------------------------------------------

void CudaOps::rope(float* x, int64_t n, int64_t heads, int64_t dim, const float* freqs,
                   int64_t n_freq, const int64_t* pos, bool inverse) {
  if (n <= 0 || n_freq <= 0 || heads <= 0) return;
  DSV4_CHECK(2 * n_freq <= dim);
  Impl& m = *impl_;
  m.use();
  const size_t cnt = static_cast<size_t>(n * heads * dim);
  float* dx = m.upload(Impl::kX, x, cnt);
  const float* df = m.upload(Impl::kP0, freqs, static_cast<size_t>(n_freq));
  const int64_t* dpos = m.upload(Impl::kP1, pos, static_cast<size_t>(n));
  ck(cuda::launch_rope(dx, n, heads, dim, df, n_freq, dpos, inverse, m.stream));
  m.download(x, dx, cnt);
  m.sync();
}

// ---- sparse attention with sinks (§7.6) --------------------------------------------------------

void CudaOps::attention(const float* q, int64_t n, int64_t H, int64_t Dh, const float* kv,
                        const int64_t* offsets, const int32_t* indices, const float* sinks,
                        float scale, float* out) {
  if (n <= 0 || H <= 0 || Dh <= 0) return;
  Impl& m = *impl_;
  m.use();
  // The row lists of this call: indices[offsets[0] .. offsets[n]), rebased to start at 0.
  const int64_t base = offsets[0], total = offsets[n] - offsets[0];
  DSV4_CHECK(total >= 0);
  int64_t max_rows = 0, max_idx = -1;
  for (int64_t t = 0; t < n; ++t) {
    DSV4_CHECK(offsets[t + 1] >= offsets[t]);
    max_rows = std::max(max_rows, offsets[t + 1] - offsets[t]);
  }
  for (int64_t k = 0; k < total; ++k) {
    DSV4_CHECK(indices[base + k] >= 0);
    max_idx = std::max<int64_t>(max_idx, indices[base + k]);
  }
  m.hl_a.resize(static_cast<size_t>(n + 1));
  for (int64_t t = 0; t <= n; ++t) m.hl_a[static_cast<size_t>(t)] = offsets[t] - base;
  const float* dq = m.upload(Impl::kX, q, static_cast<size_t>(n * H * Dh));
  const float* dkv = m.upload(Impl::kA, kv, static_cast<size_t>((max_idx + 1) * Dh));
  const int64_t* doff = m.upload(Impl::kP0, m.hl_a.data(), static_cast<size_t>(n + 1));
  const int32_t* didx = m.upload(Impl::kP1, indices + base, static_cast<size_t>(total));
  const float* dsinks = sinks != nullptr ? m.upload(Impl::kP2, sinks, static_cast<size_t>(H)) : nullptr;
  float* dout = m.buf<float>(Impl::kY, static_cast<size_t>(n * H * Dh));
  // Score scratch: at most ~32 M floats at a time, the tokens in chunks (results per (t, h) do
  // not depend on the chunking).
  const int64_t per_token = H * std::max<int64_t>(max_rows, 1);
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(n, (int64_t{32} << 20) / per_token));
  float* dscores = m.buf<float>(Impl::kB, static_cast<size_t>(chunk * per_token));
  for (int64_t t0 = 0; t0 < n; t0 += chunk) {
    const int64_t nt = std::min(chunk, n - t0);
    ck(cuda::launch_attention(dq + t0 * H * Dh, nt, H, Dh, dkv, doff + t0, didx, dsinks, scale,
                              dscores, max_rows, dout + t0 * H * Dh, m.stream));
  }
  m.download(out, dout, static_cast<size_t>(n * H * Dh));
  m.sync();
}

// ---- lightning-indexer scores (§7.5) -----------------------------------------------------------

void CudaOps::indexer_scores(const float* qI, const float* wI, int64_t n, int64_t nI, int64_t dI,
                             const float* keys, const int64_t* n_vis, float scale, float* score,
                             int64_t ld_score) {
  if (n <= 0) return;
  int64_t max_vis = 0;
  for (int64_t t = 0; t < n; ++t) {
    DSV4_CHECK(n_vis[t] >= 0 && n_vis[t] <= ld_score);
    max_vis = std::max(max_vis, n_vis[t]);
  }
  if (max_vis == 0) return;
  Impl& m = *impl_;
  m.use();
  const float* dq = m.upload(Impl::kX, qI, static_cast<size_t>(n * nI * dI));
  const float* dw = m.upload(Impl::kP0, wI, static_cast<size_t>(n * nI));
  const float* dk = m.upload(Impl::kA, keys, static_cast<size_t>(max_vis * dI));
  const int64_t* dv = m.upload(Impl::kP1, n_vis, static_cast<size_t>(n));
  // compact device rows of max_vis; only j < n_vis[t] is copied back into score
  float* ds = m.buf<float>(Impl::kY, static_cast<size_t>(n * max_vis));
  ck(cuda::launch_indexer_scores(dq, dw, n, nI, dI, dk, dv, max_vis, scale, ds, max_vis, m.stream));
  m.hf_a.resize(static_cast<size_t>(n * max_vis));
  m.download(m.hf_a.data(), ds, static_cast<size_t>(n * max_vis));
  m.sync();
  for (int64_t t = 0; t < n; ++t)
    std::memcpy(score + t * ld_score, m.hf_a.data() + t * max_vis,
                static_cast<size_t>(n_vis[t]) * sizeof(float));
}

// ---- MoE experts (§8.2) ------------------------------------------------------------------------

void CudaOps::moe(const ExpertWeights& ew, const float* x, int64_t n, int64_t n_used,
                  const int32_t* ids, const float* weights, float limit, float* y) {
  if (n <= 0 || n_used <= 0) return;
  check_weight(ew.gate);
  check_weight(ew.up);
  check_weight(ew.down);
  const int64_t E = n_expert_of(ew);
  const int64_t I = ew.n_ff, D = ew.n_embd;
  DSV4_CHECK(E <= 65535);
  const int64_t S = n * n_used;  // slots (t, k), slot = t·n_used + k
  Impl& m = *impl_;
  m.use();

  // Group the valid slots by expert, each expert's slots in slot order (host).
  std::vector<int32_t>& count = m.hi_a;  // per expert, then the group starts
  count.assign(static_cast<size_t>(E + 1), 0);
  for (int64_t s = 0; s < S; ++s) {
    const int32_t e = ids[s];
    if (e < 0) continue;
    DSV4_CHECK(e < E);
    ++count[static_cast<size_t>(e) + 1];
  }
  std::vector<int32_t>& slots = m.hi_b;
  std::vector<int32_t>& groups = m.hi_c;  // [A] expert ids, then [A + 1] starts
  groups.clear();
  int64_t max_slots = 0;
  for (int64_t e = 0; e < E; ++e) {
    if (count[static_cast<size_t>(e) + 1] > 0) groups.push_back(static_cast<int32_t>(e));
    max_slots = std::max<int64_t>(max_slots, count[static_cast<size_t>(e) + 1]);
    count[static_cast<size_t>(e) + 1] += count[static_cast<size_t>(e)];
  }
  const int64_t A = static_cast<int64_t>(groups.size());
  const int64_t V = count[static_cast<size_t>(E)];
  if (V == 0) return;  // nothing selected: y unchanged
  slots.resize(static_cast<size_t>(V));
  {
    std::vector<int32_t>& fill = m.hi_d;
    fill.assign(count.begin(), count.end() - 1);
    for (int64_t s = 0; s < S; ++s)
      if (ids[s] >= 0) slots[static_cast<size_t>(fill[static_cast<size_t>(ids[s])]++)] = static_cast<int32_t>(s);
  }
  for (int64_t a = 0; a < A; ++a) groups.push_back(count[static_cast<size_t>(groups[static_cast<size_t>(a)])]);
  groups.push_back(static_cast<int32_t>(V));

  const uint8_t* dgate = m.weight(ew.gate, ew.gate.rows);
  const uint8_t* dup = m.weight(ew.up, ew.up.rows);
  const uint8_t* ddown = m.weight(ew.down, ew.down.rows);
  const float* dx = m.upload(Impl::kX, x, static_cast<size_t>(n * D));
  float* dy = m.upload(Impl::kY, y, static_cast<size_t>(n * D));
  const int32_t* dids = m.upload(Impl::kP0, ids, static_cast<size_t>(S));
  const float* dwts = m.upload(Impl::kP1, weights, static_cast<size_t>(S));
  const int32_t* dslots = m.upload(Impl::kP2, slots.data(), static_cast<size_t>(V));
  const int32_t* dgroups = m.upload(Impl::kP3, groups.data(), static_cast<size_t>(2 * A + 1));
  float* dg = m.buf<float>(Impl::kA, static_cast<size_t>(S * I));
  float* du = m.buf<float>(Impl::kB, static_cast<size_t>(S * I));
  float* dh = m.buf<float>(Impl::kC, static_cast<size_t>(S * I));
  float* dout = m.buf<float>(Impl::kD, static_cast<size_t>(S * D));

  cuda::MatmulArgs a;
  a.n_groups = A;
  a.group_expert = dgroups;
  a.group_start = dgroups + A;
  a.slots = dslots;
  a.max_group_slots = max_slots;
  // gate and up: [slot][I] = W_e · x[slot / n_used]
  a.row_bytes = ew.gate.row_bytes;
  a.rows = I;
  a.cols = D;
  a.x = dx;
  a.ldx = D;
  a.x_div = n_used;
  a.ldy = I;
  a.qtype = static_cast<uint32_t>(ew.gate.type);
  a.w = dgate;
  a.y = dg;
  ck(cuda::launch_matmul(a, m.stream));
  a.qtype = static_cast<uint32_t>(ew.up.type);
  a.w = dup;
  a.row_bytes = ew.up.row_bytes;
  a.y = du;
  ck(cuda::launch_matmul(a, m.stream));
  ck(cuda::launch_moe_swiglu(dg, du, dslots, V, dwts, I, limit, dh, m.stream));
  // down: [slot][D] = W_e · h[slot]
  a.qtype = static_cast<uint32_t>(ew.down.type);
  a.w = ddown;
  a.row_bytes = ew.down.row_bytes;
  a.rows = D;
  a.cols = I;
  a.x = dh;
  a.ldx = I;
  a.x_div = 1;
  a.y = dout;
  a.ldy = D;
  ck(cuda::launch_matmul(a, m.stream));
  ck(cuda::launch_moe_sum(dout, dids, n, n_used, D, dy, m.stream));
  m.download(y, dy, static_cast<size_t>(n * D));
  m.sync();
}

}  // namespace dsv4::backend
