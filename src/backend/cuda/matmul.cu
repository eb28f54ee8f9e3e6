// dsv4 CUDA backend: the matmul kernel (decode GEMV and small-tile GEMM in one template) for the
// weight types of kernels.h, and the device copies of the quant format tables.
//
// Work split: one warp per (weight row, tile of T slots); T = 1 for decode, 8 when a group has
// more than one slot. Lane l of the warp owns the 32-element chunks l, l + 32, l + 64, ... of the
// row (per-element types: the elements l, l + 32, ...), dequantizes each chunk into registers and
// accumulates w·x with fused multiply-adds in element order, one accumulator per slot; the 32
// lane sums are then combined by a fixed butterfly. An output element's arithmetic is therefore
// the same whatever T, n, the grid or the other slots of the tile: batch-invariant by
// construction (ops.h determinism rule).
#include <cuda_runtime.h>

#include "dsv4/core/dtypes.h"
#include "dsv4/quant/blocks.h"
#include "kernels.h"

namespace dsv4::cuda {
namespace {

// Device copies of dsv4/quant/iq_tables.h (uploaded by upload_quant_tables).
__device__ uint64_t g_iq2xxs_grid[256];
__device__ uint8_t g_ksigns[128];
__device__ int8_t g_kvalues_mxfp4[16];

constexpr int kWarpsPerBlock = 8;  // weight rows per block
constexpr int kBigTile = 8;        // slots per warp pass when a group has several
constexpr unsigned kFull = 0xffffffffu;

__device__ __forceinline__ uint16_t ld16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
__device__ __forceinline__ uint32_t ld32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

// ---- per-type dequantization of one 32-element chunk (bit-identical to quant::dequantize_row)

template <uint32_t QT>
struct Chunk;

template <>
struct Chunk<static_cast<uint32_t>(KType::kQ8_0)> {
  __device__ __forceinline__ static void decode(const uint8_t* row, int64_t c, float* w) {
    const uint8_t* b = row + c * static_cast<int64_t>(sizeof(quant::BlockQ8_0));
    const float d = fp16_to_f32(ld16(b));
#pragma unroll
    for (int j = 0; j < 32; ++j) w[j] = __fmul_rn(static_cast<float>(static_cast<int8_t>(b[2 + j])), d);
  }
};

template <>
struct Chunk<static_cast<uint32_t>(KType::kMXFP4)> {
  __device__ __forceinline__ static void decode(const uint8_t* row, int64_t c, float* w) {
    const uint8_t* b = row + c * static_cast<int64_t>(sizeof(quant::BlockMXFP4));
    const float d = quant::e8m0_to_f32_half(b[0]);
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const uint8_t q = b[1 + j];
      w[j] = __fmul_rn(d, static_cast<float>(g_kvalues_mxfp4[q & 0xF]));
      w[j + 16] = __fmul_rn(d, static_cast<float>(g_kvalues_mxfp4[q >> 4]));
    }
  }
};

template <>
struct Chunk<static_cast<uint32_t>(KType::kF8_E4M3_B128)> {
  __device__ __forceinline__ static void decode(const uint8_t* row, int64_t c, float* w) {
    const uint8_t* b = row + (c >> 2) * static_cast<int64_t>(sizeof(quant::BlockF8E4M3B128));
    const float d = e8m0_to_f32(b[0]);
    const uint8_t* q = b + 1 + 32 * (c & 3);
#pragma unroll
    for (int j = 0; j < 32; ++j) w[j] = __fmul_rn(e4m3fn_to_f32(q[j]), d);
  }
};

template <>
struct Chunk<static_cast<uint32_t>(KType::kQ4_K)> {  // chunk = sub-block j of a super-block
  __device__ __forceinline__ static void decode(const uint8_t* row, int64_t c, float* w) {
    const uint8_t* b = row + (c >> 3) * static_cast<int64_t>(sizeof(quant::BlockQ4_K));
    const int j = static_cast<int>(c & 7);
    const float d = fp16_to_f32(ld16(b));
    const float dmin = fp16_to_f32(ld16(b + 2));
    uint8_t sc, m;
    quant::get_scale_min_k4(j, b + 4, &sc, &m);
    const float dd = __fmul_rn(d, static_cast<float>(sc));
    const float dm = __fmul_rn(dmin, static_cast<float>(m));
    const uint8_t* q = b + 4 + quant::kKScaleSize + 32 * (j / 2);
    const int shift = 4 * (j % 2);
#pragma unroll
    for (int l = 0; l < 32; ++l)
      w[l] = __fsub_rn(__fmul_rn(dd, static_cast<float>((q[l] >> shift) & 0xF)), dm);
  }
};

template <>
struct Chunk<static_cast<uint32_t>(KType::kQ2_K)> {  // chunk = groups 2j, 2j+1 of 16
  __device__ __forceinline__ static void decode(const uint8_t* row, int64_t c, float* w) {
    const uint8_t* b = row + (c >> 3) * static_cast<int64_t>(sizeof(quant::BlockQ2_K));
    const uint8_t* scales = b;
    const uint8_t* qs = b + quant::kQK_K / 16;
    const float d = fp16_to_f32(ld16(b + 80));
    const float dmin = fp16_to_f32(ld16(b + 82));
#pragma unroll
    for (int gi = 0; gi < 2; ++gi) {
      const int g = 2 * static_cast<int>(c & 7) + gi;
      const float dl = __fmul_rn(d, static_cast<float>(scales[g] & 0xF));
      const float ml = __fmul_rn(dmin, static_cast<float>(scales[g] >> 4));
      const uint8_t* q = qs + 32 * (g / 8) + 16 * (g % 2);
      const int shift = 2 * ((g % 8) / 2);
#pragma unroll
      for (int l = 0; l < 16; ++l)
        w[16 * gi + l] = __fsub_rn(__fmul_rn(dl, static_cast<float>((q[l] >> shift) & 3)), ml);
    }
  }
};

template <>
struct Chunk<static_cast<uint32_t>(KType::kIQ2_XXS)> {  // chunk = 32-element group ib
  __device__ __forceinline__ static void decode(const uint8_t* row, int64_t c, float* w) {
    const uint8_t* b = row + (c >> 3) * static_cast<int64_t>(sizeof(quant::BlockIQ2_XXS));
    const int ib = static_cast<int>(c & 7);
    const float d = fp16_to_f32(ld16(b));
    const uint8_t* qs = b + 2;
    const uint32_t aux0 = ld32(qs + 8 * ib);
    const uint32_t aux1 = ld32(qs + 8 * ib + 4);
    const float db = __fmul_rn(__fmul_rn(d, __fadd_rn(0.5f, static_cast<float>(aux1 >> 28))), 0.25f);
#pragma unroll
    for (int l = 0; l < 4; ++l) {
      const uint64_t grid = g_iq2xxs_grid[(aux0 >> (8 * l)) & 0xFF];
      const uint8_t signs = g_ksigns[(aux1 >> (7 * l)) & 127];
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float gv = static_cast<float>(static_cast<uint8_t>(grid >> (8 * j)));
        w[8 * l + j] = __fmul_rn(__fmul_rn(db, gv), ((signs >> j) & 1) ? -1.0f : 1.0f);
      }
    }
  }
};

