// dsv4 CUDA backend: the non-matmul kernels of ops.h (norms, hyper-connections, RoPE, sparse
// attention with sinks, indexer scores, MoE glue) and a copy-bandwidth probe.
//
// Determinism (ops.h): each output element is written by one thread or one block whose work
// depends only on that token's inputs; block reductions use a fixed tree over a fixed thread
// count, so results do not depend on n or on the other tokens. Products that the reference
// rounds on their own are written with __fmul_rn / __fadd_rn (never contracted); exp, sin and
// cos are the accurate library versions (no fast-math).
#include <cuda_runtime.h>

#include <cfloat>
#include <cmath>

#include "kernels.h"

namespace dsv4::cuda {
namespace {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kNormThreads = 256;
constexpr int kAttnThreads = 128;
constexpr int kIndexerWarps = 8;

std::string launched(const char* what) {
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? std::string() : std::string(what) + ": " + cudaGetErrorString(err);
}

unsigned blocks_for(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  if (b > 1 << 30) b = 1 << 30;  // kernels below loop over the rest (grid-stride)
  return static_cast<unsigned>(b < 1 ? 1 : b);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(kFull, v, off);
  return v;
}

// Fixed-tree block sum of one double per thread (blockDim.x == N, a power of two). Every thread
// gets the total. `sh` holds N doubles.
template <int N>
__device__ __forceinline__ double block_sum(double v, double* sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
#pragma unroll
  for (int s = N / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  const double total = sh[0];
  __syncthreads();
  return total;
}

template <int N>
__device__ __forceinline__ float block_max(float v, float* sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
#pragma unroll
  for (int s = N / 2; s > 0; s >>= 1) {
    if (static_cast<int>(threadIdx.x) < s) sh[threadIdx.x] = fmaxf(sh[threadIdx.x], sh[threadIdx.x + s]);
    __syncthreads();
  }
  const float total = sh[0];
  __syncthreads();
  return total;
}

// 1/sqrt(mean(x²) + eps) of a row of F floats, sum of squares in double (every thread gets it).
__device__ __forceinline__ float rms_factor(const float* x, int64_t F, float eps, double* sh) {
  double ss = 0.0;
  for (int64_t i = threadIdx.x; i < F; i += kNormThreads) {
    const double v = x[i];
    ss += v * v;
  }
  ss = block_sum<kNormThreads>(ss, sh);
  return static_cast<float>(1.0 / sqrt(ss / static_cast<double>(F) + static_cast<double>(eps)));
}

__device__ __forceinline__ double sigmoid_d(double v) { return 1.0 / (1.0 + exp(-v)); }

// ---- RMSNorm (§1) ------------------------------------------------------------------------------

__global__ void __launch_bounds__(kNormThreads)
rms_norm_kernel(const float* x, const float* w, int64_t dim, float eps, float* y) {
  __shared__ double sh[kNormThreads];
  const int64_t t = blockIdx.x;
  const float* xt = x + t * dim;
  float* yt = y + t * dim;
  const float r = rms_factor(xt, dim, eps, sh);  // ends with a barrier: x fully read before y
  for (int64_t i = threadIdx.x; i < dim; i += kNormThreads) {
    const float v = __fmul_rn(xt[i], r);
    yt[i] = w != nullptr ? __fmul_rn(v, w[i]) : v;
  }
}

__global__ void __launch_bounds__(kNormThreads)
rms_scale_kernel(const float* X, int64_t F, float eps, float* m, int64_t m_cols) {
  __shared__ double sh[kNormThreads];
  const int64_t t = blockIdx.x;
  const float r = rms_factor(X + t * F, F, eps, sh);
  for (int64_t i = threadIdx.x; i < m_cols; i += kNormThreads) m[t * m_cols + i] = __fmul_rn(m[t * m_cols + i], r);
}

// ---- hyper-connections (§5) --------------------------------------------------------------------

__global__ void hc_coeffs_finish_kernel(const float* m, int64_t n, int64_t hc, const float* base,
                                        const float* scale, float hc_eps, int64_t iters, float* pre,
                                        float* post, float* comb) {
  const int64_t t = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= n) return;
  const int64_t nm = (2 + hc) * hc;
  const float* mt = m + t * nm;
  const double eps = hc_eps;
  for (int64_t j = 0; j < hc; ++j) {
    pre[t * hc + j] = static_cast<float>(sigmoid_d(static_cast<double>(mt[j]) * scale[0] + base[j]) + eps);
    post[t * hc + j] =
        static_cast<float>(2.0 * sigmoid_d(static_cast<double>(mt[hc + j]) * scale[1] + base[hc + j]));
  }
  double C[kMaxHc * kMaxHc];
  for (int64_t j = 0; j < hc; ++j) {
    double mx = -DBL_MAX;
    for (int64_t k = 0; k < hc; ++k) {
      const int64_t i = 2 * hc + j * hc + k;
      C[j * hc + k] = static_cast<double>(mt[i]) * scale[2] + base[i];
      mx = fmax(mx, C[j * hc + k]);
    }
    double s = 0;
    for (int64_t k = 0; k < hc; ++k) s += (C[j * hc + k] = exp(C[j * hc + k] - mx));
    for (int64_t k = 0; k < hc; ++k) C[j * hc + k] = C[j * hc + k] / s + eps;
  }
  // §5.2 as ref: a column normalisation, then (iters − 1) × (row, column).
  for (int64_t it = 0; it < (iters > 1 ? iters : 1); ++it) {
    if (it > 0) {
      for (int64_t j = 0; j < hc; ++j) {
        double s = 0;
        for (int64_t k = 0; k < hc; ++k) s += C[j * hc + k];
        for (int64_t k = 0; k < hc; ++k) C[j * hc + k] /= (s + eps);
      }
    }
    for (int64_t k = 0; k < hc; ++k) {
      double s = 0;
      for (int64_t j = 0; j < hc; ++j) s += C[j * hc + k];
      for (int64_t j = 0; j < hc; ++j) C[j * hc + k] /= (s + eps);
    }
  }
  for (int64_t i = 0; i < hc * hc; ++i) comb[t * hc * hc + i] = static_cast<float>(C[i]);
}

__global__ void hc_pre_kernel(const float* X, int64_t n, int64_t hc, int64_t D, const float* pre,
                              float* u) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n * D;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / D, c = i % D;
    const float* xt = X + t * hc * D + c;
    float acc = __fmul_rn(pre[t * hc], xt[0]);
    for (int64_t j = 1; j < hc; ++j) acc = __fmaf_rn(pre[t * hc + j], xt[j * D], acc);
    u[i] = acc;
  }
}

