// Scalar reference quantizers.
//   Q8_0, MXFP4: the float32 arithmetic of gguf-py's quantize_blocks, byte-identical to it.
//   Q2_K, Q4_K:  ggml's reference algorithm (quantize_row_q{2,4}_K_ref): per sub-block an affine
//                fit (scale, min) by a small search over inverse scales with a weighted
//                least-squares refit, then the sub-block scales and mins quantized to 4 (Q2_K) or
//                6 (Q4_K) bits against f16 super-block scales, and the elements re-rounded to the
//                final grid.
#include <cmath>
#include <cstring>

#include "dsv4/core/dtypes.h"
#include "dsv4/quant/blocks.h"
#include "dsv4/quant/quant.h"

namespace dsv4::quant {

Status check_row_args(QType type, int64_t n, const QTypeInfo** info_out);

namespace {

template <class B>
void store(const B& b, uint8_t* p) {
  std::memcpy(p, &b, sizeof b);
}

// Round to nearest, ties to even (the default FP rounding mode), as ggml's nearest_int.
inline int nearest_int(float v) { return static_cast<int>(std::lrintf(v)); }

void q_q8_0(const float* x, uint8_t* out) {
  BlockQ8_0 b{};
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = (d != 0.0f) ? 1.0f / d : 0.0f;
  for (int j = 0; j < 32; ++j) b.qs[j] = static_cast<int8_t>(std::roundf(x[j] * id));  // half away
  b.d = f32_to_fp16(d);
  store(b, out);
}

void q_mxfp4(const float* x, uint8_t* out) {
  static constexpr int8_t kv[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};
  BlockMXFP4 b{};
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(x[j]));
  int e = 0;
  if (amax > 0.0f) {
    // numpy's float32 log2 floors like the correctly rounded float32 log2 (checked exhaustively
    // near every power of two); the double log2 rounded to float gives that.
    const float lg = static_cast<float>(std::log2(static_cast<double>(amax)));
    const float fe = std::floor(lg) - 2.0f + 127.0f;
    e = fe < 0.0f ? 0 : (fe > 254.0f ? 254 : static_cast<int>(fe));
  }
  b.e = static_cast<uint8_t>(e);
  const float d = e8m0_to_f32_half(b.e);
  uint8_t code[32];
  for (int j = 0; j < 32; ++j) {
    int best = 0;
    float best_err = std::fabs(d * static_cast<float>(kv[0]) - x[j]);
    for (int k = 1; k < 16; ++k) {
      const float err = std::fabs(d * static_cast<float>(kv[k]) - x[j]);
      if (err < best_err) {  // first minimum wins, as numpy argmin
        best_err = err;
        best = k;
      }
    }
    code[j] = static_cast<uint8_t>(best);
  }
  for (int j = 0; j < 16; ++j) b.qs[j] = static_cast<uint8_t>(code[j] | (code[j + 16] << 4));
  store(b, out);
}

// Affine fit x ~ scale * L - min_out with L in [0, nmax], minimizing sum w * |err| (use_mad) or
// sum w * err^2. Starts from the min/max fit, then tries nstep+1 inverse scales
// (rmin + rdelta*is + nmax) / (max - min), refitting scale and offset by weighted least squares
// on each candidate's L and keeping the best. Returns the scale; *min_out >= 0.
float fit_affine(int n, int nmax, const float* x, const float* w, uint8_t* L, float* min_out,
                 uint8_t* Laux, float rmin, float rdelta, int nstep, bool use_mad) {
  float lo = x[0], hi = x[0];
  float sum_w = w[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    lo = std::fmin(lo, x[i]);
    hi = std::fmax(hi, x[i]);
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (lo > 0.0f) lo = 0.0f;
  if (hi == lo) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *min_out = -lo;
    return 0.0f;
  }
  auto error_of = [&](float s, float m, const uint8_t* q) {
    float e = 0.0f;
    for (int i = 0; i < n; ++i) {
      float diff = s * static_cast<float>(q[i]) + m - x[i];
      diff = use_mad ? std::fabs(diff) : diff * diff;
      e += w[i] * diff;
    }
    return e;
  };
  float iscale = static_cast<float>(nmax) / (hi - lo);
  float scale = 1.0f / iscale;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - lo));
    L[i] = static_cast<uint8_t>(l < 0 ? 0 : (l > nmax ? nmax : l));
  }
  float best = error_of(scale, lo, L);
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (hi - lo);
    float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * (x[i] - lo));
      l = l < 0 ? 0 : (l > nmax ? nmax : l);
      Laux[i] = static_cast<uint8_t>(l);
      const float fl = static_cast<float>(l);
      sum_l += w[i] * fl;
      sum_l2 += w[i] * fl * fl;
      sum_xl += w[i] * fl * x[i];
    }
    const float det = sum_w * sum_l2 - sum_l * sum_l;
    if (det > 0.0f) {
      float s = (sum_w * sum_xl - sum_x * sum_l) / det;
      float m = (sum_l2 * sum_x - sum_l * sum_xl) / det;
      if (m > 0.0f) {
        m = 0.0f;
        s = sum_xl / sum_l2;
      }
      const float e = error_of(s, m, Laux);
      if (e < best) {
        std::memcpy(L, Laux, static_cast<size_t>(n));
        best = e;
        scale = s;
        lo = m;
      }
    }
  }
  *min_out = -lo;
  return scale;
}