// ---- per-element types -------------------------------------------------------------------------

template <uint32_t QT>
struct Elem;
template <>
struct Elem<static_cast<uint32_t>(KType::kF32)> {
  __device__ __forceinline__ static float load(const uint8_t* row, int64_t e) {
    return reinterpret_cast<const float*>(row)[e];
  }
};
template <>
struct Elem<static_cast<uint32_t>(KType::kF16)> {
  __device__ __forceinline__ static float load(const uint8_t* row, int64_t e) {
    return fp16_to_f32(reinterpret_cast<const uint16_t*>(row)[e]);
  }
};
template <>
struct Elem<static_cast<uint32_t>(KType::kBF16)> {
  __device__ __forceinline__ static float load(const uint8_t* row, int64_t e) {
    return bf16_to_f32(reinterpret_cast<const uint16_t*>(row)[e]);
  }
};

template <uint32_t QT>
inline constexpr bool kIsElemType = QT == static_cast<uint32_t>(KType::kF32) ||
                                    QT == static_cast<uint32_t>(KType::kF16) ||
                                    QT == static_cast<uint32_t>(KType::kBF16);

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(kFull, v, off);
  return v;
}

// acc[t] = lane's partial of W[row]·xs[t], then the warp total (every lane holds it).
template <uint32_t QT, int T>
__device__ __forceinline__ void warp_dot(const uint8_t* row, int64_t cols, const float* const* xs,
                                         int lane, float* acc) {
#pragma unroll
  for (int t = 0; t < T; ++t) acc[t] = 0.0f;
  if constexpr (kIsElemType<QT>) {
    for (int64_t e = lane; e < cols; e += 32) {
      const float w = Elem<QT>::load(row, e);
#pragma unroll
      for (int t = 0; t < T; ++t) acc[t] = __fmaf_rn(w, xs[t][e], acc[t]);
    }
  } else {
    const int64_t n_chunks = cols / 32;
    for (int64_t c = lane; c < n_chunks; c += 32) {
      float w[32];
      Chunk<QT>::decode(row, c, w);
#pragma unroll
      for (int t = 0; t < T; ++t) {
        // x rows are 16-byte aligned (host: compact rows of a multiple of 32 floats)
        const float4* x4 = reinterpret_cast<const float4*>(xs[t] + 32 * c);
#pragma unroll
        for (int q = 0; q < 8; ++q) {
          const float4 v = x4[q];
          acc[t] = __fmaf_rn(w[4 * q + 0], v.x, acc[t]);
          acc[t] = __fmaf_rn(w[4 * q + 1], v.y, acc[t]);
          acc[t] = __fmaf_rn(w[4 * q + 2], v.z, acc[t]);
          acc[t] = __fmaf_rn(w[4 * q + 3], v.w, acc[t]);
        }
      }
    }
  }
#pragma unroll
  for (int t = 0; t < T; ++t) acc[t] = warp_sum(acc[t]);
}