__global__ void hc_post_kernel(float* X, int64_t n, int64_t hc, int64_t D, const float* post,
                               const float* comb, const float* F) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n * D;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / D, c = i % D;
    float* xt = X + t * hc * D + c;
    float old[kMaxHc];
    for (int64_t j = 0; j < hc; ++j) old[j] = xt[j * D];
    const float f = F[i];
    const float* ct = comb + t * hc * hc;
    for (int64_t k = 0; k < hc; ++k) {
      float o = __fmul_rn(post[t * hc + k], f);
      for (int64_t j = 0; j < hc; ++j) o = __fmaf_rn(ct[j * hc + k], old[j], o);
      xt[k * D] = o;
    }
  }
}

__global__ void hc_head_finish_kernel(const float* X, const float* m, int64_t n, int64_t hc,
                                      int64_t D, const float* base, const float* scale,
                                      float hc_eps, float* y) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n * D;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / D, c = i % D;
    const float* xt = X + t * hc * D + c;
    float acc = 0.0f;
    for (int64_t j = 0; j < hc; ++j) {
      const float wj = static_cast<float>(
          sigmoid_d(static_cast<double>(m[t * hc + j]) * scale[0] + base[j]) + static_cast<double>(hc_eps));
      acc = j == 0 ? __fmul_rn(wj, xt[0]) : __fmaf_rn(wj, xt[j * D], acc);
    }
    y[i] = acc;
  }
}

// ---- RoPE (§7.1) -------------------------------------------------------------------------------

__global__ void rope_kernel(float* x, int64_t n, int64_t heads, int64_t dim, const float* freqs,
                            int64_t n_freq, const int64_t* pos, bool inverse) {
  const int64_t off = dim - 2 * n_freq;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n * n_freq;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / n_freq, f = i % n_freq;
    const float ang = __fmul_rn(static_cast<float>(pos[t]), freqs[f]);  // one fp32 rounding
    const float c = cosf(ang);
    const float s = inverse ? -sinf(ang) : sinf(ang);
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x + (t * heads + h) * dim + off + 2 * f;
      const float x0 = v[0], x1 = v[1];
      v[0] = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
      v[1] = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
    }
  }
}