void q_q4_K(const float* x, uint8_t* out) {
  BlockQ4_K b{};
  uint8_t L[kQK_K], Laux[32];
  float w[32], scales[8], mins[8];
  float max_scale = 0.0f, max_min = 0.0f;
  for (int j = 0; j < 8; ++j) {
    const float* xs = x + 32 * j;
    float sum_x2 = 0.0f;
    for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
    const float av_x = std::sqrt(sum_x2 / 32.0f);
    for (int l = 0; l < 32; ++l) w[l] = av_x + std::fabs(xs[l]);
    scales[j] = fit_affine(32, 15, xs, w, L + 32 * j, &mins[j], Laux, -1.0f, 0.1f, 20, false);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
  for (int j = 0; j < 8; ++j) {
    int ls = nearest_int(inv_scale * scales[j]);
    int lm = nearest_int(inv_min * mins[j]);
    ls = ls < 0 ? 0 : (ls > 63 ? 63 : ls);
    lm = lm < 0 ? 0 : (lm > 63 ? 63 : lm);
    if (j < 4) {
      b.scales[j] = static_cast<uint8_t>(ls);
      b.scales[j + 4] = static_cast<uint8_t>(lm);
    } else {
      b.scales[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
      b.scales[j - 4] = static_cast<uint8_t>(b.scales[j - 4] | ((ls >> 4) << 6));
      b.scales[j] = static_cast<uint8_t>(b.scales[j] | ((lm >> 4) << 6));
    }
  }
  b.d = f32_to_fp16(max_scale / 63.0f);
  b.dmin = f32_to_fp16(max_min / 63.0f);
  for (int j = 0; j < 8; ++j) {
    uint8_t sc, m;
    get_scale_min_k4(j, b.scales, &sc, &m);
    const float d = fp16_to_f32(b.d) * static_cast<float>(sc);
    if (d == 0.0f) continue;
    const float dm = fp16_to_f32(b.dmin) * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) {
      const int q = nearest_int((x[32 * j + l] + dm) / d);
      L[32 * j + l] = static_cast<uint8_t>(q < 0 ? 0 : (q > 15 ? 15 : q));
    }
  }
  for (int c = 0; c < 4; ++c)
    for (int l = 0; l < 32; ++l)
      b.qs[32 * c + l] = static_cast<uint8_t>(L[64 * c + l] | (L[64 * c + l + 32] << 4));
  store(b, out);
}

void q_q2_K(const float* x, uint8_t* out) {
  BlockQ2_K b{};
  uint8_t L[kQK_K], Laux[16];
  float w[16], scales[16], mins[16];
  float max_scale = 0.0f, max_min = 0.0f;
  for (int j = 0; j < 16; ++j) {
    const float* xs = x + 16 * j;
    for (int l = 0; l < 16; ++l) w[l] = std::fabs(xs[l]);
    scales[j] = fit_affine(16, 3, xs, w, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, true);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  constexpr float kQ4Scale = 15.0f;
  if (max_scale > 0.0f) {
    const float iscale = kQ4Scale / max_scale;
    for (int j = 0; j < 16; ++j) {
      const int l = nearest_int(iscale * scales[j]);
      b.scales[j] = static_cast<uint8_t>(l < 0 ? 0 : (l > 15 ? 15 : l));
    }
    b.d = f32_to_fp16(max_scale / kQ4Scale);
  }
  if (max_min > 0.0f) {
    const float iscale = kQ4Scale / max_min;
    for (int j = 0; j < 16; ++j) {
      const int l = nearest_int(iscale * mins[j]);
      b.scales[j] = static_cast<uint8_t>(b.scales[j] | ((l < 0 ? 0 : (l > 15 ? 15 : l)) << 4));
    }
    b.dmin = f32_to_fp16(max_min / kQ4Scale);
  }
  for (int j = 0; j < 16; ++j) {
    const float d = fp16_to_f32(b.d) * static_cast<float>(b.scales[j] & 0xF);
    if (d == 0.0f) continue;
    const float dm = fp16_to_f32(b.dmin) * static_cast<float>(b.scales[j] >> 4);
    for (int l = 0; l < 16; ++l) {
      const int q = nearest_int((x[16 * j + l] + dm) / d);
      L[16 * j + l] = static_cast<uint8_t>(q < 0 ? 0 : (q > 3 ? 3 : q));
    }
  }
  for (int h = 0; h < 2; ++h)
    for (int l = 0; l < 32; ++l) {
      const uint8_t* s = L + 128 * h + l;
      b.qs[32 * h + l] = static_cast<uint8_t>(s[0] | (s[32] << 2) | (s[64] << 4) | (s[96] << 6));
    }
  store(b, out);
}

void q_f32(const float* x, uint8_t* out) { std::memcpy(out, x, 4); }
void q_f16(const float* x, uint8_t* out) {
  const uint16_t h = f32_to_fp16(*x);
  out[0] = static_cast<uint8_t>(h);
  out[1] = static_cast<uint8_t>(h >> 8);
}
void q_bf16(const float* x, uint8_t* out) {
  const uint16_t h = f32_to_bf16(*x);
  out[0] = static_cast<uint8_t>(h);
  out[1] = static_cast<uint8_t>(h >> 8);
}

using QFn = void (*)(const float*, uint8_t*);

QFn quant_fn(QType t) {
  switch (t) {
    case QType::kF32: return q_f32;
    case QType::kF16: return q_f16;
    case QType::kBF16: return q_bf16;
    case QType::kQ8_0: return q_q8_0;
    case QType::kMXFP4: return q_mxfp4;
    case QType::kQ2_K: return q_q2_K;
    case QType::kQ4_K: return q_q4_K;
    default: return nullptr;
  }
}

}  // namespace

Status quantize_row(QType type, const float* src, void* dst, int64_t n) {
  const QTypeInfo* info = nullptr;
  DSV4_RETURN_IF_ERROR(check_row_args(type, n, &info));
  const QFn fn = quant_fn(type);
  if (fn == nullptr)
    return {ErrorCode::kUnsupported,
            "quant: quantizing to " + std::string(info->name) + " is not supported"};
  auto* p = static_cast<uint8_t*>(dst);
  const int64_t nb = n / info->block_size;
  for (int64_t i = 0; i < nb; ++i)
    fn(src + i * info->block_size, p + static_cast<size_t>(i) * info->type_size);
  return Status::ok();
}

}  // namespace dsv4::quant