template <uint32_t QT, int T>
__global__ void __launch_bounds__(32 * kWarpsPerBlock) matmul_kernel(const MatmulArgs a) {
  const int warp = static_cast<int>(threadIdx.x >> 5), lane = static_cast<int>(threadIdx.x & 31);
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + warp;
  if (r >= a.rows) return;  // whole warps only; no block-level synchronisation below
  const int64_t g = blockIdx.y;
  const int64_t e = a.group_expert != nullptr ? a.group_expert[g] : 0;
  const int64_t s0 = a.group_start != nullptr ? a.group_start[g] : 0;
  const int64_t s1 = a.group_start != nullptr ? a.group_start[g + 1] : a.n;
  const uint8_t* row = a.w + static_cast<size_t>(e * a.rows + r) * a.row_bytes;
  for (int64_t tile = s0 + static_cast<int64_t>(blockIdx.z) * T; tile < s1;
       tile += static_cast<int64_t>(gridDim.z) * T) {
    const float* xs[T];
    int64_t slot[T];
#pragma unroll
    for (int t = 0; t < T; ++t) {
      const int64_t si = (tile + t < s1) ? tile + t : s1 - 1;  // past the end: repeat the last
      slot[t] = a.slots != nullptr ? a.slots[si] : si;
      xs[t] = a.x + (slot[t] / a.x_div) * a.ldx;
    }
    float acc[T];
    warp_dot<QT, T>(row, a.cols, xs, lane, acc);
    if (lane == 0) {
#pragma unroll
      for (int t = 0; t < T; ++t)
        if (tile + t < s1) a.y[slot[t] * a.ldy + r] = acc[t];
    }
  }
}