// ---- sparse attention with sinks (§7.6) --------------------------------------------------------

__global__ void __launch_bounds__(kAttnThreads)
attention_kernel(const float* q, int64_t H, int64_t Dh, const float* kv, const int64_t* offsets,
                 const int32_t* indices, const float* sinks, float scale, float* scores,
                 int64_t max_rows, float* out) {
  __shared__ double shd[kAttnThreads];
  __shared__ float shf[kAttnThreads];
  const int64_t task = blockIdx.x;  // t·H + h
  const int64_t t = task / H, h = task % H;
  const float* qh = q + task * Dh;
  float* oh = out + task * Dh;
  const int64_t k0 = offsets[t], nk = offsets[t + 1] - offsets[t];
  if (nk <= 0) {
    for (int64_t c = threadIdx.x; c < Dh; c += kAttnThreads) oh[c] = 0.0f;
    return;
  }
  float* s = scores + task * max_rows;
  const int warp = static_cast<int>(threadIdx.x >> 5), lane = static_cast<int>(threadIdx.x & 31);
  constexpr int kWarps = kAttnThreads / 32;
  // scores: one warp per selected row, lanes over the channels
  for (int64_t k = warp; k < nk; k += kWarps) {
    const float* row = kv + static_cast<int64_t>(indices[k0 + k]) * Dh;
    float acc = 0.0f;
    for (int64_t c = lane; c < Dh; c += 32) acc = __fmaf_rn(qh[c], row[c], acc);
    acc = warp_sum(acc);
    if (lane == 0) s[k] = __fmul_rn(scale, acc);
  }
  __syncthreads();
  const float sink = sinks != nullptr ? sinks[h] : -INFINITY;
  float mx = -INFINITY;
  for (int64_t k = threadIdx.x; k < nk; k += kAttnThreads) mx = fmaxf(mx, s[k]);
  mx = fmaxf(block_max<kAttnThreads>(mx, shf), sink);
  double den = 0.0;
  for (int64_t k = threadIdx.x; k < nk; k += kAttnThreads) {
    const float e = expf(s[k] - mx);
    s[k] = e;
    den += e;
  }
  den = block_sum<kAttnThreads>(den, shd);  // barrier: the exps are visible below
  if (sinks != nullptr) den += static_cast<double>(expf(sink - mx));
  const float inv = static_cast<float>(1.0 / den);
  for (int64_t c = threadIdx.x; c < Dh; c += kAttnThreads) {
    float o = 0.0f;
    for (int64_t k = 0; k < nk; ++k)
      o = __fmaf_rn(__fmul_rn(s[k], inv), kv[static_cast<int64_t>(indices[k0 + k]) * Dh + c], o);
    oh[c] = o;
  }
}

// ---- indexer scores (§7.5) ---------------------------------------------------------------------

__global__ void __launch_bounds__(32 * kIndexerWarps)
indexer_kernel(const float* qI, const float* wI, int64_t nI, int64_t dI, const float* keys,
               const int64_t* n_vis, float scale, float* score, int64_t ld_score, int64_t n_kblocks) {
  const int64_t t = blockIdx.x;
  const int warp = static_cast<int>(threadIdx.x >> 5), lane = static_cast<int>(threadIdx.x & 31);
  const int64_t nv = n_vis[t];
  const float* qt = qI + t * nI * dI;
  for (int64_t kb = blockIdx.y; kb < n_kblocks; kb += gridDim.y) {
    const int64_t j = kb * kIndexerWarps + warp;
    if (j >= nv) continue;  // warp-uniform
    const float* kj = keys + j * dI;
    float acc = 0.0f;
    for (int64_t h = 0; h < nI; ++h) {
      float d = 0.0f;
      for (int64_t c = lane; c < dI; c += 32) d = __fmaf_rn(qt[h * dI + c], kj[c], d);
      d = warp_sum(d);
      acc = __fadd_rn(acc, __fmul_rn(__fmul_rn(wI[t * nI + h], scale), fmaxf(d, 0.0f)));
    }
    if (lane == 0) score[t * ld_score + j] = acc;
  }
}

// ---- MoE glue (§8.2) ---------------------------------------------------------------------------

__global__ void moe_swiglu_kernel(const float* g, const float* u, const int32_t* slots,
                                  int64_t n_slots, const float* weights, int64_t I, float limit,
                                  float* h) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n_slots * I;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t slot = slots[i / I], r = i % I;
    const int64_t at = slot * I + r;
    const float gv = fminf(g[at], limit);
    float uv = u[at];
    uv = uv < -limit ? -limit : (limit < uv ? limit : uv);
    const float sig = __fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-gv)));
    h[at] = __fmul_rn(__fmul_rn(weights[slot], __fmul_rn(gv, sig)), uv);
  }
}

__global__ void moe_sum_kernel(const float* o, const int32_t* ids, int64_t n, int64_t n_used,
                               int64_t D, float* y) {
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n * D;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / D, c = i % D;
    float acc = y[i];
    for (int64_t k = 0; k < n_used; ++k)
      if (ids[t * n_used + k] >= 0) acc = __fadd_rn(acc, o[(t * n_used + k) * D + c]);
    y[i] = acc;
  }
}

}  // namespace

std::string launch_rms_norm(const float* x, const float* w, int64_t n, int64_t dim, float eps,
                            float* y, cudaStream_t stream) {
  if (n <= 0 || dim <= 0) return "";
  rms_norm_kernel<<<static_cast<unsigned>(n), kNormThreads, 0, stream>>>(x, w, dim, eps, y);
  return launched("rms_norm");
}

std::string launch_rms_scale(const float* X, int64_t n, int64_t F, float eps, float* m,
                             int64_t m_cols, cudaStream_t stream) {
  if (n <= 0) return "";
  rms_scale_kernel<<<static_cast<unsigned>(n), kNormThreads, 0, stream>>>(X, F, eps, m, m_cols);
  return launched("rms_scale");
}

std::string launch_hc_coeffs_finish(const float* m, int64_t n, int64_t hc, const float* base,
                                    const float* scale, float hc_eps, int64_t sinkhorn_iters,
                                    float* pre, float* post, float* comb, cudaStream_t stream) {
  if (n <= 0) return "";
  if (hc > kMaxHc) return "hc_coeffs: hc above kMaxHc";
  hc_coeffs_finish_kernel<<<blocks_for(n, 64), 64, 0, stream>>>(m, n, hc, base, scale, hc_eps,
                                                                sinkhorn_iters, pre, post, comb);
  return launched("hc_coeffs");
}

std::string launch_hc_pre(const float* X, int64_t n, int64_t hc, int64_t D, const float* pre,
                          float* u, cudaStream_t stream) {
  if (n <= 0 || D <= 0) return "";
  hc_pre_kernel<<<blocks_for(n * D, 256), 256, 0, stream>>>(X, n, hc, D, pre, u);
  return launched("hc_pre");
}

std::string launch_hc_post(float* X, int64_t n, int64_t hc, int64_t D, const float* post,
                           const float* comb, const float* F, cudaStream_t stream) {
  if (n <= 0 || D <= 0) return "";
  if (hc > kMaxHc) return "hc_post: hc above kMaxHc";
  hc_post_kernel<<<blocks_for(n * D, 256), 256, 0, stream>>>(X, n, hc, D, post, comb, F);
  return launched("hc_post");
}

std::string launch_hc_head_finish(const float* X, const float* m, int64_t n, int64_t hc,
                                  int64_t D, const float* base, const float* scale, float hc_eps,
                                  float* y, cudaStream_t stream) {
  if (n <= 0 || D <= 0) return "";
  hc_head_finish_kernel<<<blocks_for(n * D, 256), 256, 0, stream>>>(X, m, n, hc, D, base, scale,
                                                                    hc_eps, y);
  return launched("hc_head");
}

std::string launch_rope(float* x, int64_t n, int64_t heads, int64_t dim, const float* freqs,
                        int64_t n_freq, const int64_t* pos, bool inverse, cudaStream_t stream) {
  if (n <= 0 || n_freq <= 0 || heads <= 0) return "";
  rope_kernel<<<blocks_for(n * n_freq, 128), 128, 0, stream>>>(x, n, heads, dim, freqs, n_freq,
                                                               pos, inverse);
  return launched("rope");
}