template <uint32_t QT>
std::string launch_typed(const MatmulArgs& a, cudaStream_t stream) {
  const int64_t slots = a.max_group_slots > 0 ? a.max_group_slots : 1;
  const bool big = slots > 1;
  const int64_t tile = big ? kBigTile : 1;
  const int64_t tiles = (slots + tile - 1) / tile;
  dim3 grid(static_cast<unsigned>((a.rows + kWarpsPerBlock - 1) / kWarpsPerBlock),
            static_cast<unsigned>(a.n_groups), static_cast<unsigned>(tiles < 32 ? tiles : 32));
  if (big) {
    matmul_kernel<QT, kBigTile><<<grid, 32 * kWarpsPerBlock, 0, stream>>>(a);
  } else {
    matmul_kernel<QT, 1><<<grid, 32 * kWarpsPerBlock, 0, stream>>>(a);
  }
  const cudaError_t err = cudaGetLastError();
  return err == cudaSuccess ? std::string() : std::string("matmul: ") + cudaGetErrorString(err);
}

}  // namespace

bool ktype_supported(uint32_t qtype) {
  switch (static_cast<KType>(qtype)) {
    case KType::kF32:
    case KType::kF16:
    case KType::kBF16:
    case KType::kQ8_0:
    case KType::kQ2_K:
    case KType::kQ4_K:
    case KType::kIQ2_XXS:
    case KType::kMXFP4:
    case KType::kF8_E4M3_B128: return true;
  }
  return false;
}

std::string upload_quant_tables(const uint64_t* host_iq2xxs_grid, const uint8_t* host_ksigns,
                                const int8_t* host_kvalues_mxfp4) {
  cudaError_t e = cudaMemcpyToSymbol(g_iq2xxs_grid, host_iq2xxs_grid, sizeof(g_iq2xxs_grid));
  if (e == cudaSuccess) e = cudaMemcpyToSymbol(g_ksigns, host_ksigns, sizeof(g_ksigns));
  if (e == cudaSuccess)
    e = cudaMemcpyToSymbol(g_kvalues_mxfp4, host_kvalues_mxfp4, sizeof(g_kvalues_mxfp4));
  return e == cudaSuccess ? std::string() : std::string("upload_quant_tables: ") + cudaGetErrorString(e);
}

std::string launch_matmul(const MatmulArgs& a, cudaStream_t stream) {
  if (a.rows <= 0 || a.n_groups <= 0 || (a.group_start == nullptr && a.n <= 0)) return "";
  if (a.n_groups > 65535) return "matmul: more than 65535 groups";
  switch (static_cast<KType>(a.qtype)) {
    case KType::kF32: return launch_typed<static_cast<uint32_t>(KType::kF32)>(a, stream);
    case KType::kF16: return launch_typed<static_cast<uint32_t>(KType::kF16)>(a, stream);
    case KType::kBF16: return launch_typed<static_cast<uint32_t>(KType::kBF16)>(a, stream);
    case KType::kQ8_0: return launch_typed<static_cast<uint32_t>(KType::kQ8_0)>(a, stream);
    case KType::kQ2_K: return launch_typed<static_cast<uint32_t>(KType::kQ2_K)>(a, stream);
    case KType::kQ4_K: return launch_typed<static_cast<uint32_t>(KType::kQ4_K)>(a, stream);
    case KType::kIQ2_XXS: return launch_typed<static_cast<uint32_t>(KType::kIQ2_XXS)>(a, stream);
    case KType::kMXFP4: return launch_typed<static_cast<uint32_t>(KType::kMXFP4)>(a, stream);
    case KType::kF8_E4M3_B128:
      return launch_typed<static_cast<uint32_t>(KType::kF8_E4M3_B128)>(a, stream);
  }
  return "matmul: unsupported weight type";
}

}  // namespace dsv4::cuda