std::string launch_attention(const float* q, int64_t n, int64_t H, int64_t Dh, const float* kv,
                             const int64_t* offsets, const int32_t* indices, const float* sinks,
                             float scale, float* scores, int64_t max_rows, float* out,
                             cudaStream_t stream) {
  if (n <= 0 || H <= 0) return "";
  if (n * H > (int64_t{1} << 31) - 1) return "attention: too many (token, head) pairs";
  attention_kernel<<<static_cast<unsigned>(n * H), kAttnThreads, 0, stream>>>(
      q, H, Dh, kv, offsets, indices, sinks, scale, scores, max_rows < 1 ? 1 : max_rows, out);
  return launched("attention");
}

std::string launch_indexer_scores(const float* qI, const float* wI, int64_t n, int64_t nI,
                                  int64_t dI, const float* keys, const int64_t* n_vis,
                                  int64_t max_vis, float scale, float* score, int64_t ld_score,
                                  cudaStream_t stream) {
  if (n <= 0 || max_vis <= 0) return "";
  const int64_t kblocks = (max_vis + kIndexerWarps - 1) / kIndexerWarps;
  dim3 grid(static_cast<unsigned>(n), static_cast<unsigned>(kblocks < 65535 ? kblocks : 65535));
  indexer_kernel<<<grid, 32 * kIndexerWarps, 0, stream>>>(qI, wI, nI, dI, keys, n_vis, scale,
                                                          score, ld_score, kblocks);
  return launched("indexer_scores");
}

std::string launch_moe_swiglu(const float* g, const float* u, const int32_t* slots,
                              int64_t n_slots, const float* weights, int64_t I, float limit,
                              float* h, cudaStream_t stream) {
  if (n_slots <= 0 || I <= 0) return "";
  moe_swiglu_kernel<<<blocks_for(n_slots * I, 256), 256, 0, stream>>>(g, u, slots, n_slots,
                                                                      weights, I, limit, h);
  return launched("moe_swiglu");
}

std::string launch_moe_sum(const float* o, const int32_t* ids, int64_t n, int64_t n_used,
                           int64_t D, float* y, cudaStream_t stream) {
  if (n <= 0 || D <= 0) return "";
  moe_sum_kernel<<<blocks_for(n * D, 256), 256, 0, stream>>>(o, ids, n, n_used, D, y);
  return launched("moe_sum");
}

double measure_d2d_bandwidth(size_t bytes, int reps, std::string* err) {
  void* a = nullptr;
  void* b = nullptr;
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  float ms = 0.0f;
  double result = -1.0;
  cudaError_t st = cudaMalloc(&a, bytes);
  if (st == cudaSuccess) st = cudaMalloc(&b, bytes);
  if (st == cudaSuccess) st = cudaMemset(a, 1, bytes);
  if (st == cudaSuccess) st = cudaEventCreate(&e0);
  if (st == cudaSuccess) st = cudaEventCreate(&e1);
  if (st == cudaSuccess) st = cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);  // warm-up
  if (st == cudaSuccess) st = cudaEventRecord(e0, nullptr);
  for (int i = 0; i < reps && st == cudaSuccess; ++i)
    st = cudaMemcpyAsync((i % 2) ? a : b, (i % 2) ? b : a, bytes, cudaMemcpyDeviceToDevice, nullptr);
  if (st == cudaSuccess) st = cudaEventRecord(e1, nullptr);
  if (st == cudaSuccess) st = cudaEventSynchronize(e1);
  if (st == cudaSuccess) st = cudaEventElapsedTime(&ms, e0, e1);
  if (st == cudaSuccess && ms > 0.0f)
    result = 2.0 * static_cast<double>(bytes) * reps / (static_cast<double>(ms) * 1e-3) / 1e9;
  if (st != cudaSuccess && err != nullptr) *err = cudaGetErrorString(st);
  if (e0 != nullptr) cudaEventDestroy(e0);
  if (e1 != nullptr) cudaEventDestroy(e1);
  if (a != nullptr) cudaFree(a);
  if (b != nullptr) cudaFree(b);
  return result;
}

}  // namespace dsv4::cuda
